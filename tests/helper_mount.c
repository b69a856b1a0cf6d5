/*
 * tests/helper_mount.c - a tiny command-line front to run/mount.c for the
 * python tests:
 *   helper_mount erofs IMAGE MNT [TAR]      file-backed (loop on ENOTBLK;
 *                                           SHALE_FORCE_LOOP=1 forces loops)
 *   helper_mount overlay MNT LOWER...       read-only overlay, top first
 *   helper_mount umount MNT
 * Exit 77 with "SKIPPED: ..." when mounting is not permitted.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shale/error.h"
#include "shale/mount.h"

int main(int argc, char **argv)
{
	int rc = 0, loop = 0;

	if (argc >= 4 && !strcmp(argv[1], "erofs")) {
		rc = shl_mount_erofs(argv[2], argc > 4 ? argv[4] : NULL, argv[3], &loop);
		if (!rc)
			printf("%s\n", loop ? "loop" : "file");
	} else if (argc >= 4 && !strcmp(argv[1], "overlay")) {
		rc = shl_mount_overlay(argv[2], (const char *const *)argv + 3, (size_t)(argc - 3), NULL, NULL);
	} else if (argc == 3 && !strcmp(argv[1], "umount")) {
		rc = shl_umount(argv[2], 0);
	} else {
		fprintf(stderr, "usage: helper_mount erofs IMAGE MNT [TAR] | overlay MNT LOWER... | umount MNT\n");
		return 2;
	}
	if (rc) {
		if (shl_error_errno() == EPERM) {
			printf("SKIPPED: %s\n", shl_error_last());
			return 77;
		}
		fprintf(stderr, "helper_mount: %s\n", shl_error_last());
		return 1;
	}
	return 0;
}
