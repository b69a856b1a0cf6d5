#!/usr/bin/env bash
# pull speed against a loopback registry, side by side with skopeo and podman.
#
#   bench/bench_pull.sh [SHALE_BIN]
#
# Uses the bench image of bench_load_save.sh (3 gzip layers, ~670 MB
# compressed, 2.08 GB of tars; built from this machine's /usr with umoci,
# cached in $BENCH_DIR, default /var/tmp/shale-bench), pushes it with skopeo
# into Debian's docker-registry on 127.0.0.1 (filesystem storage under
# $BENCH_DIR), then times with a warm page cache and fresh destinations:
#   shale pull                     (download + decompress + sha256 x2 + tar -> EROFS index, fsync'd)
#   skopeo copy docker://... oci:  (download + sha256 of blobs only; converts nothing)
#   podman pull                    (fresh --root; download + decompress + extract)
# and prints the ratios and shale's peak RSS. RUNS (default 3): best of.
set -euo pipefail
SHALE=$(realpath "${1:-$(dirname "$0")/../build/shale}")
DIR=${BENCH_DIR:-/var/tmp/shale-bench}
RUNS=${RUNS:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
for t in docker-registry skopeo podman umoci; do
  command -v $t >/dev/null || { echo "bench_pull: $t is not installed" >&2; exit 1; }
done
if [ ! -f "$DIR/oci/index.json" ] || ! grep -q '"big"' "$DIR/oci/index.json"; then
  # bench_load_save.sh builds the image; run it once
  bash "$HERE/bench_load_save.sh" "$SHALE" >/dev/null
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=$DIR/registry
rm -rf "$REG"; mkdir -p "$REG"
cat >"$REG/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $REG/data
http:
  addr: 127.0.0.1:$PORT
EOF
docker-registry serve "$REG/config.yml" >"$REG/log" 2>&1 &
REGPID=$!
trap 'kill $REGPID 2>/dev/null; wait $REGPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
REF=127.0.0.1:$PORT/bench/big:1
skopeo copy -q --dest-tls-verify=false "oci:$DIR/oci:big" "docker://$REF"
COMP=$(skopeo inspect --tls-verify=false "docker://$REF" --raw | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
find "$REG/data" -type f -exec cat {} + >/dev/null

t() { # command... : seconds; peak RSS (KiB) in $DIR/rss
  local t0 t1
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$DIR/rss" "$@" >/dev/null 2>"$DIR/err" || { cat "$DIR/err" >&2; return 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
best() { # name command... : best of RUNS, with a cleanup between runs
  local b="" x
  for _ in $(seq "$RUNS"); do
    rm -rf "$DIR/pl-st" "$DIR/pl-sk" "$DIR/pl-pr" "$DIR/pl-prun"
    x=$(t "$@")
    if [ -z "$b" ] || [ "$(echo "$x < $b" | bc -l)" = 1 ]; then b=$x; cp "$DIR/rss" "$DIR/rss.best"; fi
  done
  echo "$b"
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }

t_shale=$(best "$SHALE" --root "$DIR/pl-st" pull -q "$REF"); rss=$(cat "$DIR/rss.best")
t_skopeo=$(best skopeo copy -q --src-tls-verify=false "docker://$REF" "oci:$DIR/pl-sk:big")
t_podman=$(RUNS=1 best podman --root "$DIR/pl-pr" --runroot "$DIR/pl-prun" pull -q --tls-verify=false "$REF")
rm -rf "$DIR/pl-st" "$DIR/pl-sk" "$DIR/pl-prun"; podman --root "$DIR/pl-pr" --runroot "$DIR/pl-prun" rmi -a -f >/dev/null 2>&1 || true; rm -rf "$DIR/pl-pr" "$DIR/pl-prun"

printf 'image: %s bytes compressed (3 gzip layers), loopback registry\n' "$COMP"
printf '%-40s %8.2f s  (%s MB/s compressed)\n' "shale pull" "$t_shale" "$(echo "scale=0; $COMP / $t_shale / 1000000" | bc -l)"
printf '%-40s %8.2f s  (shale / skopeo = %s; target <= 1.5)\n' "skopeo copy docker:// oci: (blobs only)" "$t_skopeo" "$(ratio "$t_shale" "$t_skopeo")"
printf '%-40s %8.2f s  (shale %sx faster; target >= 10)\n' "podman pull (fresh storage)" "$t_podman" "$(ratio "$t_podman" "$t_shale")"
printf 'shale peak RSS: %s KiB (target <= 65536)\n' "$rss"
