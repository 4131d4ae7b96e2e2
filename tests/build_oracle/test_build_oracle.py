"""Differential build tests: each folder under cases/ built by layerlab, Docker 20.10 and buildah 1.28.

Docker builds every case twice, with BuildKit (DOCKER_BUILDKIT=1) and with
the classic builder (DOCKER_BUILDKIT=0); buildah builds it with a layer per
instruction. The image config fields, the history's empty-layer flags after
the base image and the final file tree must match. A case's case.json lists
the builders that cannot build it ("skip"), the builders that must reject it
("rejects": builder -> part of the error), and the differences that
docs/compatibility.md explains.
"""

import json
import os
import subprocess
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
ORACLES = (*BUILDERS, "buildah")
# Labels that an oracle adds to every image it builds.
ORACLE_LABELS = {"io.buildah.version"}


DEFAULT_PATH_ENTRY = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def normalise(field, value, builder):
    """Map Docker's spellings of "unset" onto one value."""
    if field == "Env" and builder == "buildkit" and value:
        # BuildKit adds the default PATH when the base image sets none; layerlab
        # follows the classic builder (see docs/compatibility.md).
        value = [entry for entry in value if entry != DEFAULT_PATH_ENTRY]
    if field == "Env" and builder == "buildah" and value:
        value = [entry for entry in value if entry != DEFAULT_PATH_ENTRY]
    if field == "Labels" and value:
        value = {key: text for key, text in value.items() if key not in ORACLE_LABELS}
    if value in (None, [], {}, ""):
        return None
    return value


def empty_layer_flags(history, base_rows):
    """Return the empty-layer flag of every history row after the base image's rows."""
    return [bool(entry.get("empty_layer")) for entry in history[base_rows:]]


def build_args_for(options, served_url):
    args = dict(options.get("build_args", {}))
    if served_url:
        args["SERVED"] = served_url
    return args


def build_with_layerlab(engine, case_dir, options, served_url=None):
    request = BuildRequest(context=str(case_dir), tags=[f"oracle/{case_dir.name}"],
                           build_args=build_args_for(options, served_url), target=options.get("target"))
    result = Builder(engine).build(request)
    return engine.images.resolve(result.image_id)


def docker_build(dockerd, case_dir, builder, options, tag, served_url=None):
    # The private dockerd has no bridge network, so RUN steps get none.
    args = ["build", "-q", "--network", "none", "-t", tag]
    for key, value in build_args_for(options, served_url).items():
        args += ["--build-arg", f"{key}={value}"]
    if options.get("target"):
        args += ["--target", options["target"]]
    dockerd.env["DOCKER_BUILDKIT"] = BUILDERS[builder]
    try:
        return dockerd.docker(*args, str(case_dir), timeout=600, check=False)
    finally:
        dockerd.env.pop("DOCKER_BUILDKIT", None)


def docker_image(dockerd, tag, base, scratch):
    """Return the image's config, its history's empty-layer flags after `base`, and its files."""
    inspected = json.loads(dockerd.docker("image", "inspect", tag).stdout)[0]
    flags = empty_layer_flags(docker_history(dockerd, tag), len(docker_history(dockerd, base)))
    return inspected.get("Config") or {}, len(inspected["RootFS"]["Layers"]), flags, docker_tree(dockerd, tag, scratch)


def docker_history(dockerd, tag):
    """Read the history from the image config that `docker save` writes; inspect does not show it."""
    import io
    import tarfile

    saved = subprocess.run([dockerd.docker_client, "save", tag], env=dockerd.env, capture_output=True,
                           check=True, timeout=300).stdout
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))
        config = json.load(archive.extractfile(manifest[0]["Config"]))
    return config.get("history", [])


def buildah_image(buildah, tag, base, scratch):
    inspected = buildah.inspect(tag)
    base_rows = len(buildah.inspect(base).get("history", []))
    flags = empty_layer_flags(inspected.get("history", []), base_rows)
    return inspected.get("config") or {}, len(inspected["rootfs"]["diff_ids"]), flags, buildah.tree(tag, scratch)


@pytest.fixture
def oracles(request):
    """The oracle a test names, fetched only when used, so buildah tests need no dockerd."""
    return request.getfixturevalue


@pytest.mark.parametrize("builder", ORACLES)
@pytest.mark.parametrize("case", CASES)
def test_build_matches_oracle(case, builder, oracle_store, oracles, tmp_path):
    case_dir = CASES_DIR / case
    options = case_options(case_dir)
    if builder in options.get("skip", []):
        pytest.skip(f"{builder} cannot build this case: {options.get('why', '')}")
    oracle = oracles("oracle_buildah" if builder == "buildah" else "oracle_dockerd")
    served_url = None
    if options.get("serve"):
        served_url = oracles("served_folder")(case_dir / options["serve"])
    tag = f"oracle/{case}:{builder}"

    if builder == "buildah":
        result = oracle.build(case_dir, tag, build_args_for(options, served_url), options.get("target"),
                              check=False)
    else:
        result = docker_build(oracle, case_dir, builder, options, tag, served_url)
    rejection = options.get("rejects", {}).get(builder)
    if rejection is not None:
        # An oracle too old for the syntax: pin its error, so a newer one shows up as a failure here.
        assert result.returncode != 0, f"{builder} built a case it is expected to reject"
        assert rejection in result.stderr, result.stderr
        build_with_layerlab(oracle_store, case_dir, options, served_url)
        return
    assert result.returncode == 0, f"{builder} failed to build the case:\n{result.stderr}"

    image = build_with_layerlab(oracle_store, case_dir, options, served_url)
    base = layerlab_base_rows(oracle_store, options)
    ours_flags = empty_layer_flags(image.config.get("history", []), base)
    with tempfile.TemporaryDirectory(dir=tmp_path) as scratch:
        if builder == "buildah":
            docker_config, layer_count, theirs_flags, theirs_tree = buildah_image(oracle, tag, "busybox", scratch)
        else:
            docker_config, layer_count, theirs_flags, theirs_tree = docker_image(oracle, tag, "busybox", scratch)
        ours_tree = layerlab_tree(oracle_store, image, scratch)

    ignored = set(options.get("ignore_fields", {}).get(builder, []))
    for field in FIELDS:
        if field in ignored:
            continue
        ours = normalise(field, image.settings.get(field), builder)
        theirs = normalise(field, docker_config.get(field), builder)
        assert ours == theirs, field

    if "layers" not in ignored:
        assert len(image.diff_ids) == layer_count, "layer count"
    if "layers" not in ignored and "history" not in ignored:
        assert ours_flags == theirs_flags, "history empty_layer flags after the base image"
    for path in options.get("ignore_paths", {}).get(builder, []):
        ours_tree.pop(path, None)
        theirs_tree.pop(path, None)
    only_ours = sorted(set(ours_tree) - set(theirs_tree))
    only_theirs = sorted(set(theirs_tree) - set(ours_tree))
    assert not only_ours, f"only in layerlab: {only_ours}"
    assert not only_theirs, f"only in {builder}: {only_theirs}"
    differing = {path: (ours_tree[path], theirs_tree[path]) for path in ours_tree
                 if ours_tree[path] != theirs_tree[path]}
    assert not differing, f"entries differ (layerlab, {builder}): {differing}"


def layerlab_base_rows(engine, options):
    """Return the history length of the base image that every case's final stage starts from."""
    return len(engine.images.resolve(options.get("base", "busybox")).config.get("history", []))
