/*
 * store/manifest.c - the OCI manifest shale synthesizes over stored
 * (uncompressed) layers, used by load for docker-archives and by save for
 * images that arrived with compressed layers. Same input, same bytes.
 */
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

int shl_store__synth_manifest(shl_json *layers, const char *config_digest, size_t config_len,
			      char **bytes, size_t *len, char digest[72])
{
	shl_json *m = shl_json_new_object(), *c = shl_json_new_object(), *ls = shl_json_new_array();
	uint8_t d[32];
	const char *s;
	int rc;

	*bytes = NULL;
	if (!m || !c || !ls) {
		shl_json_put(m);
		shl_json_put(c);
		shl_json_put(ls);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	rc = shl_json_set_str(c, "mediaType", "application/vnd.oci.image.config.v1+json");
	rc = rc ? rc : shl_json_set_str(c, "digest", config_digest);
	rc = rc ? rc : shl_json_set_int(c, "size", (int64_t)config_len);
	for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
		shl_json *l = shl_json_at(layers, i), *e = shl_json_new_object();
		const char *om = shl_json_get_str(l, "out_media");
		int64_t ts = 0;
		shl_json_get_int(l, om ? "out_size" : "tar_size", &ts);
		if (!e) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		/* out_*: a compressed form written instead of the plain tar (save --compress) */
		rc = shl_json_set_str(e, "mediaType", om ? om : "application/vnd.oci.image.layer.v1.tar");
		rc = rc ? rc : shl_json_set_str(e, "digest", shl_json_get_str(l, om ? "out_digest" : "diff_id"));
		rc = rc ? rc : shl_json_set_int(e, "size", ts);
		if (rc)
			shl_json_put(e);
		else
			rc = shl_json_push(ls, e);
	}
	rc = rc ? rc : shl_json_set_int(m, "schemaVersion", 2);
	rc = rc ? rc : shl_json_set_str(m, "mediaType", "application/vnd.oci.image.manifest.v1+json");
	if (rc) {
		shl_json_put(c);
		shl_json_put(ls);
	} else if (!(rc = shl_json_set(m, "config", c))) {
		rc = shl_json_set(m, "layers", ls);
	} else {
		shl_json_put(ls);
	}
	if (!rc) {
		s = shl_json_dump(m, 0, len);
		*bytes = malloc(*len + 1);
		if (!*bytes) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
		} else {
			memcpy(*bytes, s, *len + 1);
			shl_sha256_buf(*bytes, *len, d);
			shl_digest_str(d, digest);
		}
	}
	shl_json_put(m);
	return rc;
}

int64_t shl_store__parse_created(const char *s)
{
	struct tm tm;

	if (!s)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}
