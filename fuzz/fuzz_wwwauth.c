/*
 * fuzz/fuzz_wwwauth.c - the registry client's parsers of hostile server and
 * file input (fetch/http.c, fetch/creds.c): WWW-Authenticate challenges,
 * Content-Range, Retry-After, registry error bodies, and the netrc-style
 * credentials file. First byte selects the parser.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/creds.h"
#include "fetch/http.h"
#include "shale/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, buf[300];
	struct shl_www_auth a;
	struct shl_creds c;
	int64_t x, y, z;

	if (!size)
		return 0;
	if (!(s = malloc(size)))
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 5) {
	case 0:
		if (shl_http_parse_www_auth(s, &a) == 0 &&
		    (strlen(a.realm) >= sizeof(a.realm) || strlen(a.scheme) >= sizeof(a.scheme)))
			abort();
		break;
	case 1:
		if (shl_http_parse_content_range(s, &x, &y, &z) == 0 && (x < 0 || y < x || (z >= 0 && z <= y)))
			abort();
		break;
	case 2: {
		int v = shl_http_retry_after(s, 7);
		if (v < 0 || v > 60)
			abort();
		break;
	}
	case 3:
		shl_http_error_text(500, s, size - 1, buf, sizeof(buf));
		break;
	case 4:
		if (shl_creds_parse_netrc(s, "registry.example:5000", NULL, &c) == 1 && strlen(c.user) >= sizeof(c.user))
			abort();
		shl_creds_parse_netrc(s, "x", "alice", &c);
		break;
	}
	shl_error_clear();
	free(s);
	return 0;
}
