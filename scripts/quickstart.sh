#!/usr/bin/env bash
# Quick start: install the Debian packages, build shale, convert the bundled
# fixture layer (fixtures/layer.tar.gz, gzip) into an EROFS index image + its
# uncompressed tar, and list the image's tree with shale's own reader.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target shale >/dev/null
out=$(mktemp -d)
build/shale convert -o "$out/layer.erofs" fixtures/layer.tar.gz
build/shale tree -l "$out/layer.erofs"
echo "(image and tar in $out)"
