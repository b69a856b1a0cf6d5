#!/usr/bin/env bash
# Quick start: install dependencies, build shale, convert the bundled fixture
# layer (gzip) into an EROFS index + its tar, and list the image's tree.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target shale >/dev/null
out=$(mktemp -d)
build/shale convert -o "$out/layer.erofs" fixtures/layer.tar.gz
build/shale tree -l "$out/layer.erofs"
echo "(image and tar in $out)"
