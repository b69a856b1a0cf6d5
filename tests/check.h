/*
 * tests/check.h - minimal assertion macros for shale's unit tests.
 * A failed CHECK prints file:line and the expression (and the last shale
 * error) and marks the test failed; main() returns check_result().
 * Exit code 77 means "skipped" to ctest (print "SKIPPED: <why>" first).
 */
#ifndef SHL_TESTS_CHECK_H
#define SHL_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "shale/error.h"

static int check_failures;
static int check_count;

#define CHECK(expr) do { \
	check_count++; \
	if (!(expr)) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", \
			__FILE__, __LINE__, #expr, shl_error_last()); \
	} \
} while (0)

#define CHECK_OK(call) do { \
	int check_rc_ = (call); \
	check_count++; \
	if (check_rc_ != 0) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: %s returned %d (%s)\n", \
			__FILE__, __LINE__, #call, check_rc_, shl_error_last()); \
	} \
} while (0)

#define CHECK_ERR(call, code) do { \
	int check_rc_ = (call); \
	check_count++; \
	if (check_rc_ != (code)) { \
		check_failures++; \
		fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", \
			__FILE__, __LINE__, #call, check_rc_, (code), shl_error_last()); \
	} \
} while (0)

#define SKIP(why) do { printf("SKIPPED: %s\n", why); exit(77); } while (0)

static inline int check_result(const char *name)
{
	printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
	return check_failures ? 1 : 0;
}

#endif
