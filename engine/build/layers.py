"""Steps that change files: RUN, COPY and WORKDIR each make a layer from an overlay upper dir.

A step gets a fresh upper dir over the stage's snapshots, writes its layer
tar from that dir (hashing it in the same pass) and then moves the dir into
place as the new layer's snapshot, so nothing is unpacked again.
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile

from layerlab.engine.build import events
from layerlab.engine.build.context import Source
from layerlab.engine.build.copy import CopyPlan, copy_into_root
from layerlab.engine.containers import new_container_id
from layerlab.engine.digest import chain_ids
from layerlab.engine.errors import BuildStepError, DockerfileError
from layerlab.engine.image import DEFAULT_PATH, Image
from layerlab.engine.lifecycle import init_layer, write_etc_files
from layerlab.engine.rootless import remove_tree, write_layer_as_root

log = logging.getLogger(__name__)

MAX_ERROR_LINES = 10
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


def _rootfs(run, state, scratch: Scratch):
    from layerlab.engine.runtime import RootfsSpec

    lowerdirs = [init_layer(run.engine.root)]
    if state.image is not None:
        lowerdirs += run.engine.snapshots.lowerdirs(state.image)
    return RootfsSpec(lowerdirs, scratch.upper, scratch.work)


def commit_upper(run, draft, scratch: Scratch, created_by: str, *, keep_empty: bool = True) -> Image:
    """Write the upper dir as a layer on `draft` and adopt the dir as that layer's snapshot."""
    if not keep_empty and not os.listdir(scratch.upper):
        draft.add_history(created_by, empty_layer=True)
        return run.write(draft)

    with run.engine.store.blob_writer(hashed_by_caller=True) as writer:
        info = write_layer_as_root(scratch.upper, writer)
        writer.commit(info.digest)
    draft.add_layer(info.digest, info.size)
    draft.add_history(created_by, empty_layer=False)
    image = run.write(draft)
    run.layer_sizes[image.id] = info.size
    run.engine.snapshots.adopt(chain_ids(image.diff_ids)[-1], scratch.upper)
    return image


def run_step(run, state, command: list[str], build_args: dict[str, str], created_by: str) -> Image:
    """Run a RUN step's command in a build container and commit its changes."""
    from layerlab.engine import runtime

    settings = state.settings()
    env = _process_env(settings.get("Env") or [f"PATH={DEFAULT_PATH}"], build_args)
    scratch = Scratch(run.engine.store.tmp_dir)
    try:
        container_id = new_container_id()
        etc_files = write_etc_files(scratch.path, container_id[:12])
        process = runtime.ProcessSpec(command, env, settings.get("WorkingDir") or "/", settings.get("User") or "")
        spec = runtime.ContainerSpec(container_id, _rootfs(run, state, scratch), process, container_id[:12],
                                     network=run.request.network, etc_files=etc_files)
        run.emit(events.ContainerStarted(run.index, container_id))
        status, tail = _run_container(run, spec)
        if status != 0:
            raise BuildStepError(
                f"The command '{' '.join(command)}' returned a non-zero code: {status}",
                step=run.index, status=status, last_lines=tail,
            )
        return commit_upper(run, state.draft(), scratch, created_by)
    finally:
        scratch.close()


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


def plan_copy(run, state, instruction) -> tuple[CopyPlan, str, str]:
    """Match COPY's sources in the context; return the plan, the content hash and the history text."""
    sources: list[Source] = []
    for pattern in instruction.sources:
        sources += run.context.match(pattern, instruction=instruction.keyword, line=instruction.line,
                                     path=run.dockerfile_path)
    workdir = state.settings().get("WorkingDir") or "/"
    dest = posixpath.normpath(posixpath.join(workdir, instruction.dest))
    dest_is_dir = instruction.dest.endswith("/")
    if len(sources) > 1 and not dest_is_dir:
        raise DockerfileError(
            f"when using {instruction.keyword} with more than one source file, the destination must be a "
            f"directory and end with a /: write {instruction.dest}/",
            path=run.dockerfile_path, line=instruction.line, instruction=instruction.keyword,
        )

    content_hash = run.context.content_hash(sources)
    chmod = int(instruction.chmod, 8) if instruction.chmod else None
    plan = CopyPlan(
        sources=[(source.relpath, source.is_dir, run.context.files_under(source)) for source in sources],
        dest=dest, dest_is_dir=dest_is_dir, chown=instruction.chown or "", chmod=chmod,
    )
    kind = "multi" if len(sources) > 1 else ("dir" if sources[0].is_dir else "file")
    display_dest = dest + ("/" if instruction.dest.endswith("/") and dest != "/" else "")
    created_by = f"/bin/sh -c #(nop) {instruction.keyword} {kind}:{content_hash} in {display_dest} "
    return plan, content_hash, created_by


def copy_step(run, state, plan: CopyPlan, created_by: str) -> Image:
    from layerlab.engine import runtime

    scratch = Scratch(run.engine.store.tmp_dir)
    context_fd = os.open(run.context.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        runtime.run_in_rootfs(_rootfs(run, state, scratch), lambda merged: copy_into_root(context_fd, merged, plan))
        return commit_upper(run, state.draft(), scratch, created_by)
    finally:
        os.close(context_fd)
        scratch.close()


def workdir_step(run, state, path: str, created_by: str) -> Image:
    """Set WORKDIR and create the folder, recording a layer only when it did not exist."""
    from layerlab.engine import runtime

    scratch = Scratch(run.engine.store.tmp_dir)
    try:
        runtime.run_in_rootfs(_rootfs(run, state, scratch), lambda merged: _make_workdir(merged, path))
        draft = state.draft()
        draft.settings["WorkingDir"] = path
        return commit_upper(run, draft, scratch, created_by, keep_empty=False)
    finally:
        scratch.close()


def _make_workdir(merged: str, path: str) -> None:
    os.chroot(merged)
    os.makedirs(path, 0o755, exist_ok=True)
