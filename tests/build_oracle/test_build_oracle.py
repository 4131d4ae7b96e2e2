"""Differential build tests: each folder under cases/ built by layerlab and by Docker 20.10.

Docker builds every case twice, with BuildKit (DOCKER_BUILDKIT=1) and with
the classic builder (DOCKER_BUILDKIT=0). The image config fields, the
history's empty-layer flags after the base image and the final file tree
must match. A case's case.json lists the builders that cannot build it and
the differences that docs/compatibility.md explains.
"""

import json
import os
import tempfile
from pathlib import Path

import pytest

from layerlab.engine.build import BuildRequest, Builder
from tests.build_oracle.conftest import case_options
from tests.build_oracle.tree import docker_tree, layerlab_tree

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(path.name for path in CASES_DIR.iterdir() if (path / "Dockerfile").exists())
FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal",
          "Healthcheck", "Shell", "OnBuild")
BUILDERS = {"buildkit": "1", "classic": "0"}


DEFAULT_PATH_ENTRY = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def normalise(field, value, builder):
    """Map Docker's spellings of "unset" onto one value."""
    if field == "Env" and builder == "buildkit" and value:
        # BuildKit adds the default PATH when the base image sets none; layerlab
        # follows the classic builder (see docs/compatibility.md).
        value = [entry for entry in value if entry != DEFAULT_PATH_ENTRY]
    if value in (None, [], {}, ""):
        return None
    return value


def build_with_layerlab(engine, case_dir, options):
    request = BuildRequest(context=str(case_dir), tags=[f"oracle/{case_dir.name}"],
                           build_args=dict(options.get("build_args", {})), target=options.get("target"))
    result = Builder(engine).build(request)
    return engine.images.resolve(result.image_id)


def build_with_docker(dockerd, case_dir, builder, options):
    tag = f"oracle/{case_dir.name}:{builder}"
    # The private dockerd has no bridge network, so RUN steps get none.
    args = ["build", "-q", "--network", "none", "-t", tag]
    for key, value in options.get("build_args", {}).items():
        args += ["--build-arg", f"{key}={value}"]
    if options.get("target"):
        args += ["--target", options["target"]]
    dockerd.env["DOCKER_BUILDKIT"] = BUILDERS[builder]
    try:
        dockerd.docker(*args, str(case_dir), timeout=600)
    finally:
        dockerd.env.pop("DOCKER_BUILDKIT", None)
    inspected = json.loads(dockerd.docker("image", "inspect", tag).stdout)[0]
    return tag, inspected


@pytest.mark.parametrize("builder", sorted(BUILDERS))
@pytest.mark.parametrize("case", CASES)
def test_build_matches_docker(case, builder, oracle_store, oracle_dockerd, tmp_path):
    case_dir = CASES_DIR / case
    options = case_options(case_dir)
    if builder in options.get("skip", []):
        pytest.skip(f"{builder} cannot build this case: {options.get('why', '')}")

    image = build_with_layerlab(oracle_store, case_dir, options)
    tag, inspected = build_with_docker(oracle_dockerd, case_dir, builder, options)

    ignored = set(options.get("ignore_fields", {}).get(builder, []))
    docker_config = inspected.get("Config") or {}
    for field in FIELDS:
        if field in ignored:
            continue
        ours = normalise(field, image.settings.get(field), builder)
        theirs = normalise(field, docker_config.get(field), builder)
        assert ours == theirs, field

    if "layers" not in ignored:
        # The number of non-empty history rows: the layer count, which the empty-layer flags decide.
        docker_layers = inspected["RootFS"]["Layers"]
        assert len(image.diff_ids) == len(docker_layers), "layer count"

    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        ours = layerlab_tree(oracle_store, image, scratch)
        theirs = docker_tree(oracle_dockerd, tag, scratch)
    for path in options.get("ignore_paths", {}).get(builder, []):
        ours.pop(path, None)
        theirs.pop(path, None)
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    assert not only_ours, f"only in layerlab: {only_ours}"
    assert not only_theirs, f"only in Docker: {only_theirs}"
    differing = {path: (ours[path], theirs[path]) for path in ours if ours[path] != theirs[path]}
    assert not differing, f"entries differ (layerlab, Docker): {differing}"
