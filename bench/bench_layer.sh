#!/usr/bin/env bash
# Layer conversion speed, side by side with the reference tools.
#
#   bench/bench_layer.sh [SHALE_BIN]
#
# Builds a ~300 MB tar from /usr (cached in $BENCH_DIR, default /var/tmp/shale-bench),
# then times (median of $RUNS runs, warm page cache, outputs removed before each run):
#   openssl dgst -sha256        the hashing bound
#   shale convert (index mode)  from the file and from a pipe
#   shale convert --full
#   naive Debian path           tar -x into a directory + mkfs.erofs of it
# and prints MB/s and the ratios. Peak RSS of shale comes from /usr/bin/time.
set -euo pipefail
SHALE=${1:-$(dirname "$0")/../build/shale}
DIR=${BENCH_DIR:-/var/tmp/shale-bench}
RUNS=${RUNS:-5}
mkdir -p "$DIR"
TAR=$DIR/usr.tar
if [ ! -s "$TAR" ]; then
  tar -cf "$TAR" -C / --exclude='usr/lib/x86_64-linux-gnu/dri' \
    usr/include usr/lib/python3.11 usr/share/perl usr/share/vim usr/share/icons usr/lib/gcc 2>/dev/null || true
fi
SIZE=$(stat -c %s "$TAR")
cat "$TAR" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timeit() { # command... -> seconds (median)
  for _ in $(seq "$RUNS"); do
    rm -rf "$DIR/out" && mkdir -p "$DIR/out" && sync
    local t0 t1
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
  done | median
}
mbps() { echo "scale=0; $SIZE / $1 / 1000000" | bc -l; }
ratio() { echo "scale=2; $1 / $2" | bc -l; }

t_ssl=$(timeit openssl dgst -sha256 "$TAR")
t_file=$(timeit "$SHALE" convert -o "$DIR/out/l.erofs" "$TAR")
t_pipe=$(timeit bash -c "cat '$TAR' | '$SHALE' convert -o '$DIR/out/l.erofs'")
t_full=$(timeit "$SHALE" convert --full -o "$DIR/out/f.erofs" "$TAR")
t_naive=$(RUNS=1 timeit bash -c "mkdir -p '$DIR/out/x' && tar -xf '$TAR' -C '$DIR/out/x' && mkfs.erofs '$DIR/out/n.erofs' '$DIR/out/x'")
rss=$( { /usr/bin/time -f %M "$SHALE" convert -o "$DIR/out/l.erofs" "$TAR" >/dev/null; } 2>&1 | tail -n 1)

printf 'tar: %s bytes\n' "$SIZE"
printf '%-34s %8.3f s %6s MB/s\n' "openssl dgst -sha256" "$t_ssl" "$(mbps "$t_ssl")"
printf '%-34s %8.3f s %6s MB/s  (%sx openssl)\n' "shale convert (index, file)" "$t_file" "$(mbps "$t_file")" "$(ratio "$t_file" "$t_ssl")"
printf '%-34s %8.3f s %6s MB/s  (%sx openssl)\n' "shale convert (index, pipe)" "$t_pipe" "$(mbps "$t_pipe")" "$(ratio "$t_pipe" "$t_ssl")"
printf '%-34s %8.3f s %6s MB/s\n' "shale convert --full (file)" "$t_full" "$(mbps "$t_full")"
printf '%-34s %8.3f s %6s MB/s  (shale index is %sx faster)\n' "tar -x + mkfs.erofs (naive)" "$t_naive" "$(mbps "$t_naive")" "$(ratio "$t_naive" "$t_file")"
printf 'shale peak RSS: %s KiB\n' "$rss"
rm -rf "$DIR/out"
