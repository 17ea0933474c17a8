#!/usr/bin/env bash
# Makes the base image the Dockerfiles start from when the Docker engine does not have it:
# `debian:bookworm-slim`, built with debootstrap (--variant=minbase, Debian's own package
# archive) and `docker import`ed under that exact tag. Cached: nothing happens when the image
# is present (pulled from a registry, or made by an earlier run).
#
#   scripts/docker-base.sh            # make it if missing
#   scripts/docker-base.sh --force    # make it again
#
# Why: the project's machines run a Docker engine but reach no container registry, only
# Debian's archive. A user with Docker Hub never needs this: `docker build` pulls the real
# image. The result is close to the official slim image — the minbase package set (apt,
# bash, coreutils, dpkg, …), the same sources list, no package lists, caches, docs, man pages
# or locales — so the Dockerfiles behave the same on either. Needs root (debootstrap) and
# installs debootstrap when it is missing. Environment: DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
set -euo pipefail

release=bookworm
tag=debian:bookworm-slim
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "${1:-}" != "--force" ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "docker-base: $tag present"
    exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v debootstrap >/dev/null 2>&1; then
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

root=$(mktemp -d)
trap '$sudo rm -rf "$root"' EXIT
echo "docker-base: debootstrap --variant=minbase $release from $mirror"
$sudo debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.log" 2>&1 ||
    { cat "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# What the official slim image leaves out, and the sources list it ships.
$sudo rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
$sudo find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
$sudo tee "$root/etc/apt/sources.list" >/dev/null <<EOF
deb http://deb.debian.org/debian $release main
deb http://deb.debian.org/debian $release-updates main
deb http://deb.debian.org/debian-security $release-security main
EOF
# Containers do not start services on package installs.
printf '#!/bin/sh\nexit 101\n' | $sudo tee "$root/usr/sbin/policy-rc.d" >/dev/null
$sudo chmod 0755 "$root/usr/sbin/policy-rc.d"

$sudo tar --numeric-owner -C "$root" -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$tag" >/dev/null
echo "docker-base: imported $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
