#!/usr/bin/env bash
# The whole test suite: install dependencies, build with the release warnings
# (-Werror), run ctest; build again with ASan+UBSan and run the same tests;
# run the fuzz targets' seed corpora (part of ctest); cppcheck must find nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)

echo "== release build + tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j1

echo "== ASan + UBSan build + tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSHL_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j1

echo "== cppcheck"
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
  --std=c11 --inline-suppr -D_GNU_SOURCE -I include -I . \
  --suppress=missingIncludeSystem util store load save fetch run cli
echo "== all checks passed"
