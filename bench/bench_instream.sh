#!/usr/bin/env bash
# Throughput of the front of the layer pipeline (util/instream.c: sniff,
# decompress, tee into a file, SHA-256 + XXH3 on the hash thread), next to
# the reference tools doing less work each:
#
#   bench/bench_instream.sh
#
# Builds a ~300 MB tar from /usr and its gzip -6 / zstd -3 forms (cached in
# $BENCH_DIR, default /var/tmp/shale-bench-instream), compiles a small driver
# from the sources with gcc -O2, then prints the median of $RUNS (default 5)
# warm-cache runs (wall time, MB/s of plain bytes, the best run's wall time,
# CPU time of all threads):
#   openssl dgst -sha256      the SHA-256 bound
#   instream plain            from the file, no tee / tee into a fresh file / from a pipe
#   gzip -dc, zstd -dc        decompression alone, to /dev/null
#   instream gzip, zstd       decompress + tee + both digests
# On a busy machine wall times move a lot (the pipeline needs both cores);
# the CPU column is steadier. Compare runs made back to back.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
DIR=${BENCH_DIR:-/var/tmp/shale-bench-instream}
RUNS=${RUNS:-5}
mkdir -p "$DIR"
TAR=$DIR/usr.tar
if [ ! -s "$TAR" ]; then
  tar -cf "$TAR" -C / --ignore-failed-read usr/include usr/lib/python3.11 usr/share/perl \
    usr/share/vim usr/share/icons usr/share/man 2>/dev/null || true
fi
[ -s "$TAR.gz" ] || gzip -6 -c "$TAR" >"$TAR.gz"
[ -s "$TAR.zst" ] || zstd -q -3 -c "$TAR" >"$TAR.zst"
SIZE=$(stat -c %s "$TAR")

cat >"$DIR/driver.c" <<'EOF'
/* bench driver: run one stream (argv[1], "-" = stdin) through shl_instream,
 * teeing into argv[2] if given; print the wall seconds */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "shale/error.h"
#include "util/instream.h"
int main(int argc, char **argv)
{
	int in = strcmp(argv[1], "-") ? open(argv[1], O_RDONLY) : 0;
	int out = argc > 2 ? open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644) : -1;
	struct timespec a, b;
	shl_instream *s;
	shl_instream_result r;
	const void *p;
	size_t n;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (shl_instream_new_fd(&s, in, out))
		goto fail;
	do
		if (shl_instream_next(s, &p, &n))
			goto fail;
	while (n);
	if (shl_instream_finish(s, &r))
		goto fail;
	shl_instream_free(s);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.4f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
	return 0;
fail:
	fprintf(stderr, "instream: %s\n", shl_error_last());
	return 1;
}
EOF
# shellcheck disable=SC2046
gcc -std=gnu11 -O2 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -I"$SRC" -I"$SRC/include" "$DIR/driver.c" \
  "$SRC"/util/error.c "$SRC"/util/hash.c "$SRC"/util/instream.c "$SRC"/util/decomp.c "$SRC"/util/dio.c \
  $(pkg-config --libs libcrypto libxxhash libisal libzstd) -lpthread -o "$DIR/driver"
cat "$TAR" "$TAR.gz" "$TAR.zst" >/dev/null

# "wall cpu" of the median run, and the fastest wall time (the least disturbed)
median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)], a[1]+0}'; }
timeit() { # command... -> "wall cpu min_wall" seconds (the tee target is a fresh file)
  for _ in $(seq "$RUNS"); do
    rm -f "$DIR/out.tar"
    /usr/bin/time -f '%e %U %S' -o "$DIR/time" "$@" >/dev/null
    awk '{printf "%.3f %.3f\n", $1, $2 + $3}' "$DIR/time"
  done | median
}
line() { # label "wall cpu min" ["wall cpu min" of the reference]
  local wall cpu min mbps ratio=""
  read -r wall cpu min <<<"$2"
  mbps=$(echo "scale=0; $SIZE / $wall / 1000000" | bc -l)
  [ -n "${3:-}" ] && ratio=$(printf '(%.2fx openssl)' "$(echo "$wall / ${3%% *}" | bc -l)")
  printf '%-32s %6.3f s %5s MB/s (best %5.3f s)  cpu %5.2f s  %s\n' "$1" "$wall" "$mbps" "$min" "$cpu" "$ratio"
}
D=$DIR/driver
t_ssl=$(timeit openssl dgst -sha256 "$TAR")
t_plain=$(timeit "$D" "$TAR")
t_tee=$(timeit "$D" "$TAR" "$DIR/out.tar")
t_pipe=$(timeit bash -c "cat '$TAR' | '$D' - '$DIR/out.tar'")
t_gzd=$(timeit bash -c "gzip -dc '$TAR.gz' >/dev/null")
t_gz=$(timeit "$D" "$TAR.gz" "$DIR/out.tar")
t_zsd=$(timeit bash -c "zstd -qdc '$TAR.zst' >/dev/null")
t_zs=$(timeit "$D" "$TAR.zst" "$DIR/out.tar")
rm -f "$DIR/out.tar"

printf 'tar: %s bytes (gzip %s, zstd %s); %s cores; load %s\n' "$SIZE" "$(stat -c %s "$TAR.gz")" \
  "$(stat -c %s "$TAR.zst")" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
line "openssl dgst -sha256" "$t_ssl"
line "instream plain (file, no tee)" "$t_plain" "$t_ssl"
line "instream plain (file, tee)" "$t_tee" "$t_ssl"
line "instream plain (pipe, tee)" "$t_pipe" "$t_ssl"
line "gzip -dc" "$t_gzd"
line "instream gzip (file, tee)" "$t_gz" "$t_ssl"
line "zstd -dc" "$t_zsd"
line "instream zstd (file, tee)" "$t_zs" "$t_ssl"
