/*
 * fuzz/fuzz_ref.c - image reference parsing (util/ref.c) and the pull
 * reference forms (enroot's docker://[USER@][REGISTRY#]IMAGE[:TAG], bhatti's
 * local names in fetch/pull.c) on arbitrary bytes. Every accepted reference
 * must print back to a form that parses to the same value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shale/error.h"
#include "shale/ref.h"
#include "shale/registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), full[1200], again[1200], fam[1200], user[256], name[600];
	shl_ref r, r2;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (shl_ref_parse(s, &r) == 0) {
		shl_ref_full(&r, full, sizeof(full));
		shl_ref_familiar(&r, fam, sizeof(fam));
		if (shl_ref_parse(full, &r2) != 0 || memcmp(&r, &r2, sizeof(r)) != 0)
			abort(); /* the full form must parse back to the same reference */
		if (shl_ref_parse(fam, &r2) != 0 || memcmp(&r, &r2, sizeof(r)) != 0)
			abort();
		shl_ref_repo(&r, 1, again, sizeof(again));
	}
	if (shl_pull_ref(s, full, sizeof(full), user, sizeof(user)) == 0) {
		if (shl_ref_parse(full, &r) != 0)
			abort(); /* what shl_pull_ref returns is a valid reference */
		shl_pull_local_name(s, name, sizeof(name));
	}
	shl_error_clear();
	free(s);
	return 0;
}
