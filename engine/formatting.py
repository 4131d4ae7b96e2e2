"""`--format` templates: the subset of Go's text/template that Docker users write, and `table` output.

Supported: fields (`{{.State.ExitCode}}`, `{{.}}`), string and number
literals, the functions `json`, `index`, `join`, `split`, `upper`, `lower`,
`title`, `len`, `println` and `truncate` as Docker's CLI defines them, pipes
(`{{.Names | upper}}`), `{{if}}`/`{{else}}`, `{{range}}`, `{{with}}` and
`{{end}}`, and the `{{-`/`-}}` whitespace trims. A format that starts with
`table` prints a header row and aligns the tab-separated columns as
Docker's tabwriter does. Values print as Go prints them: lists as `[a b]`,
maps as `map[k:v]` with sorted keys, a missing value as `<no value>`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from layerlab.engine.errors import InvalidArgumentError

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\||[^\s|]+')
_MISSING = object()


class TemplateError(InvalidArgumentError):
    """A `--format` template that does not parse or cannot be executed."""


class TemplateParseError(TemplateError):
    """A `--format` template that does not parse, with Go's message: `template: :LINE: unclosed action`."""

    exit_code = 64  # the docker CLI's status for a template that does not parse

    def __init__(self, source: str, position: int, detail: str):
        line = source.count("\n", 0, position) + 1
        super().__init__(f"template: :{line}: {detail}")


@dataclass
class _Node:
    kind: str  # "text", "expr", "if", "range", "with"
    text: str = ""
    pipeline: list[list[str]] = field(default_factory=list)
    body: list[_Node] = field(default_factory=list)
    orelse: list[_Node] = field(default_factory=list)


class Template:
    """A parsed template; `render(data)` executes it on one value."""

    def __init__(self, source: str):
        self.source = source
        self._nodes = _parse(source)

    def render(self, data: Any) -> str:
        out: list[str] = []
        self._execute(self._nodes, data, out)
        return "".join(out)

    def _execute(self, nodes: list[_Node], dot: Any, out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                out.append(node.text)
            elif node.kind == "expr":
                out.append(go_text(self._pipeline(node.pipeline, dot)))
            elif node.kind == "if":
                branch = node.body if _truthy(self._pipeline(node.pipeline, dot)) else node.orelse
                self._execute(branch, dot, out)
            elif node.kind == "with":
                value = self._pipeline(node.pipeline, dot)
                if _truthy(value):
                    self._execute(node.body, value, out)
                else:
                    self._execute(node.orelse, dot, out)
            elif node.kind == "range":
                value = self._pipeline(node.pipeline, dot)
                items = [value[key] for key in sorted(value)] if isinstance(value, dict) else list(value or [])
                if not items:
                    self._execute(node.orelse, dot, out)
                for item in items:
                    self._execute(node.body, item, out)

    def _pipeline(self, commands: list[list[str]], dot: Any) -> Any:
        value = _MISSING
        for words in commands:
            args = [] if value is _MISSING else [value]
            value = self._command(words, dot, args)
        return value

    def _command(self, words: list[str], dot: Any, piped: list[Any]) -> Any:
        head, rest = words[0], words[1:]
        if head in FUNCTIONS:
            args = [self._operand(word, dot) for word in rest] + piped
            try:
                return FUNCTIONS[head](*args)
            except (TypeError, KeyError, IndexError, ValueError) as error:
                raise TemplateError(f"template {self.source!r}: error calling {head}: {error}") from None
        value = self._operand(head, dot)
        if callable(value):
            return value(*[self._operand(word, dot) for word in rest], *piped)
        if rest or piped:
            raise TemplateError(f"template {self.source!r}: {head} is not a function, so it takes no arguments")
        return value

    def _operand(self, word: str, dot: Any) -> Any:
        if word == ".":
            return dot
        if word.startswith("."):
            return _field(dot, word, self.source)
        if word[0] in "\"`":
            return json.loads(word) if word[0] == '"' else word[1:-1]
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word == "nil":
            return None
        if word in FUNCTIONS:
            return FUNCTIONS[word]()
        raise TemplateError(f'template {self.source!r}: function "{word}" not defined')


def _field(value: Any, path: str, source: str) -> Any:
    for name in path.strip(".").split("."):
        if isinstance(value, dict):
            if name not in value:
                if value and all(isinstance(key, str) and key[:1].isupper() for key in value):
                    # A struct in Go: an unknown field is an error, as in `docker inspect`.
                    raise TemplateError(f"template {source!r}: can't evaluate field {name}: "
                                        f"use one of {', '.join(sorted(value))}")
                return None
            value = value[name]
        elif value is None:
            return None
        else:
            raise TemplateError(f"template {source!r}: can't evaluate field {name} in a {type(value).__name__}")
    return value


def _truthy(value: Any) -> bool:
    return value is not _MISSING and bool(value)


def go_text(value: Any) -> str:
    """Format a value as Go's fmt prints it in a template."""
    if value is None or value is _MISSING:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_text(item) for item in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{go_text(value[key])}" for key in sorted(value)) + "]"
    return str(value)


def go_json(value: Any) -> str:
    """Encode as Go's json.Marshal does: compact, with <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _index(container, *keys):
    for key in keys:
        if isinstance(container, dict):
            container = container.get(key)
        else:
            container = container[key]
    return container


def _truncate(text, length):
    # Docker's `truncate` takes the string first: {{truncate .ID 5}}.
    return str(text)[: int(length)]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": go_json,
    "index": _index,
    "join": lambda items, separator: separator.join(go_text(item) for item in items or []),
    "split": lambda text, separator: str(text).split(separator),
    "upper": lambda text: str(text).upper(),
    "lower": lambda text: str(text).lower(),
    "title": lambda text: str(text).title(),
    "len": lambda value: len(value or []),
    "println": lambda *values: " ".join(go_text(value) for value in values) + "\n",
    "truncate": _truncate,
}


def _tokenize(text: str, source: str) -> list[list[str]]:
    words = _TOKEN.findall(text)
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "|":
            commands.append([])
        else:
            commands[-1].append(word)
    if any(not command for command in commands):
        raise TemplateError(f"template {source!r}: missing command in {{{{{text}}}}}")
    return commands


def _parse(source: str) -> list[_Node]:
    root: list[_Node] = []
    stack: list[tuple[_Node, list[_Node]]] = []
    current = root
    position = 0
    trim_next = False

    for match in _ACTION.finditer(source):
        text = source[position:match.start()]
        _check_no_open_action(source, position, text)
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if text:
            current.append(_Node("text", text))
        position = match.end()
        trim_next = bool(match.group(3))

        action = match.group(2).strip()
        keyword, _, rest = action.partition(" ")
        if action.startswith("/*"):
            continue
        if keyword in ("if", "range", "with"):
            if not rest.strip():
                raise TemplateParseError(source, match.start(), f"missing value for {keyword}")
            node = _Node(keyword, pipeline=_checked_pipeline(rest, source, match.start()))
            current.append(node)
            stack.append((node, current))
            current = node.body
        elif keyword == "else":
            if not stack or current is stack[-1][0].orelse:
                raise TemplateParseError(source, match.start(), "unexpected {{else}}")
            current = stack[-1][0].orelse
        elif keyword == "end":
            if not stack:
                raise TemplateParseError(source, match.start(), "unexpected {{end}}")
            _, current = stack.pop()
        elif not action:
            raise TemplateParseError(source, match.start(), "missing value for command")
        else:
            current.append(_Node("expr", pipeline=_checked_pipeline(action, source, match.start())))

    _check_no_open_action(source, position, source[position:])
    if stack:
        # Go names no action here; the {{if}}, {{range}} or {{with}} without its {{end}} is the cause.
        raise TemplateParseError(source, len(source), "unexpected EOF")
    text = source[position:]
    if trim_next:
        text = text.lstrip()
    if text:
        root.append(_Node("text", text))
    return root


def _check_no_open_action(source: str, offset: int, text: str) -> None:
    """Raise Go's parse error for a `{{` in `text` (source[offset:]) that no `}}` closes."""
    start = text.find("{{")
    if start < 0:
        return
    inside = text[start + 2:]
    brace = inside.find("}")
    if brace >= 0:
        # A lone `}` ends no action, so Go's lexer reports it as a bad character.
        raise TemplateParseError(source, offset + start, "bad character U+007D '}'")
    raise TemplateParseError(source, offset + start, "unclosed action")


def _checked_pipeline(text: str, source: str, position: int) -> list[list[str]]:
    """Tokenize an action and reject a call of a function that does not exist, as Go's parser does."""
    commands = _tokenize(text, source)
    for command in commands:
        for word in command:
            if _is_identifier(word) and word not in FUNCTIONS and word not in ("true", "false", "nil"):
                raise TemplateParseError(source, position, f'function "{word}" not defined')
    return commands


def _is_identifier(word: str) -> bool:
    return word[0].isalpha() or word[0] == "_"


def unescape(template: str) -> str:
    """Turn the two-character escapes `\\t` and `\\n` into a tab and a newline, as Docker's CLI does."""
    return template.replace("\\t", "\t").replace("\\n", "\n")


def format_rows(template: str, rows: list[dict], headers: dict[str, str]) -> str:
    """Render `--format` for a list command: one line per row, or an aligned table with a `table` prefix.

    `headers` maps each field name to its column title (`ID` -> `CONTAINER ID`).
    """
    template = unescape(template)
    is_table = template.startswith("table")
    if is_table:
        template = template[len("table"):].lstrip(" ")
    parsed = Template(template)
    lines = [parsed.render(row) for row in rows]
    if not is_table:
        return "".join(line + "\n" for line in lines)

    header = Template(template).render({name: title for name, title in headers.items()})
    return align_columns([header, *lines])


def align_columns(lines: list[str]) -> str:
    """Align tab-separated cells as Docker's tabwriter does: width at least 10, 3 spaces of padding."""
    split = [line.split("\t") for line in lines]
    columns = max((len(cells) for cells in split), default=0)
    widths = [0] * columns
    for cells in split:
        for index, cell in enumerate(cells[:-1]):
            widths[index] = max(widths[index], len(cell))
    widths = [max(width + 3, 10) for width in widths]

    out = []
    for cells in split:
        padded = [cell.ljust(widths[index]) for index, cell in enumerate(cells[:-1])]
        out.append(("".join(padded) + cells[-1]).rstrip())
    return "".join(line + "\n" for line in out)
