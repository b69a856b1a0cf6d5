#!/usr/bin/env bash
# load / save speed, side by side with podman and skopeo.
#
#   bench/bench_load_save.sh [SHALE_BIN]
#
# Builds a multi-layer image of ~600 MB from this machine's /usr with umoci
# (cached in $BENCH_DIR, default /var/tmp/shale-bench), writes it as a
# docker-archive with skopeo, then times (warm page cache, fresh stores):
#   shale load        vs  podman load (fresh storage)  and  skopeo copy docker-archive: oci:
#   shale load again  (image already stored: dedup)
#   shale save        vs  podman save
# and prints the ratios and shale's peak RSS (/usr/bin/time).
set -euo pipefail
SHALE=$(realpath "${1:-$(dirname "$0")/../build/shale}")
DIR=${BENCH_DIR:-/var/tmp/shale-bench}
mkdir -p "$DIR"
ARCH=$DIR/image-da.tar
if [ ! -s "$ARCH" ]; then
  rm -rf "$DIR/oci" "$DIR/l"*.tar
  tar -cf "$DIR/l1.tar" -C / usr/lib/x86_64-linux-gnu 2>/dev/null || true
  tar -cf "$DIR/l2.tar" -C / usr/share 2>/dev/null || true
  tar -cf "$DIR/l3.tar" -C / usr/include usr/lib/python3.11 2>/dev/null || true
  umoci init --layout "$DIR/oci"
  umoci new --image "$DIR/oci:big"
  for l in l1 l2 l3; do umoci raw add-layer --image "$DIR/oci:big" "$DIR/$l.tar"; done
  skopeo copy -q "oci:$DIR/oci:big" "docker-archive:$ARCH:bench/big:1"
  rm -f "$DIR/l"*.tar
fi
SIZE=$(stat -c %s "$ARCH")
cat "$ARCH" >/dev/null

t() { # command... : prints seconds; peak RSS (KiB) lands in $DIR/rss
  local t0 t1
  sync
  t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$DIR/rss" "$@" >/dev/null 2>"$DIR/err" || { cat "$DIR/err" >&2; return 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
ratio() { echo "scale=1; $1 / $2" | bc -l; }
POD="podman --root $DIR/p-root --runroot $DIR/p-run"

rm -rf "$DIR/st" "$DIR/p-root" "$DIR/p-run" "$DIR/sk" "$DIR/out"*.tar
t_load=$(t "$SHALE" --root "$DIR/st" load -i "$ARCH"); rss_load=$(tail -n 1 "$DIR/rss")
t_reload=$(t "$SHALE" --root "$DIR/st" load -i "$ARCH")
t_podload=$(t $POD load -i "$ARCH")
t_skopeo=$(t skopeo copy -q "docker-archive:$ARCH" "oci:$DIR/sk:big")
t_save=$(t "$SHALE" --root "$DIR/st" save -o "$DIR/out-shale.tar" bench/big:1); rss_save=$(tail -n 1 "$DIR/rss")
t_podsave=$(t $POD save -o "$DIR/out-podman.tar" bench/big:1)

printf 'image: %s bytes (3 layers, docker-archive)\n' "$SIZE"
printf '%-40s %8.2f s\n' "shale load" "$t_load"
printf '%-40s %8.2f s   (shale %sx faster)\n' "podman load (fresh storage)" "$t_podload" "$(ratio "$t_podload" "$t_load")"
printf '%-40s %8.2f s   (shale %sx faster)\n' "skopeo copy docker-archive: oci:" "$t_skopeo" "$(ratio "$t_skopeo" "$t_load")"
printf '%-40s %8.2f s   (%sx faster than the first load)\n' "shale load, image already stored" "$t_reload" "$(ratio "$t_load" "$t_reload")"
printf '%-40s %8.2f s\n' "shale save" "$t_save"
printf '%-40s %8.2f s   (shale %sx faster)\n' "podman save" "$t_podsave" "$(ratio "$t_podsave" "$t_save")"
printf 'shale peak RSS: load %s KiB, save %s KiB\n' "$rss_load" "$rss_save"
$POD rmi -a -f >/dev/null 2>&1 || true
rm -rf "$DIR/st" "$DIR/p-root" "$DIR/p-run" "$DIR/sk" "$DIR/out"*.tar
