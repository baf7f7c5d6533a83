#!/usr/bin/env bash
# Builds a Debian bookworm base image with python3 + venv from Debian's package mirror, for hosts
# that reach a package mirror but no container registry. Real users build from python:3.11-slim.
# Usage: images/base/build-local-base.sh [TAG]   (default joulebench-base:bookworm)
set -euo pipefail
tag=${1:-joulebench-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists"; exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install -y debootstrap" >&2; exit 1; }
root=$(mktemp -d)
chmod 755 "$root"  # mktemp makes it 0700: it becomes the image's /, which every user must traverse
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
echo "built $tag"
