#!/usr/bin/env bash
# Rebuild the prebuilt JupyterLab extension in layerlab/labextension/ from
# extension/. The output is committed, so `pip install .` needs no Node.js.
# Run this after changing extension/ and commit what it writes.
#
# Needs Node.js with npm (tested with Node.js 20) and a Python with
# JupyterLab 4, whose staging/package.json gives the shared package versions.
# Set LAYERLAB_PYTHON to pick that Python (default: python3).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extension="$repo_root/extension"
output="$repo_root/layerlab/labextension"
python="${LAYERLAB_PYTHON:-python3}"

log() {
    echo "build-extension: $*"
}

core_path="$("$python" -c 'import os, jupyterlab; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))')" || {
    echo "build-extension: jupyterlab is not installed in $python; install it with: $python -m pip install 'jupyterlab>=4,<5'" >&2
    exit 2
}
log "sharing package versions with $core_path"

cd "$extension"
# npm ci installs exactly the versions that package-lock.json pins.
npm ci --no-audit --no-fund
npx tsc

# The wheel ships every file under static/, so no bundle of an earlier build
# may stay there.
rm -rf "$output"
# `jupyter labextension build` would do the same, but JupyterLab 4.6 sends
# it through jupyter_builder, which looks up core-meta on npm and GitHub.
node node_modules/@jupyterlab/builder/lib/build-labextension.js --core-path "$core_path" "$extension"
cp install.json "$output/install.json"

log "wrote $output:"
find "$output" -type f | sort | sed "s|^$repo_root/|  |"
