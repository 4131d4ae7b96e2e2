#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine, as root, to build layerlab and run its
# tests. Safe to run again: apt is skipped when every package is installed,
# and the virtual environment is reused. Starts no daemon.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LAYERLAB_VENV:-$repo_root/.venv}"

# System packages the engine, the oracles and the tests call.
packages=(
    busybox-static        # bootstrap: the busybox base image
    mmdebstrap debootstrap # bootstrap: debian:<suite> base images
    ca-certificates
    skopeo umoci          # read the OCI layout from outside
    uidmap                # newuidmap/newgidmap for rootless runs
    fuse-overlayfs fuse3  # overlay fallback where the kernel one fails
    slirp4netns passt     # rootless networking
    iptables iproute2     # bridge networking and NAT
    docker.io tini        # oracle: Docker Engine 20.10 (starts its own containerd)
    buildah podman crun   # oracle for newer Dockerfile syntax, benchmarks
    docker-registry       # a real registry on 127.0.0.1
    apache2-utils         # htpasswd for registry basic auth
    openssl curl bc xz-utils git
    util-linux procps     # findmnt, unshare, pgrep
    chromium fonts-liberation # extension tests, screenshots with text
    python3 python3-venv python3-pip
)

log() {
    echo "setup: $*"
}

missing_packages() {
    local package status
    for package in "${packages[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
        if [[ "$status" != "install ok installed" ]]; then
            echo "$package"
        fi
    done
}

install_system_packages() {
    local missing
    mapfile -t missing < <(missing_packages)

    if [[ ${#missing[@]} -eq 0 ]]; then
        log "all ${#packages[@]} system packages are installed; apt skipped"
        return
    fi

    log "installing ${#missing[@]} missing packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Debian's policy-rc.d convention: no service starts during the install.
    # There is no systemd here, but a sysvinit script would start dockerd.
    local policy=/usr/sbin/policy-rc.d
    local own_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    # Recommends would bring avahi, needrestart and a desktop stack.
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ $own_policy -eq 1 ]]; then
        rm -f "$policy"
    fi
}

open_device() {
    # Ordinary users need these for slirp4netns, pasta and fuse-overlayfs;
    # some hosts ship them 0600.
    local device="$1"
    if [[ -c "$device" ]]; then
        chmod 0666 "$device"
        log "$device is mode 0666"
    else
        log "$device is missing; rootless tests that need it will skip"
    fi
}

make_venv() {
    # Debian's interpreter, not one under /root, so that ordinary users in
    # the tests can run the venv too.
    if [[ ! -x "$venv/bin/python" ]]; then
        log "creating $venv with /usr/bin/python3"
        /usr/bin/python3 -m venv "$venv"
    else
        log "reusing $venv"
    fi

    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo_root[test]"
    log "installed layerlab[test] into $venv"

    # An editable install does not copy the prebuilt JupyterLab extension
    # into share/, where JupyterLab looks; a link serves the same files.
    local extensions="$venv/share/jupyter/labextensions"
    mkdir -p "$extensions"
    ln -sfn "$repo_root/layerlab/labextension" "$extensions/layerlab"
    log "linked the JupyterLab extension into $extensions"
}

install_system_packages
open_device /dev/net/tun
open_device /dev/fuse
make_venv
log "done"
