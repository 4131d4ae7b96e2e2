#!/usr/bin/env bash
# Execute the course notebooks headless with the layerlab kernel and write
# the executed copies to out/notebooks/. Run scripts/setup.sh first.
#
# Environment:
#   LAYERLAB_ROOT         image store (default: $PWD/.layerlab-store)
#   LAYERLAB_VENV         virtual environment (default: <repo>/.venv)
#   LAYERLAB_CELL_TIMEOUT seconds one cell may run (default: 1200, because a
#                         debian bootstrap on a slow mirror takes minutes)
# Runs notebooks/NN-*.ipynb in order, in one store, and stops at the first
# notebook with a failing cell.
# Exits 1 if a cell fails, 2 if the set-up or the notebooks are missing.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LAYERLAB_VENV:-$repo_root/.venv}"
export LAYERLAB_ROOT="${LAYERLAB_ROOT:-$PWD/.layerlab-store}"
cell_timeout="${LAYERLAB_CELL_TIMEOUT:-1200}"
out_dir="$repo_root/out/notebooks"

log() {
    echo "course: $*"
}

if [[ ! -x "$venv/bin/python" ]]; then
    echo "course: $venv is missing; run scripts/setup.sh first" >&2
    exit 2
fi
python="$venv/bin/python"

"$python" -m layerlab.kernel install --sys-prefix
mkdir -p "$LAYERLAB_ROOT" "$out_dir"
log "image store: $LAYERLAB_ROOT"

# The notebooks write their build contexts (myimage/, hello/, ...) next to
# themselves, so they run from copies in out/notebooks/, not from the sources.
# They run in the order of their number, in one store, because later ones
# build on images that earlier ones make (debian:bookworm comes from 02).
shopt -s nullglob
notebooks=("$repo_root"/notebooks/[0-9][0-9]-*.ipynb)
if [[ ${#notebooks[@]} -eq 0 ]]; then
    echo "course: no NN-*.ipynb notebooks in $repo_root/notebooks" >&2
    exit 2
fi
cp "${notebooks[@]}" "$out_dir/"

status=0
for source in "${notebooks[@]}"; do
    notebook="$out_dir/$(basename "$source")"
    log "executing $(basename "$notebook")"
    "$python" - "$notebook" "$cell_timeout" <<'PYTHON' || status=1
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

path = Path(sys.argv[1])
timeout = int(sys.argv[2])
notebook = nbformat.read(path, as_version=4)
client = NotebookClient(notebook, timeout=timeout, kernel_name="layerlab",
                        resources={"metadata": {"path": str(path.parent)}})

started = time.monotonic()
try:
    client.execute()
except CellExecutionError as error:
    # Keep what ran, so the failing cell and its output can be read.
    nbformat.write(notebook, path)
    print(f"course: {path.name}: a cell failed:\n{error}", file=sys.stderr)
    sys.exit(1)

nbformat.write(notebook, path)
print(f"course: {path.name} ran in {time.monotonic() - started:.1f} s")
PYTHON
    if [[ $status -ne 0 ]]; then
        # The notebooks after this one need what it should have made.
        break
    fi
done

if [[ $status -ne 0 ]]; then
    log "failed; the executed notebooks, up to the failing cell, are in $out_dir"
    exit 1
fi
log "done; the executed notebooks are in $out_dir"
