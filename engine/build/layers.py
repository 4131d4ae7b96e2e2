"""Steps that change files: RUN, COPY and WORKDIR each make a layer from an overlay upper dir.

A step gets a fresh upper dir over the stage's snapshots, writes its layer
tar from that dir (hashing it in the same pass) and then moves the dir into
place as the new layer's snapshot, so nothing is unpacked again.
"""

from __future__ import annotations

import logging
import os
import tempfile

from layerlab.engine.build import events
from layerlab.engine.containers import new_container_id
from layerlab.engine.digest import chain_ids
from layerlab.engine.errors import BuildStepError, ContainerError, DockerfileError
from layerlab.engine.image import DEFAULT_PATH, Image
from layerlab.engine.lifecycle import init_layer, write_etc_files
from layerlab.engine.rootless import remove_tree, write_layer_as_root

log = logging.getLogger(__name__)

MAX_ERROR_LINES = 10
# Linux's limit on one argv or environment string: 32 pages (MAX_ARG_STRLEN in include/uapi/linux/binfmts.h).
MAX_ARG_STRLEN = 32 * os.sysconf("SC_PAGE_SIZE")
READ_BUFFER = 1 << 16


class Scratch:
    """A step's working folder under the store's tmp/: upper, work and the /etc files."""

    def __init__(self, store_tmp: str):
        self.path = tempfile.mkdtemp(prefix="build-", dir=store_tmp)
        self.upper = os.path.join(self.path, "upper")
        self.work = os.path.join(self.path, "work")
        os.mkdir(self.upper, 0o755)
        os.mkdir(self.work, 0o700)

    def close(self) -> None:
        remove_tree(self.path)


def rootfs_for(run, image, scratch: Scratch):
    """Return the overlay spec of `image` (None for scratch) with the scratch folder's upper dir on top."""
    from layerlab.engine.runtime import RootfsSpec

    lowerdirs = [init_layer(run.engine.root)]
    if image is not None:
        lowerdirs += run.engine.snapshots.lowerdirs(image)
    return RootfsSpec(lowerdirs, scratch.upper, scratch.work)


def commit_upper(run, draft, scratch: Scratch, created_by: str, *, keep_empty: bool = True) -> Image:
    """Write the upper dir as a layer on `draft` and adopt the dir as that layer's snapshot."""
    if not keep_empty and not os.listdir(scratch.upper):
        draft.add_history(created_by, empty_layer=True)
        return run.write(draft)

    with run.engine.store.blob_writer(hashed_by_caller=True) as writer:
        info = write_layer_as_root(scratch.upper, writer, source_date_epoch=run.source_date_epoch)
        writer.commit(info.digest)
    draft.add_layer(info.digest, info.size)
    draft.add_history(created_by, empty_layer=False)
    image = run.write(draft)
    run.layer_sizes[image.id] = info.size
    run.engine.snapshots.adopt(chain_ids(image.diff_ids)[-1], scratch.upper)
    return image


def run_step(run, state, command: list[str], build_args: dict[str, str], created_by: str, *,
             mounts: list[dict] = (), network: str | None = None, where: dict | None = None) -> Image:
    """Run a RUN step's command in a build container and commit its changes."""
    from layerlab.engine import runtime
    from layerlab.engine.build.run_mounts import prepare_mounts, remove_mountpoints

    settings = state.settings()
    env = _process_env(settings.get("Env") or [f"PATH={DEFAULT_PATH}"], build_args)
    workdir = settings.get("WorkingDir") or "/"
    _check_argument_size(command, env, where or {})
    extra = prepare_mounts(run, list(mounts), workdir, where or {})
    try:
        scratch = Scratch(run.engine.store.tmp_dir)
    except BaseException:
        extra.close()
        raise
    try:
        container_id = new_container_id()
        etc_files = write_etc_files(scratch.path, container_id[:12])
        process = runtime.ProcessSpec(command, env, workdir, settings.get("User") or "")
        rootfs = rootfs_for(run, state.image, scratch)
        spec = runtime.ContainerSpec(container_id, rootfs, process, container_id[:12],
                                     network=network or run.request.network, etc_files=etc_files,
                                     mounts=extra.mounts)
        run.emit(events.ContainerStarted(run.index, container_id))
        attachment = None
        if spec.network not in ("host", "none"):
            from layerlab.engine.network import attach_build

            attachment = attach_build(run.engine, spec)  # `build --network bridge` or a network name
        try:
            status, tail = _run_container(run, spec)
        except ContainerError as error:
            if not str(error).startswith("exec: "):
                raise
            raise DockerfileError(_exec_failure(str(error), state, command), **(where or {})) from None
        finally:
            if attachment is not None:
                attachment.teardown()
        if status != 0:
            raise BuildStepError(_failure_message(where or {}, command, status), step=run.index, status=status,
                                 last_lines=tail)
        remove_mountpoints(scratch.upper, rootfs.lowerdirs, extra.targets)
        return commit_upper(run, state.draft(), scratch, created_by)
    finally:
        extra.close()
        scratch.close()


def _check_argument_size(command: list[str], env: list[str], where: dict) -> None:
    """Raise DockerfileError when execve would fail with E2BIG on this command line."""
    size = sum(len(arg.encode()) + 1 for arg in command)
    longest = max(len(arg.encode()) for arg in command)
    total = size + sum(len(entry.encode()) + 1 for entry in env)
    arg_max = os.sysconf("SC_ARG_MAX")
    if longest <= MAX_ARG_STRLEN and total <= arg_max:
        return
    raise DockerfileError(
        f"RUN command is {size} bytes, longer than the kernel's argument limit (ARG_MAX is {arg_max} bytes "
        f"for the command and its environment, and one argument may have at most {MAX_ARG_STRLEN} bytes): "
        "put the script in a file, COPY it into the image and RUN that file", **where)


def _exec_failure(message: str, state, command: list[str]) -> str:
    if state.image is None or not state.image.layers:
        return (f"{message}: the image is empty (FROM scratch with no files yet), so it has no {command[0]}: "
                "COPY the program in first, or start FROM an image that has it")
    return f"{message}: check that the image contains {command[0]} and that it is executable"


def _failure_message(where: dict, command: list[str], status: int) -> str:
    """Return the classic builder's wording, located at the RUN line, with what to do next."""
    location = f"{where.get('path', 'Dockerfile')}:{where.get('line', '?')}: RUN: "
    return (f"{location}The command '{' '.join(command)}' returned a non-zero code: {status}: "
            "fix the command (its last lines of output follow) and build again")


def _run_container(run, spec) -> tuple[int, list[str]]:
    from layerlab.engine import runtime

    read_fd, write_fd = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        # The build container dies with the build, even when the build is killed with SIGKILL.
        container = runtime.start(spec, stdin=null, stdout=write_fd, stderr=write_fd, kill_with_parent=True)
    finally:
        os.close(write_fd)
        os.close(null)
    tail: list[str] = []
    try:
        _pump_output(run, read_fd, tail)
        return container.wait(), tail
    except BaseException:
        container.kill(9)
        container.wait()
        raise
    finally:
        os.close(read_fd)


def _pump_output(run, read_fd: int, tail: list[str]) -> None:
    pending = b""
    while chunk := os.read(read_fd, READ_BUFFER):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _emit_line(run, line, tail)
    if pending:
        _emit_line(run, pending, tail)


def _emit_line(run, raw: bytes, tail: list[str]) -> None:
    # Progress meters (apt, dpkg) redraw a line with carriage returns: keep what a terminal would show last.
    segments = [segment for segment in raw.decode("utf-8", errors="replace").split("\r") if segment]
    text = segments[-1] if segments else ""
    tail.append(text)
    del tail[:-MAX_ERROR_LINES]
    run.emit(events.OutputLine(run.index, text))


def _process_env(image_env: list[str], build_args: dict[str, str]) -> list[str]:
    names = {entry.partition("=")[0] for entry in image_env}
    extra = [f"{key}={value}" for key, value in build_args.items() if key not in names]
    return list(image_env) + extra


def workdir_step(run, state, path: str, created_by: str) -> Image:
    """Set WORKDIR and create the folder, recording a layer only when it did not exist."""
    from layerlab.engine import runtime

    scratch = Scratch(run.engine.store.tmp_dir)
    try:
        runtime.run_in_rootfs(rootfs_for(run, state.image, scratch), lambda merged: _make_workdir(merged, path))
        draft = state.draft()
        draft.settings["WorkingDir"] = path
        return commit_upper(run, draft, scratch, created_by, keep_empty=False)
    finally:
        scratch.close()


def _make_workdir(merged: str, path: str) -> None:
    os.chroot(merged)
    os.makedirs(path, 0o755, exist_ok=True)
