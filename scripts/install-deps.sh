#!/usr/bin/env bash
# Install the Debian 12 packages shale needs to build and test (run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # build
  cmake gcc clang libclang-rt-14-dev pkg-config make
  libarchive-dev libjson-c-dev liblmdb-dev libxxhash-dev libssl-dev libzstd-dev zlib1g-dev
  libisal-dev libext2fs-dev libcurl4-openssl-dev libmicrohttpd-dev
  # test peers and tools
  python3 erofs-utils e2fsprogs zstd xz-utils tar util-linux cppcheck busybox-static file procps
  skopeo umoci podman docker-registry
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
