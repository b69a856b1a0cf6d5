/*
 * load/platform.c - which manifest of a multi-platform index to load: the
 * wanted platform (--platform os/arch[/variant], default the host's, with
 * docker's architecture aliases), matching an index descriptor's platform,
 * and spotting attestation manifests (BuildKit provenance/SBOM) to skip.
 */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "load/load_int.h"
#include "util/err.h"

static const char *norm_arch(const char *a, char variant[32])
{
	if (!strcmp(a, "x86_64") || !strcmp(a, "x86-64"))
		return "amd64";
	if (!strcmp(a, "aarch64"))
		return "arm64";
	if (!strcmp(a, "i386") || !strcmp(a, "i686"))
		return "386";
	if (!strncmp(a, "armv", 4) && a[4] >= '5' && a[4] <= '8') {
		if (!variant[0])
			snprintf(variant, 32, "v%c", a[4]);
		return a[4] == '8' ? "arm64" : "arm";
	}
	if (!strcmp(a, "armhf"))
		return "arm";
	return a;
}

static int valid_part(const char *s)
{
	if (!*s || strlen(s) >= 32)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
			return 0;
	return 1;
}

int shl_load__want_platform(const char *spec, shl_load_plat *out)
{
	char buf[100], *a, *v;

	memset(out, 0, sizeof(*out));
	if (!spec || !*spec) {
		struct utsname u;
		snprintf(out->os, sizeof(out->os), "linux");
		if (uname(&u) != 0)
			snprintf(u.machine, sizeof(u.machine), "x86_64");
		snprintf(out->arch, sizeof(out->arch), "%s", norm_arch(u.machine, out->variant));
		if (!strcmp(out->arch, "arm64"))
			out->variant[0] = '\0'; /* any arm64 variant will do */
		return 0;
	}
	if (strlen(spec) >= sizeof(buf))
		return shl_err(SHL_EINVAL, "bad platform '%.40s...': too long", spec);
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *c = buf; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	a = strchr(buf, '/');
	if (!a)
		return shl_err(SHL_EINVAL, "bad platform '%s': want os/arch[/variant]", spec);
	*a++ = '\0';
	v = strchr(a, '/');
	if (v)
		*v++ = '\0';
	if (!valid_part(buf) || !valid_part(a) || (v && (!valid_part(v) || strchr(v, '/'))))
		return shl_err(SHL_EINVAL, "bad platform '%s': want os/arch[/variant]", spec);
	snprintf(out->os, sizeof(out->os), "%.31s", buf);
	snprintf(out->variant, sizeof(out->variant), "%.31s", v ? v : "");
	snprintf(out->arch, sizeof(out->arch), "%.31s", norm_arch(a, out->variant));
	return 0;
}

int shl_load__platform_matches(const shl_json *plat, const shl_load_plat *w)
{
	const char *po = shl_json_get_str(plat, "os"), *pa = shl_json_get_str(plat, "architecture");
	const char *pv = shl_json_get_str(plat, "variant");

	if (!po || !pa || strcmp(po, w->os) || strcmp(pa, w->arch))
		return 0;
	if (!w->variant[0])
		return 1;
	if (!pv || !*pv) /* an unset variant is arm64's v8 and arm's v7 */
		return (!strcmp(w->arch, "arm64") && !strcmp(w->variant, "v8")) ||
		       (!strcmp(w->arch, "arm") && !strcmp(w->variant, "v7"));
	return !strcmp(pv, w->variant);
}

int shl_load__is_attestation(const shl_json *desc)
{
	const char *t = shl_json_get_str(shl_json_get(desc, "annotations"), "vnd.docker.reference.type");
	const shl_json *plat = shl_json_get(desc, "platform");
	const char *os = shl_json_get_str(plat, "os"), *arch = shl_json_get_str(plat, "architecture");

	return (t && !strcmp(t, "attestation-manifest")) || (os && !strcmp(os, "unknown")) ||
	       (arch && !strcmp(arch, "unknown"));
}
