"""Dockerfile text to a list of nodes, one per instruction.

This is the syntax layer of BuildKit's `frontend/dockerfile/parser`: parser
directives, the escape token, line continuations, comments, builder flags
and heredocs. It does not know what an instruction means; `instructions`
turns nodes into typed instructions.
"""

import json
import logging
import re
from dataclasses import dataclass, field

from layerlab.engine.errors import DockerfileError

from .expansion import ExpansionError, ShellLexer

logger = logging.getLogger(__name__)

KNOWN_DIRECTIVES = ("syntax", "escape", "check")

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
_COMMENT = re.compile(r"^[ \t\r\n\v\f]*#")

# Go's strings.Fields-like separator that BuildKit splits the keyword and
# whitespace-delimited arguments with (no newline: lines are joined already).
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")

_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)

_BOM = "\ufeff"


@dataclass
class Heredoc:
    """A here-document attached to a RUN, COPY or ADD line.

    `content` is the body as written, each line with its newline. With
    `chomp` (`<<-`) the leading tabs are removed by `data`. `expand` is False
    when any part of the delimiter was quoted (`<<"EOF"`), which turns off
    variable expansion in the body.
    """

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int = 0

    @property
    def data(self) -> str:
        """The body as the build uses it: leading tabs removed for `<<-`."""
        if self.chomp:
            return _LEADING_TABS.sub("", self.content)
        return self.content


@dataclass
class Node:
    """One instruction as written: keyword, builder flags and argument text.

    `original` is the logical line with continuations joined, as BuildKit
    keeps it; `source` is the exact text of lines `line`..`end_line`,
    heredoc bodies included.
    """

    keyword: str
    args: str
    flags: list[str]
    line: int
    end_line: int
    original: str
    source: str
    heredocs: list[Heredoc] = field(default_factory=list)


@dataclass
class ParseResult:
    """The nodes of a Dockerfile with its parser directives."""

    nodes: list[Node]
    directives: dict[str, str]
    escape: str
    warnings: list[str] = field(default_factory=list)


class _Directives:
    """Parser directives, accepted only on the lines before anything else."""

    def __init__(self, path):
        self.path = path
        self.values = {}
        self.done = False
        self.escape = "\\"
        self.continuation = _continuation_regex(self.escape)

    def consider(self, text, line_number):
        if self.done:
            return

        match = _DIRECTIVE.match(text)
        if not match:
            self.done = True
            return

        # An unknown directive is a comment, and it ends the directive block.
        key = match.group(1).lower()
        if key not in KNOWN_DIRECTIVES:
            self.done = True
            return

        if key in self.values:
            raise DockerfileError(f"only one {key} parser directive can be used", path=self.path, line=line_number)

        value = match.group(2)
        if key == "escape":
            self._set_escape(value, line_number)
        self.values[key] = value

    def _set_escape(self, value, line_number):
        if value not in ("\\", "`"):
            raise DockerfileError(
                f"invalid escape token {value!r}: use a backslash or a backtick", path=self.path, line=line_number
            )
        self.escape = value
        self.continuation = _continuation_regex(value)


def _continuation_regex(escape):
    return re.compile(re.escape(escape) + r"[ \t]*$")


def _split_lines(text):
    # Only "\n" ends a line: splitlines() would also split on \v, \f and
    # other separators that Docker treats as ordinary characters.
    if text.startswith(_BOM):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line + "\n" for line in lines]


def _trim_newline(line):
    return line.rstrip("\r\n")


def _is_comment(line):
    return bool(_COMMENT.match(line))


def _is_blank(line):
    return not _trim_newline(line).strip(" \t\r\n\v\f")


def parse_nodes(text: str, path: str = "Dockerfile") -> ParseResult:
    """Split Dockerfile text into nodes. Raises DockerfileError on a syntax error."""
    lines = _split_lines(text)
    directives = _Directives(path)
    nodes = []
    warnings = []
    index = 0

    while index < len(lines):
        start = index
        first = _trim_newline(lines[index]).lstrip(" \t\r\n\v\f")
        directives.consider(first, index + 1)
        index += 1

        if _is_comment(first):
            continue
        logical, ended = _trim_continuation(first, directives)
        if ended and not logical:
            continue

        logical, index, empty_continuation = _join_continuations(lines, index, logical, ended, directives)
        if empty_continuation:
            warnings.append(f"line {start + 1}: empty continuation line")

        node = _node_from_line(logical, path, start + 1, index)
        if _may_have_heredocs(node):
            index = _read_heredocs(node, lines, index, path)

        node.end_line = index
        node.source = "".join(lines[start:index])
        nodes.append(node)

    for warning in warnings:
        logger.debug("%s: %s", path, warning)
    return ParseResult(nodes=nodes, directives=dict(directives.values), escape=directives.escape, warnings=warnings)


def _trim_continuation(line, directives):
    """Return the line without its continuation marker and whether the line ends there."""
    match = directives.continuation.search(line)
    if match:
        return line[: match.start()], False
    return line, True


def _join_continuations(lines, index, logical, ended, directives):
    # Comment lines and blank lines inside a continuation are dropped, as
    # BuildKit does; continuation lines keep their leading whitespace.
    empty_continuation = False
    parts = [logical]

    while not ended and index < len(lines):
        raw = _trim_newline(lines[index])
        directives.consider(raw, index + 1)
        index += 1

        if _is_comment(raw):
            continue
        if _is_blank(raw):
            empty_continuation = True
            continue

        part, ended = _trim_continuation(raw, directives)
        parts.append(part)

    return "".join(parts), index, empty_continuation


def split_command(line: str) -> tuple[str, list[str], str]:
    """Split a logical line into keyword, builder flags and the argument text."""
    pieces = _WHITESPACE.split(line.strip(), maxsplit=1)
    keyword = pieces[0]
    if len(pieces) < 2:
        return keyword, [], ""

    flags, rest = _extract_flags(pieces[1])
    return keyword, flags, rest.strip()


def _extract_flags(text):
    """Read the leading `--name[=value]` words and remove the quotes in them.

    A bare `--` ends the flags. The rest of the text is returned unchanged.
    """
    flags = []
    pos = 0

    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if not text.startswith("--", pos):
            return flags, text[pos:]

        word, end, quoted = _read_flag_word(text, pos)
        if word == "--":
            return flags, text[end:]
        if word or quoted:
            flags.append(word)
        pos = end


def _read_flag_word(text, pos):
    chars = []
    quote = None
    quoted = False

    while pos < len(text):
        char = text[pos]
        if quote is None and char.isspace():
            break

        if quote is None and char in "'\"":
            quote = char
            quoted = True
        elif quote is not None and char == quote:
            quote = None
        elif char == "\\":
            # BuildKit reads flags with a fixed backslash escape, whatever
            # the escape directive sets.
            if pos + 1 < len(text):
                pos += 1
                chars.append(text[pos])
            elif quote is not None:
                quote = None
        else:
            chars.append(char)
        pos += 1

    return "".join(chars), pos, quoted


def _node_from_line(line, path, line_number, end_line):
    keyword, flags, args = split_command(line)
    if not keyword:
        raise DockerfileError("missing instruction keyword", path=path, line=line_number)
    return Node(
        keyword=keyword.upper(),
        args=args,
        flags=flags,
        line=line_number,
        end_line=end_line,
        original=line,
        source="",
    )


def _may_have_heredocs(node):
    keyword, args = node.keyword, node.args
    if keyword == "ONBUILD" and args:
        inner_keyword, _, inner_args = split_command(args)
        keyword, args = inner_keyword.upper(), inner_args

    if keyword not in _HEREDOC_KEYWORDS or "<<" not in node.original:
        return False
    return not _is_json_form(args, node)


def _is_json_form(args, node):
    try:
        return parse_json_array(args) is not None
    except NotStringArrayError:
        return False


def _read_heredocs(node, lines, index, path):
    for heredoc in heredocs_in_line(node.original):
        terminated = False

        while index < len(lines):
            raw = lines[index]
            index += 1
            candidate = _trim_newline(raw)
            if heredoc.chomp:
                candidate = candidate.lstrip("\t")
            if candidate == heredoc.name:
                terminated = True
                break
            heredoc.content += raw

        if not terminated:
            raise DockerfileError(
                f"unterminated heredoc: no line {heredoc.name!r} ends it",
                path=path,
                line=node.line,
                instruction=node.keyword,
            )
        node.heredocs.append(heredoc)
    return index


def heredocs_in_line(line: str) -> list[Heredoc]:
    """Return the heredocs that a RUN, COPY or ADD line opens, in order, with empty bodies."""
    # BuildKit reads heredoc words with a fixed backslash escape, and a line
    # that its lexer rejects (an unterminated quote) opens no heredoc.
    lexer = ShellLexer("\\", raw_quotes=True, raw_escapes=True)
    try:
        words = lexer.process_words(line, {})
    except ExpansionError:
        return []

    heredocs = []
    for word in words:
        heredoc = parse_heredoc_word(word)
        if heredoc is not None:
            heredocs.append(heredoc)
    return heredocs


def parse_heredoc_word(word: str) -> Heredoc | None:
    """Parse `<<EOF`, `<<-EOF`, `<<"EOF"` or `3<<EOF`. Returns None for any other word."""
    match = _HEREDOC_WORD.match(word)
    if not match or not match.group(3):
        return None

    fd = int(match.group(1)) if match.group(1) else 0
    chomp = match.group(2) == "-"
    rest = match.group(3)

    # The body is expanded unless some part of the delimiter was quoted,
    # which shows as fewer quote characters once quotes are removed.
    try:
        unquoted = ShellLexer("\\", skip_unset=True).process_words(rest, {})
        raw = ShellLexer("\\", raw_quotes=True, skip_unset=True).process_words(rest, {})
    except ExpansionError:
        return None
    if len(unquoted) != 1 or len(raw) != 1:
        return None

    name = unquoted[0]
    expand = _count_quotes(name) == _count_quotes(raw[0])
    return Heredoc(name=name, content="", expand=expand, chomp=chomp, fd=fd)


def _count_quotes(text):
    return text.count("'") + text.count('"')


class _RejectConstant(ValueError):
    pass


class NotStringArrayError(ValueError):
    """A JSON array argument with an element that is not a string."""


def _reject_constant(name):
    # Go's encoding/json has no NaN or Infinity, so such text is not JSON.
    raise _RejectConstant(name)


def parse_json_array(text: str) -> list[str] | None:
    """Return the strings of a JSON-form argument, or None for shell form.

    As in Docker, text is JSON form only when it starts with `[` and parses
    as a JSON array. A JSON array with anything but strings in it raises
    NotStringArrayError, which callers turn into a DockerfileError.
    """
    stripped = text.lstrip()
    if not stripped.startswith("["):
        return None

    try:
        value = json.loads(stripped, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None

    if not all(isinstance(item, str) for item in value):
        raise NotStringArrayError("when using JSON array syntax, arrays must be made of strings only")
    return value
