"""The build context: the folder that COPY and ADD read from.

Sources are matched with wildcards and filtered by `.dockerignore` in the
builder's process. Their content and mode (not their mtime) make up the
COPY step's cache key, as in Docker's classic builder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import stat
from dataclasses import dataclass

from layerlab.engine.dockerfile import IgnoreMatcher
from layerlab.engine.errors import DockerfileError, InvalidArgumentError
from layerlab.engine.rootpath import resolve_in_root, split_clean

log = logging.getLogger(__name__)

HASH_BUFFER = 1 << 20
_WILDCARDS = set("*?[")


@dataclass
class Source:
    """One matched source, with paths relative to the context.

    `relpath` is the path as the instruction names it (or as a wildcard
    matched it), which gives the copied file its name. `resolved` is the
    path after following its symlinks inside the context, which is read.
    """

    relpath: str
    is_dir: bool
    resolved: str

    def name_of(self, rel: str) -> str:
        """Return a path read under `resolved` as a path under the source's own name."""
        if self.resolved == self.relpath:
            return rel
        inner = rel if self.resolved == "." else os.path.relpath(rel, self.resolved)
        return self.relpath if inner == "." else _join(self.relpath, inner)


class BuildContext:
    """A build context folder with its `.dockerignore` rules."""

    def __init__(self, root: str, *, use_dockerignore: bool = True, excludes: list[str] | None = None):
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise DockerfileError(f"build context {root!r} is not a directory: pass the folder that holds your files")
        # A staging folder for stage, heredoc or URL sources has no .dockerignore of its own.
        self.ignore = IgnoreMatcher.from_context(self.root) if use_dockerignore else IgnoreMatcher.from_text("")
        self.excludes = IgnoreMatcher.from_text("\n".join(excludes), "COPY --exclude") if excludes else None

    def with_excludes(self, excludes: list[str]) -> BuildContext:
        """Return this context with COPY --exclude patterns applied on top of .dockerignore."""
        if not excludes:
            return self
        copy = object.__new__(BuildContext)
        copy.root, copy.ignore = self.root, self.ignore
        copy.excludes = IgnoreMatcher.from_text("\n".join(excludes), "COPY --exclude")
        return copy

    def match(self, pattern: str, *, instruction: str, line: int, path: str) -> list[Source]:
        """Return the sources a COPY or ADD source pattern names, as Docker resolves them."""
        relative = _clean(pattern)
        if relative.startswith("../") or relative == "..":
            raise DockerfileError(
                f"source {pattern!r} is outside the build context: copy it into {self.root} first",
                path=path, line=line, instruction=instruction,
            )
        if any(ch in _WILDCARDS for ch in relative):
            matches = self._glob(relative)
        else:
            matches = [] if self._excluded(relative) else [relative]
        not_found = DockerfileError(
            f"source {pattern!r} not found in the build context {self.root}"
            " (or excluded by .dockerignore): check the path",
            path=path, line=line, instruction=instruction,
        )
        if not matches:
            raise not_found
        sources = []
        for rel in matches:
            resolved = self._resolve(rel, path=path, line=line, instruction=instruction)
            if resolved is None:
                raise not_found
            sources.append(Source(rel, os.path.isdir(os.path.join(self.root, resolved)), resolved))
        return sources

    def _resolve(self, rel: str, **where) -> str | None:
        """Return `rel` with its symlinks followed inside the context, as if the context were `/`.

        This is Docker's FollowSymlinkInScope: a symlink target that climbs
        above the context or is absolute stays inside it, so `../outside.txt`
        in a top-level link names `outside.txt` in the context. Returns None
        when `rel` itself does not exist or is excluded, and raises
        DockerfileError when a symlink on the way leads nowhere.
        """
        try:
            host = resolve_in_root(self.root, split_clean(rel))
        except InvalidArgumentError:
            raise DockerfileError(f"source {rel!r} is a symlink loop: fix the links in the build context",
                                  **where) from None
        resolved = os.path.relpath(host, self.root)
        if os.path.lexists(host) and not self._excluded(resolved):
            return resolved
        if resolved == os.path.normpath(rel):
            return None
        raise DockerfileError(
            f"source {rel!r} is a symlink that resolves to {resolved!r} inside the build context {self.root}, "
            "and that is not there (or is excluded by .dockerignore): symlinks are followed inside the context "
            "as if it were /, so put the target in the context", **where)

    def files_under(self, source: Source) -> list[str]:
        """List the context-relative paths a source brings, directories first, in a stable order."""
        if not source.is_dir:
            return [source.resolved]
        found = []
        base = os.path.join(self.root, source.resolved)
        for current, dirs, files in os.walk(base):
            dirs.sort()
            rel_current = os.path.relpath(current, self.root)
            kept = []
            for name in dirs:
                rel = _join(rel_current, name)
                if not self._excluded(rel) or (self.ignore.excluded(rel) and self.ignore.may_contain_included(rel)):
                    kept.append(name)
            dirs[:] = kept
            for name in sorted(files) + dirs:
                rel = _join(rel_current, name)
                if not self._excluded(rel) and not self._excluded_inside(source, rel):
                    found.append(rel)
        return sorted(found)

    def content_hash(self, sources: list[Source], per_file: dict[str, str] | None = None) -> str:
        """Hash names, types, modes and contents of everything the sources bring.

        `per_file`, when given, receives each path's own digest, so that a
        later cache miss can name the file that changed.
        """
        digest = hashlib.sha256()
        for source in sources:
            digest.update(f"source {source.relpath}\0".encode())
            # A followed symlink is hashed as the file it resolves to, under the name the source gives it.
            for rel in self.files_under(source):
                name = source.name_of(rel)
                entry = self._hash_entry(rel)
                digest.update(f"{name}\0{entry}\0".encode())
                if per_file is not None:
                    per_file[name] = entry
        return digest.hexdigest()

    def _hash_entry(self, rel: str) -> str:
        full = os.path.join(self.root, rel)
        info = os.lstat(full)
        digest = hashlib.sha256(f"{stat.S_IFMT(info.st_mode)}\0{stat.S_IMODE(info.st_mode)}\0".encode())
        if stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(full).encode())
        elif stat.S_ISREG(info.st_mode):
            with open(full, "rb") as source:
                while chunk := source.read(HASH_BUFFER):
                    digest.update(chunk)
        return f"{stat.S_IMODE(info.st_mode):o}:{digest.hexdigest()[:16]}"

    def _glob(self, pattern: str) -> list[str]:
        parts = pattern.split("/")
        candidates = [""]
        for part in parts:
            next_candidates = []
            for base in candidates:
                directory = os.path.join(self.root, base) if base else self.root
                # As Docker's walk of the context, a wildcard never descends into a symlinked directory.
                if os.path.islink(directory) or not os.path.isdir(directory):
                    continue
                for name in sorted(os.listdir(directory)):
                    if fnmatch.fnmatchcase(name, part):
                        next_candidates.append(_join(base, name))
            candidates = next_candidates
        return [rel for rel in candidates if not self._excluded(rel)]

    def _excluded_inside(self, source: Source, rel: str) -> bool:
        # COPY --exclude patterns also match relative to a directory source, as BuildKit's do.
        if self.excludes is None or source.resolved in ("", "."):
            return False
        return self.excludes.excluded(os.path.relpath(rel, source.resolved))

    def _excluded(self, rel: str) -> bool:
        if rel in ("", "."):
            return False
        return self.ignore.excluded(rel) or (self.excludes is not None and self.excludes.excluded(rel))


def _clean(pattern: str) -> str:
    cleaned = os.path.normpath(pattern.lstrip("/")) if pattern.strip("/") else "."
    return cleaned


def _join(base: str, name: str) -> str:
    return name if base in ("", ".") else f"{base}/{name}"
