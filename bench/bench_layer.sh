#!/usr/bin/env bash
# Layer conversion speed, side by side with the reference tools.
#
#   bench/bench_layer.sh [SHALE_BIN]          (default: build/shale; run as root)
#
# Builds a ~300 MB tar from /usr (usr/include, python3.11, perl, vim, icons;
# cached as $BENCH_DIR/usr.tar, default /tmp/shale-bench), then times with a warm
# page cache, the outputs removed before each run (median of $RUNS runs, default 5;
# hyperfine is used when installed unless BENCH_NO_HYPERFINE=1, else date +%s.%N):
#   openssl dgst -sha256              the hashing bound (SHA-NI)
#   shale convert (index mode)        from the file, and from a pipe (cat | shale)
#   shale convert --full              4 KiB image with the data copied in
#   naive Debian path                 tar -x into a directory + mkfs.erofs of it
#                                     ($NAIVE_RUNS runs, default 3)
# and prints MB/s (10^6 bytes) and the ratios shale/openssl and naive/shale.
# Peak RSS of each shale mode comes from /usr/bin/time -v (Debian package "time").
set -euo pipefail
SHALE=$(realpath "${1:-$(dirname "$0")/../build/shale}")
DIR=${BENCH_DIR:-/tmp/shale-bench}
RUNS=${RUNS:-5}
NAIVE_RUNS=${NAIVE_RUNS:-3}
for tool in openssl mkfs.erofs python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench_layer: $tool missing (apt-get install openssl erofs-utils python3 time)" >&2; exit 1; }
done
[ -x "$SHALE" ] || { echo "bench_layer: no shale binary at $SHALE" >&2; exit 1; }
mkdir -p "$DIR"
TAR=$DIR/usr.tar
if [ ! -s "$TAR" ]; then
  echo "building $TAR ..." >&2
  srcs=()
  for p in usr/include usr/lib/python3.11 usr/share/perl usr/share/vim usr/share/icons \
           usr/lib/x86_64-linux-gnu/perl; do
    [ -e "/$p" ] && srcs+=("$p")
  done
  tar --sort=name --numeric-owner -cf "$TAR.tmp" -C / "${srcs[@]}" 2>/dev/null || [ -s "$TAR.tmp" ]
  mv "$TAR.tmp" "$TAR"
fi
SIZE=$(stat -c %s "$TAR")
cat "$TAR" >/dev/null   # warm the page cache

prep="rm -rf '$DIR/out' && mkdir -p '$DIR/out'"
# timeit RUNS 'shell command' -> median seconds
timeit() {
  local runs=$1 cmd=$2
  if [ -z "${BENCH_NO_HYPERFINE:-}" ] && command -v hyperfine >/dev/null; then
    if ! hyperfine --style none --warmup 1 --runs "$runs" --prepare "$prep" \
        --export-json "$DIR/hf.json" "$cmd" >/dev/null 2>&1; then
      echo "bench_layer: command failed: $cmd" >&2
      bash -c "$prep"; bash -c "$cmd" >&2 || true
      exit 1
    fi
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' "$DIR/hf.json"
  else
    for _ in $(seq "$runs"); do
      bash -c "$prep"
      local t0 t1
      t0=$(date +%s.%N)
      bash -c "$cmd" >/dev/null || { echo "bench_layer: command failed: $cmd" >&2; exit 1; }
      t1=$(date +%s.%N)
      echo "$t1 - $t0" | bc -l
    done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
  fi
}
rss() { # 'shell command' -> peak RSS in KiB
  bash -c "$prep"
  /usr/bin/time -v bash -c "$1" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {print $2}'
}
mbps() { python3 -c "print(f'{$SIZE / $1 / 1e6:.0f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

c_ssl="openssl dgst -sha256 '$TAR' >/dev/null"
c_file="'$SHALE' convert -o '$DIR/out/l.erofs' '$TAR' >/dev/null"
c_pipe="cat '$TAR' | '$SHALE' convert -o '$DIR/out/l.erofs' >/dev/null"
c_full="'$SHALE' convert --full -o '$DIR/out/f.erofs' '$TAR' >/dev/null"
c_naive="mkdir -p '$DIR/out/x' && tar -xf '$TAR' -C '$DIR/out/x' && mkfs.erofs '$DIR/out/n.erofs' '$DIR/out/x' >/dev/null"

t_ssl=$(timeit "$RUNS" "$c_ssl")
t_file=$(timeit "$RUNS" "$c_file")
t_pipe=$(timeit "$RUNS" "$c_pipe")
t_full=$(timeit "$RUNS" "$c_full")
t_naive=$(timeit "$NAIVE_RUNS" "$c_naive")
r_file=$(rss "$c_file"); r_pipe=$(rss "'$SHALE' convert -o '$DIR/out/l.erofs' < <(cat '$TAR')")
r_full=$(rss "$c_full")
bash -c "$c_file"; bash -c "$c_full"
s_idx=$(stat -c %s "$DIR/out/l.erofs"); s_full=$(stat -c %s "$DIR/out/f.erofs")

printf 'tar: %s bytes (%s), %s runs (naive %s), %s\n' "$SIZE" "$TAR" "$RUNS" "$NAIVE_RUNS" \
  "$([ -z "${BENCH_NO_HYPERFINE:-}" ] && command -v hyperfine >/dev/null && echo hyperfine || echo 'date +%s.%N')"
printf '%-32s %8.3f s %6s MB/s\n' "openssl dgst -sha256" "$t_ssl" "$(mbps "$t_ssl")"
printf '%-32s %8.3f s %6s MB/s  %sx openssl time, RSS %s KiB\n' "shale convert (index, file)" "$t_file" \
  "$(mbps "$t_file")" "$(ratio "$t_file" "$t_ssl")" "$r_file"
printf '%-32s %8.3f s %6s MB/s  %sx openssl time, RSS %s KiB\n' "shale convert (index, pipe)" "$t_pipe" \
  "$(mbps "$t_pipe")" "$(ratio "$t_pipe" "$t_ssl")" "$r_pipe"
printf '%-32s %8.3f s %6s MB/s  RSS %s KiB\n' "shale convert --full (file)" "$t_full" "$(mbps "$t_full")" "$r_full"
printf '%-32s %8.3f s %6s MB/s  naive/shale index: %sx, naive/shale full: %sx\n' "tar -x + mkfs.erofs (naive)" \
  "$t_naive" "$(mbps "$t_naive")" "$(ratio "$t_naive" "$t_file")" "$(ratio "$t_naive" "$t_full")"
printf 'image sizes: index %s bytes (%s%% of the tar), full %s bytes\n' "$s_idx" \
  "$(python3 -c "print(f'{100 * $s_idx / $SIZE:.2f}')")" "$s_full"
rm -rf "$DIR/out" "$DIR/hf.json"
