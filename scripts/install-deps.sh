#!/usr/bin/env bash
# Install the Debian 12 packages shale needs to build and test (as root, or via sudo).
# Only missing packages are installed; with everything present this is a no-op.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  # build
  cmake make gcc clang libclang-rt-14-dev pkg-config
  libarchive-dev libjson-c-dev liblmdb-dev libxxhash-dev libssl-dev libzstd-dev zlib1g-dev
  libisal-dev libext2fs-dev libcurl4-openssl-dev libmicrohttpd-dev
  # test peers and tools used by tests/
  python3 erofs-utils e2fsprogs zstd gzip xz-utils tar util-linux procps busybox-static file cppcheck
  skopeo umoci podman docker-registry
  docker.io containerd buildah   # private daemons (test_save_daemons), buildah images (test_buildah_interop)
)
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo)" >&2; exit 1; }
  sudo=(sudo)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
