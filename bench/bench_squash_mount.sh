#!/usr/bin/env bash
# squash and mount speed, side by side with the reference path.
#
#   bench/bench_squash_mount.sh [SHALE_BIN]
#
# Uses the ~2 GB 3-layer image that bench_load_save.sh builds (in $BENCH_DIR),
# plus a 4th small layer, then times:
#   shale squash --format ext4     vs  umoci unpack + mke2fs -d (the reference path)
#     (first with the stored tars cold, as a load written with O_DIRECT leaves them, then
#      with them in the page cache like the reference tool's blobs)
#   shale squash --format erofs
#   shale squash --format ext4 again (served from the squash cache: a copy)
#   shale mount (4 layers, first mount: includes the EROFS layer mounts)
#   shale mount of a second image sharing those layers, and umount
set -euo pipefail
SHALE=$(realpath "${1:-$(dirname "$0")/../build/shale}")
DIR=${BENCH_DIR:-/var/tmp/shale-bench}
[ -d "$DIR/oci" ] || { echo "run bench/bench_load_save.sh first (it builds the image)"; exit 1; }
now() { date +%s.%N; }
el() { echo "$2 - $1" | bc -l; }
ST=$DIR/sq-st
rm -rf "$ST" "$DIR/sq-out" "$DIR/bundle" "$DIR/m1" "$DIR/m2"
mkdir -p "$DIR/sq-out" "$DIR/m1" "$DIR/m2"
if ! umoci stat --image "$DIR/oci:big4" >/dev/null 2>&1; then
  umoci tag --image "$DIR/oci:big" big4 2>/dev/null || skopeo copy -q "oci:$DIR/oci:big" "oci:$DIR/oci:big4"
  printf 'hello\n' > "$DIR/hello"; tar -cf "$DIR/l4.tar" -C "$DIR" hello
  umoci raw add-layer --image "$DIR/oci:big4" "$DIR/l4.tar"
fi
[ -s "$DIR/big4.tar" ] || skopeo copy -q "oci:$DIR/oci:big4" "docker-archive:$DIR/big4.tar:big:4"
"$SHALE" --root "$ST" load -i "$DIR/big4.tar" >/dev/null
"$SHALE" --root "$ST" tag big:4 big:other
SIZE=$(du -sb "$ST/layers" | cut -f1)

sync; t0=$(now); "$SHALE" --root "$ST" squash --format ext4 big:4 -o "$DIR/sq-out/img.ext4"; t1=$(now)
sync; t2=$(now); "$SHALE" --root "$ST" squash --format erofs big:4 -o "$DIR/sq-out/img.erofs"; t3=$(now)
cat "$ST"/layers/*.tar >/dev/null   # the same warm page cache umoci's blobs have
sync; tw0=$(now); "$SHALE" --root "$ST" squash --no-cache --format ext4 big:4 -o "$DIR/sq-out/img-warm.ext4"; tw1=$(now)
sync; tc0=$(now); "$SHALE" -q --root "$ST" squash --format ext4 big:4 -o "$DIR/sq-out/img2.ext4" 2>/dev/null; tc1=$(now)
sync; t4=$(now)
umoci unpack --image "$DIR/oci:big4" "$DIR/bundle" >/dev/null 2>&1
mke2fs -q -t ext4 -d "$DIR/bundle/rootfs" "$DIR/sq-out/ref.ext4" "$(( $(du -sm "$DIR/bundle/rootfs" | cut -f1) * 13 / 10 + 64 ))M"
t5=$(now)
sync; t6=$(now); "$SHALE" --root "$ST" mount big:4 "$DIR/m1"; t7=$(now)
t8=$(now); "$SHALE" --root "$ST" mount big:other "$DIR/m2"; t9=$(now)
ta=$(now); "$SHALE" --root "$ST" umount "$DIR/m2"; "$SHALE" --root "$ST" umount "$DIR/m1"; tb=$(now)

printf 'image: 4 layers, %s bytes of stored layers\n' "$SIZE"
printf '%-44s %8.2f s\n' "shale squash --format ext4 (tars cold after load)" "$(el "$t0" "$t1")"
printf '%-44s %8.2f s\n' "shale squash --format ext4 (tars warm)" "$(el "$tw0" "$tw1")"
printf '%-44s %8.2f s\n' "shale squash --format erofs" "$(el "$t2" "$t3")"
printf '%-44s %8.2f s\n' "shale squash --format ext4 again (cached)" "$(el "$tc0" "$tc1")"
printf '%-44s %8.2f s   (shale ext4 %sx faster cold, %sx warm)\n' "umoci unpack + mke2fs -d" "$(el "$t4" "$t5")" \
  "$(echo "scale=1; ($t5 - $t4) / ($t1 - $t0)" | bc -l)" "$(echo "scale=1; ($t5 - $t4) / ($tw1 - $tw0)" | bc -l)"
printf '%-44s %8.1f ms\n' "shale mount (first: 4 EROFS + overlay)" "$(echo "($t7 - $t6) * 1000" | bc -l)"
printf '%-44s %8.1f ms\n' "shale mount (second image, shared layers)" "$(echo "($t9 - $t8) * 1000" | bc -l)"
printf '%-44s %8.1f ms\n' "shale umount (both)" "$(echo "($tb - $ta) * 1000" | bc -l)"
rm -rf "$ST" "$DIR/sq-out" "$DIR/bundle" "$DIR/m1" "$DIR/m2"
