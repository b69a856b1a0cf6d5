#!/usr/bin/env bash
# The whole test suite (the README's test command):
#   1. install the Debian packages (scripts/install-deps.sh; no-op when present);
#   2. release build (CMakeLists' flags: -Wall -Wextra -Werror ...) + ctest;
#   3. ASan+UBSan build (-DSHL_SANITIZE=ON) + the same ctest, leaks detected;
#      the fuzz targets' seed corpora run as tests in both builds;
#   4. cppcheck over the library and CLI sources, gating at zero findings.
# Build dirs: $SHALE_BUILD_DIR (default build) and ${SHALE_BUILD_DIR}-asan.
# Tests that need root or kernel features print SKIPPED and count as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
jobs=$(nproc)
bdir=${SHALE_BUILD_DIR:-build}
t0=$SECONDS

echo "== release build + tests ($bdir)"
cmake -S . -B "$bdir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$bdir" -j"$jobs"
ctest --test-dir "$bdir" --output-on-failure -j1

echo "== ASan + UBSan build + tests ($bdir-asan)"
cmake -S . -B "$bdir-asan" -DCMAKE_BUILD_TYPE=Debug -DSHL_SANITIZE=ON >/dev/null
cmake --build "$bdir-asan" -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$bdir-asan" --output-on-failure -j1

echo "== cppcheck"
# errors (always on) + warning/portability/performance, with the posix and gnu
# library models (fd/memory leaks, misuse of libc calls). readdirCalled is off:
# it recommends readdir_r, which glibc deprecates (readdir is safe per DIR*).
cppcheck --quiet --error-exitcode=1 --enable=warning,portability,performance \
  --library=posix --library=gnu --std=c11 --inline-suppr -D_GNU_SOURCE -I include -I . \
  --suppress=missingIncludeSystem --suppress=readdirCalled \
  util store load save fetch run cli
echo "== all checks passed in $((SECONDS - t0)) s"
