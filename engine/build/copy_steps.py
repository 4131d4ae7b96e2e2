"""COPY and ADD steps: resolve the sources, hash them for the cache key, copy them in.

Sources come from the build context, another stage or image (`--from`),
heredocs or URLs (ADD). All but the context are first staged in a folder
under the store's tmp/, so one matcher, one hash and one copier serve all.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass

from layerlab.engine.build import sources as staged
from layerlab.engine.build.context import BuildContext, Source
from layerlab.engine.build.copy import CopyPlan, copy_into_root
from layerlab.engine.build.layers import Scratch, commit_upper, rootfs_for
from layerlab.engine.errors import DockerfileError, LayerlabError, NotFoundError
from layerlab.engine.image import Image


@dataclass
class PreparedCopy:
    """A COPY or ADD step ready to run: its plan, where its sources are and the cache material."""

    plan: CopyPlan
    context: BuildContext
    content_hash: str
    created_by: str
    staging: str | None = None
    files: dict[str, str] | None = None  # source path -> digest of its type, mode and content
    where: dict | None = None  # the DockerfileError location: path, line and instruction

    def close(self) -> None:
        if self.staging:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


def prepare_copy(run, state, instruction) -> PreparedCopy:
    """Resolve and hash the sources of a COPY or ADD; the caller closes the result."""
    where = {"path": run.dockerfile_path, "line": instruction.line, "instruction": instruction.keyword}
    folders: list[str] = []
    try:
        context, patterns, kind_prefix = _source_context(run, state, instruction, where, folders)
        staging = folders[0] if folders else None
        return _plan(run, state, instruction, context.with_excludes(instruction.excludes), patterns, kind_prefix,
                     staging, where)
    except BaseException:
        # Also on Ctrl-C, so that no sources-* folder stays behind in the store's tmp/.
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _source_context(run, state, instruction, where, folders: list[str]):
    """Return (context, patterns, history prefix) for the sources; staging folders are added to `folders`."""
    if instruction.source_contents:
        staging = _new_staging(run, folders)
        names = staged.write_heredocs(instruction.source_contents, staging, run.source_date_epoch)
        return BuildContext(staging, use_dockerignore=False), names, ""

    if instruction.from_stage:
        image = run.stage_image(instruction.from_stage, where)
        staging = _new_staging(run, folders)
        if image is not None:
            scratch = Scratch(run.engine.store.tmp_dir)
            try:
                staged.export_from_root(rootfs_for(run, image, scratch), list(instruction.sources), staging)
            except LayerlabError as error:
                raise DockerfileError(f"{error} (COPY --from={instruction.from_stage})", **where) from None
            finally:
                scratch.close()
        patterns = [posixpath.normpath("/" + pattern).lstrip("/") or "." for pattern in instruction.sources]
        # The source image's ID keys the cache together with the files' content.
        prefix = (image.id if image else "scratch") + " "
        return BuildContext(staging, use_dockerignore=False), patterns, prefix

    urls = [source for source in instruction.sources if staged.is_url(source)]
    if urls:
        if instruction.keyword != "ADD":
            raise DockerfileError("COPY cannot fetch a URL: use ADD, or RUN with wget or curl", **where)
        if len(urls) != len(instruction.sources):
            raise DockerfileError("mixing URL and local sources in one ADD is not supported: split the ADD",
                                  **where)
        staging = _new_staging(run, folders)
        names = [staged.download(url, staging, getattr(instruction, "checksum", None), where=where) for url in urls]
        return BuildContext(staging, use_dockerignore=False), names, ""

    if getattr(instruction, "checksum", None):
        raise DockerfileError("ADD --checksum applies only to URL sources: remove it or use a URL", **where)
    return run.context, list(instruction.sources), ""


def _new_staging(run, folders: list[str]) -> str:
    folder = tempfile.mkdtemp(prefix="sources-", dir=run.engine.store.tmp_dir)
    folders.append(folder)
    return folder


def _plan(run, state, instruction, context, patterns, prefix, staging, where) -> PreparedCopy:
    sources: list[Source] = []
    for pattern in patterns:
        sources += context.match(pattern, instruction=instruction.keyword, line=instruction.line,
                                 path=run.dockerfile_path)
    workdir = state.settings().get("WorkingDir") or "/"
    dest = posixpath.normpath(posixpath.join(workdir, instruction.dest))
    dest_is_dir = instruction.dest.endswith("/") or instruction.parents
    if len(sources) > 1 and not dest_is_dir:
        raise DockerfileError(
            f"when using {instruction.keyword} with more than one source file, the destination must be a "
            f"directory and end with a /: write {instruction.dest}/", **where)

    files: dict[str, str] = {}
    content_hash = context.content_hash(sources, files)
    options = f"chown={instruction.chown or ''} chmod={instruction.chmod or ''} parents={instruction.parents}"
    content_hash_with_options = content_hash if options == "chown= chmod= parents=False" else \
        f"{content_hash} {options}"
    plan = CopyPlan(
        sources=[(source.relpath, source.resolved, source.is_dir, context.files_under(source)) for source in sources],
        dest=dest, dest_is_dir=dest_is_dir, chown=instruction.chown or "", chmod=_chmod(instruction, where),
        parents=instruction.parents,
        extract_archives=instruction.keyword == "ADD" and staging is None,
    )
    kind = "multi" if len(sources) > 1 else ("dir" if sources[0].is_dir else "file")
    display_dest = dest + ("/" if instruction.dest.endswith("/") and dest != "/" else "")
    created_by = f"/bin/sh -c #(nop) {instruction.keyword} {kind}:{content_hash} in {display_dest} "
    return PreparedCopy(plan, context, prefix + content_hash_with_options, created_by, staging, files, where)


def _chmod(instruction, where) -> int | None:
    if not instruction.chmod:
        return None
    try:
        return int(instruction.chmod, 8)
    except ValueError:
        raise DockerfileError(f"invalid --chmod={instruction.chmod}: write an octal mode such as 755",
                              **where) from None


def copy_step(run, state, prepared: PreparedCopy) -> Image:
    """Copy the prepared sources onto the stage's image and commit the layer."""
    from layerlab.engine import runtime

    scratch = Scratch(run.engine.store.tmp_dir)
    context_fd = os.open(prepared.context.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            runtime.run_in_rootfs(rootfs_for(run, state.image, scratch),
                                  lambda merged: copy_into_root(context_fd, merged, prepared.plan))
        except NotFoundError as error:
            # --chown names a user or group that the image's /etc/passwd or /etc/group lacks.
            raise DockerfileError(str(error), **(prepared.where or {})) from None
        return commit_upper(run, state.draft(), scratch, prepared.created_by)
    finally:
        os.close(context_fd)
        scratch.close()
