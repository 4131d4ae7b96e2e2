""".dockerignore matching, with the semantics of moby's patternmatcher.

Each line is a Go filepath.Match pattern, cleaned like filepath.Clean and
with a leading `/` removed. `**` matches any number of directories. A line
starting with `!` re-includes what earlier lines excluded, and the last
matching line decides. A pattern that matches a directory excludes
everything under it. Lines whose first character is `#` are comments.
"""

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from layerlab.engine.errors import DockerfileError

logger = logging.getLogger(__name__)

_EXACT, _PREFIX, _SUFFIX, _REGEX = "exact", "prefix", "suffix", "regex"

# Characters that mean something to a regex but nothing to filepath.Match.
_REGEX_ONLY = frozenset(".+()|{}$")
# Characters that Python's re would read as set operations inside [...].
_CLASS_ESCAPES = frozenset("[&~|")

_BOM = "\ufeff"


def clean_path(path: str) -> str:
    """Clean a slash-separated path as Go's filepath.Clean does on Unix."""
    if not path:
        return "."

    rooted = path.startswith("/")
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part != "..":
            parts.append(part)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:
            parts.append(part)

    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


@dataclass
class IgnorePattern:
    """One cleaned pattern. `exclusion` is True for a `!` line."""

    text: str
    exclusion: bool
    kind: str
    regex: re.Pattern | None

    def matches(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.text
        if self.kind == _PREFIX:
            return path.startswith(self.text[:-2])
        if self.kind == _SUFFIX:
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return bool(self.regex.match(path))


def compile_pattern(text: str, exclusion: bool = False) -> IgnorePattern:
    """Compile one cleaned pattern. Raises ValueError if it is malformed."""
    _check_brackets(text)
    kind = _EXACT
    out = ["^"]
    index = 0
    in_class = False

    while index < len(text):
        start = index
        char = text[index]
        index += 1

        if in_class:
            in_class = char != "]"
            out.append("\\" + char if char in _CLASS_ESCAPES else char)
        elif char == "*" and text.startswith("*", index):
            index += 1
            # `**/` counts as `**`: it may match no directory at all.
            if text.startswith("/", index):
                index += 1
            if index == len(text):
                kind = _PREFIX if kind == _EXACT else _REGEX
                out.append(".*")
            else:
                kind = _REGEX
                out.append("(.*/)?")
            if start == 0:
                kind = _SUFFIX
        elif char == "*":
            kind = _REGEX
            out.append("[^/]*")
        elif char == "?":
            kind = _REGEX
            out.append("[^/]")
        elif char in _REGEX_ONLY:
            out.append("\\" + char)
        elif char == "\\":
            # A trailing backslash matches itself.
            following = text[index] if index < len(text) else "\\"
            index += 1
            kind = _REGEX
            out.append(re.escape(following))
        elif char == "[":
            kind = _REGEX
            in_class = True
            out.append(char)
        else:
            out.append(re.escape(char))

    regex = re.compile("".join(out) + "$", re.DOTALL) if kind == _REGEX else None
    return IgnorePattern(text=text, exclusion=exclusion, kind=kind, regex=regex)


def _check_brackets(text):
    # filepath.Match rejects an unclosed `[` and a trailing escape inside it.
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            close = text.find("]", index + 2)
            if close < 0:
                raise ValueError(f"syntax error in pattern {text!r}: unclosed '['")
            index = close
        index += 1


def read_patterns(text: str, path: str = ".dockerignore") -> list[IgnorePattern]:
    """Parse the lines of a .dockerignore file. Raises DockerfileError for a bad pattern."""
    if text.startswith(_BOM):
        text = text[1:]

    patterns = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue

        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:].strip()
            if not pattern:
                raise DockerfileError('illegal exclusion pattern: "!"', path=path, line=number)

        pattern = clean_path(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]

        try:
            patterns.append(compile_pattern(pattern, exclusion))
        except (ValueError, re.error) as error:
            raise DockerfileError(f"invalid pattern {pattern!r}: {error}", path=path, line=number) from None
    return patterns


class IgnoreMatcher:
    """Decide which paths of a build context a .dockerignore excludes."""

    def __init__(self, patterns: list[IgnorePattern]):
        self.patterns = patterns
        self.has_exclusions = any(pattern.exclusion for pattern in patterns)

    @classmethod
    def from_text(cls, text: str, path: str = ".dockerignore") -> "IgnoreMatcher":
        return cls(read_patterns(text, path))

    @classmethod
    def from_context(cls, context_dir: str | os.PathLike, dockerfile: str | os.PathLike | None = None):
        """Read the context's `.dockerignore`, or return an empty matcher when there is none.

        As BuildKit does, `<Dockerfile>.dockerignore` next to the Dockerfile
        takes precedence over the one at the context root.
        """
        candidates = []
        if dockerfile is not None:
            candidates.append(Path(str(dockerfile) + ".dockerignore"))
        candidates.append(Path(context_dir) / ".dockerignore")

        for candidate in candidates:
            if candidate.is_file():
                logger.debug("reading ignore patterns from %s", candidate)
                return cls.from_text(candidate.read_text(encoding="utf-8", errors="surrogateescape"), str(candidate))
        return cls([])

    def excluded(self, relpath: str) -> bool:
        """Return whether the context path `relpath` (slash-separated, relative) is excluded."""
        path = _normalize(relpath)
        if path == ".":
            return False

        parents = _parents(path)
        matched = False
        for pattern in self.patterns:
            # Only an inclusion can change an unmatched path and only an
            # exclusion a matched one, so the others are skipped.
            if pattern.exclusion != matched:
                continue
            if pattern.matches(path) or any(pattern.matches(parent) for parent in parents):
                matched = not pattern.exclusion
        return matched

    def may_contain_included(self, dir_relpath: str) -> bool:
        """Return whether a walker must enter this directory: False only when nothing under it can be included.

        The result errs towards True: an exclusion (`!`) pattern that could
        match the directory, one of its parents or anything below it keeps
        the directory in the walk.
        """
        path = _normalize(dir_relpath)
        if path == "." or not self.excluded(path):
            return True
        if not self.has_exclusions:
            return False

        parts = path.split("/")
        return any(_could_match_below(pattern, parts) for pattern in self.patterns if pattern.exclusion)


def _normalize(relpath):
    path = str(relpath).replace(os.sep, "/")
    path = clean_path(path)
    return path.lstrip("/") or "."


def _parents(path):
    parts = path.split("/")[:-1]
    return ["/".join(parts[: index + 1]) for index in range(len(parts))]


def _could_match_below(pattern, dir_parts):
    # Compare component by component up to the first `**`, which can stand
    # for any number of directories and so may match anything deeper.
    pattern_parts = pattern.text.split("/")
    for index, part in enumerate(dir_parts):
        if index >= len(pattern_parts) or "**" in pattern_parts[index]:
            return True
        try:
            component = compile_pattern(pattern_parts[index])
        except (ValueError, re.error):
            return True
        if not component.matches(part):
            return False
    return True
