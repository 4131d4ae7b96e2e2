"""Typed instructions built from parser nodes, one parse function per keyword.

Argument forms follow BuildKit's `frontend/dockerfile/instructions`: what is
split at parse time (ENV/LABEL pairs, ARG names, COPY sources) keeps its
quotes and escapes, and `expand_instruction` removes them when the builder
expands variables, because that is when BuildKit removes them.
"""

import dataclasses
import difflib
import logging
import re
from dataclasses import dataclass, field
from typing import ClassVar

from layerlab.engine.errors import DockerfileError

from .flags import BOOL, STRING, STRINGS, FlagError, FlagSpec, parse_duration, parse_flags, parse_mount
from .parser import Heredoc, Node, NotStringArrayError, parse_heredoc_word, parse_json_array, split_command

logger = logging.getLogger(__name__)

KEYWORDS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
_NETWORK_MODES = ("default", "none", "host")
_SECURITY_MODES = ("sandbox", "insecure")


@dataclass
class KeyValue:
    """One `key=value` of ENV, LABEL or ARG. `value` is None for an ARG without a default."""

    key: str
    value: str | None


@dataclass(kw_only=True)
class Instruction:
    """Fields that every instruction has.

    `arguments` is the argument text after the builder flags, and `flags`
    are the raw `--name=value` words. `original` is the logical line with
    continuations joined, and `source` the exact lines, heredocs included.
    """

    keyword: ClassVar[str] = ""

    line: int
    end_line: int
    original: str
    source: str = ""
    arguments: str = ""
    flags: list[str] = field(default_factory=list)
    heredocs: list[Heredoc] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The instruction as the build cache compares it.

        It is the keyword, one space and the rest of the logical line with
        the whitespace after the keyword removed. Heredoc bodies follow, so
        editing a body changes the key.
        """
        rest = _WHITESPACE.split(self.original.strip(), maxsplit=1)
        text = self.keyword if len(rest) < 2 else f"{self.keyword} {rest[1]}"
        for heredoc in self.heredocs:
            text += "\n" + heredoc.content + heredoc.name
        return text

    def expanded(self, env, escape="\\"):
        """Return a copy with variables expanded (see `expand_instruction`)."""
        from .substitution import expand_instruction

        return expand_instruction(self, env, escape)


@dataclass(kw_only=True)
class FromInstruction(Instruction):
    keyword: ClassVar[str] = "FROM"
    image: str
    name: str | None = None
    platform: str | None = None


@dataclass(kw_only=True)
class CommandInstruction(Instruction):
    """RUN, CMD and ENTRYPOINT: exec form (`shell_form` False) or one shell string."""

    command: list[str]
    shell_form: bool


@dataclass(kw_only=True)
class RunInstruction(CommandInstruction):
    keyword: ClassVar[str] = "RUN"
    mounts: list[dict] = field(default_factory=list)
    mount_specs: list[str] = field(default_factory=list)
    network: str | None = None
    security: str | None = None


@dataclass(kw_only=True)
class CmdInstruction(CommandInstruction):
    keyword: ClassVar[str] = "CMD"


@dataclass(kw_only=True)
class EntrypointInstruction(CommandInstruction):
    keyword: ClassVar[str] = "ENTRYPOINT"


@dataclass(kw_only=True)
class ShellInstruction(Instruction):
    keyword: ClassVar[str] = "SHELL"
    shell: list[str]


@dataclass(kw_only=True)
class CopyInstruction(Instruction):
    """COPY. `source_contents` are heredoc sources, written to `dest` under their names."""

    keyword: ClassVar[str] = "COPY"
    sources: list[str]
    dest: str
    source_contents: list[Heredoc] = field(default_factory=list)
    from_stage: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    excludes: list[str] = field(default_factory=list)
    json_form: bool = False


@dataclass(kw_only=True)
class AddInstruction(CopyInstruction):
    keyword: ClassVar[str] = "ADD"
    checksum: str | None = None
    keep_git_dir: bool = False


@dataclass(kw_only=True)
class EnvInstruction(Instruction):
    """ENV. Keys and values keep their quotes until expansion."""

    keyword: ClassVar[str] = "ENV"
    pairs: list[KeyValue]


@dataclass(kw_only=True)
class LabelInstruction(Instruction):
    keyword: ClassVar[str] = "LABEL"
    pairs: list[KeyValue]


@dataclass(kw_only=True)
class ArgInstruction(Instruction):
    keyword: ClassVar[str] = "ARG"
    pairs: list[KeyValue]


@dataclass(kw_only=True)
class ExposeInstruction(Instruction):
    keyword: ClassVar[str] = "EXPOSE"
    ports: list[str]


@dataclass(kw_only=True)
class WorkdirInstruction(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(kw_only=True)
class UserInstruction(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str

    @property
    def name(self) -> str:
        """The user part of `user[:group]`."""
        return self.user.partition(":")[0]

    @property
    def group(self) -> str | None:
        """The group part of `user[:group]`, or None."""
        _, colon, group = self.user.partition(":")
        return group if colon else None


@dataclass(kw_only=True)
class VolumeInstruction(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    paths: list[str]


@dataclass(kw_only=True)
class StopsignalInstruction(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(kw_only=True)
class HealthcheckInstruction(Instruction):
    """HEALTHCHECK as Docker's HealthConfig: `test` is ["NONE"], ["CMD", ...] or ["CMD-SHELL", cmd].

    Durations are in nanoseconds; None means the flag was not given.
    """

    keyword: ClassVar[str] = "HEALTHCHECK"
    test: list[str]
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None


@dataclass(kw_only=True)
class OnbuildInstruction(Instruction):
    """ONBUILD. `expression` is the trigger text stored in the image, `trigger` its parsed form.

    NOTE: the trigger is parsed here so that its errors show at once. BuildKit
    only checks its syntax and reports other errors in the child build.
    """

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: Instruction


@dataclass(kw_only=True)
class MaintainerInstruction(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    maintainer: str


class _Request:
    """A node being turned into an instruction, with what its errors need."""

    def __init__(self, node: Node, path: str, escape: str):
        self.node = node
        self.path = path
        self.escape = escape

    def error(self, message):
        return DockerfileError(message, path=self.path, line=self.node.line, instruction=self.node.keyword)

    def flags(self, *specs):
        try:
            return parse_flags(self.node.flags, list(specs), self.node.keyword)
        except FlagError as error:
            raise self.error(str(error)) from None

    def json_array(self, text=None):
        try:
            return parse_json_array(self.node.args if text is None else text)
        except NotStringArrayError as error:
            raise self.error(str(error)) from None

    def common(self):
        node = self.node
        return {
            "line": node.line,
            "end_line": node.end_line,
            "original": node.original,
            "source": node.source,
            "arguments": node.args,
            "flags": list(node.flags),
            "heredocs": list(node.heredocs),
        }

    def whitespace_words(self):
        return _WHITESPACE.split(self.node.args) if self.node.args else []

    def exactly_one(self):
        if not self.node.args:
            raise self.error(f"{self.node.keyword} requires exactly one argument")
        return self.node.args


def _parse_from(request):
    flags = request.flags(FlagSpec("platform"))
    words = request.whitespace_words()

    name = None
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise request.error(
                f"invalid name for build stage: {words[2]!r}: a name starts with a letter "
                "and contains only letters, digits, '-', '_' and '.'"
            )
    elif len(words) != 1:
        raise request.error("FROM requires either one or three arguments (FROM image [AS name])")

    return FromInstruction(image=words[0], name=name, platform=flags.get("platform"), **request.common())


def _command_parts(request):
    # Exec form when the arguments are a JSON array of strings; otherwise
    # the whole text is one shell command.
    array = request.json_array()
    if array is not None:
        return array, False
    if not request.node.args:
        return [], True
    return [request.node.args], True


def _parse_run(request):
    flags = request.flags(FlagSpec("mount", STRINGS), FlagSpec("network"), FlagSpec("security"))
    command, shell_form = _command_parts(request)
    if not command and shell_form:
        raise request.error("RUN requires at least one argument")

    mount_specs = flags.get("mount", [])
    try:
        mounts = [parse_mount(spec) for spec in mount_specs]
    except FlagError as error:
        raise request.error(str(error)) from None

    network = flags.get("network")
    if network is not None and "$" not in network and network not in _NETWORK_MODES:
        raise request.error(f"unsupported network mode {network!r}; use one of: {', '.join(_NETWORK_MODES)}")
    security = flags.get("security")
    if security is not None and "$" not in security and security not in _SECURITY_MODES:
        raise request.error(f"unsupported security mode {security!r}; use one of: {', '.join(_SECURITY_MODES)}")

    return RunInstruction(
        command=command,
        shell_form=shell_form,
        mounts=mounts,
        mount_specs=list(mount_specs),
        network=network,
        security=security,
        **request.common(),
    )


def _parse_cmd(request):
    request.flags()
    command, shell_form = _command_parts(request)
    if not command and shell_form:
        raise request.error("CMD requires at least one argument")
    return CmdInstruction(command=command, shell_form=shell_form, **request.common())


def _parse_entrypoint(request):
    request.flags()
    command, shell_form = _command_parts(request)
    if not command and shell_form:
        raise request.error("ENTRYPOINT requires at least one argument")
    return EntrypointInstruction(command=command, shell_form=shell_form, **request.common())


def _parse_shell(request):
    request.flags()
    array = request.json_array()
    if array is None:
        if not request.node.args:
            raise request.error("SHELL requires at least one argument")
        raise request.error('SHELL requires the arguments to be in JSON form, for example SHELL ["/bin/sh", "-c"]')
    if not array:
        raise request.error("SHELL requires at least one argument")
    return ShellInstruction(shell=array, **request.common())


_COPY_FLAGS = (
    FlagSpec("from"),
    FlagSpec("chown"),
    FlagSpec("chmod"),
    FlagSpec("link", BOOL),
    FlagSpec("parents", BOOL),
    FlagSpec("exclude", STRINGS),
)
# TODO: BuildKit's newer ADD --unpack and RUN --device flags are not accepted yet.
_ADD_FLAGS = (
    FlagSpec("chown"),
    FlagSpec("chmod"),
    FlagSpec("link", BOOL),
    FlagSpec("exclude", STRINGS),
    FlagSpec("checksum"),
    FlagSpec("keep-git-dir", BOOL),
)


def _copy_fields(request, flags):
    array = request.json_array()
    words = array if array is not None else request.whitespace_words()
    keyword = request.node.keyword

    if len(words) < 2:
        raise request.error(
            f"{keyword} requires at least two arguments, but only {len(words)} was provided: "
            "the last argument is the destination"
        )

    dest = words[-1]
    if parse_heredoc_word(dest) is not None:
        raise request.error(f"{keyword} cannot accept a heredoc as the destination")

    sources, contents = _split_heredoc_sources(request, words[:-1], array is not None)
    return {
        "sources": sources,
        "dest": dest,
        "source_contents": contents,
        "chown": flags.get("chown"),
        "chmod": flags.get("chmod"),
        "link": flags.get("link", False),
        "excludes": flags.get("exclude", []),
        "json_form": array is not None,
    }


def _split_heredoc_sources(request, words, json_form):
    bodies = {heredoc.name: heredoc for heredoc in request.node.heredocs}
    sources = []
    contents = []

    for word in words:
        heredoc = None if json_form else parse_heredoc_word(word)
        if heredoc is None or heredoc.name not in bodies:
            sources.append(word)
            continue
        contents.append(bodies[heredoc.name])
    return sources, contents


def _parse_copy(request):
    flags = request.flags(*_COPY_FLAGS)
    return CopyInstruction(
        from_stage=flags.get("from"),
        parents=flags.get("parents", False),
        **_copy_fields(request, flags),
        **request.common(),
    )


def _parse_add(request):
    flags = request.flags(*_ADD_FLAGS)
    return AddInstruction(
        checksum=flags.get("checksum"),
        keep_git_dir=flags.get("keep-git-dir", False),
        **_copy_fields(request, flags),
        **request.common(),
    )


def split_words(text: str, escape: str = "\\") -> list[str]:
    """Split ENV/LABEL/ARG text into words on unquoted whitespace, keeping quotes and escapes.

    An escape token keeps itself and the character after it, except after
    a single quote, where nothing can be escaped.
    """
    words = []
    current = []
    started = False
    quote = None
    index = 0

    while index < len(text):
        char = text[index]
        index += 1

        if quote is None and char.isspace():
            if started:
                words.append("".join(current))
            current, started = [], False
            continue

        started = True
        if quote is None and char in "'\"":
            quote = char
        elif quote is not None and char == quote:
            quote = None
        elif char == escape and quote != "'":
            if index == len(text):
                # An escape token at the end of the text is dropped.
                break
            current.append(char)
            char = text[index]
            index += 1
        current.append(char)

    if started:
        words.append("".join(current))
    return words


def _name_value_pairs(request):
    """Read `name=value ...` or the legacy `name value` form of ENV and LABEL."""
    keyword = request.node.keyword
    args = request.node.args
    words = split_words(args, request.escape)
    if not words:
        raise request.error(f"{keyword} requires at least one argument")

    # The legacy form is recognised by its first word having no "=".
    if "=" not in words[0]:
        parts = _WHITESPACE.split(args, maxsplit=1)
        if len(parts) < 2:
            raise request.error(f"{keyword} must have two arguments: {keyword} name value, or {keyword} name=value")
        return [KeyValue(parts[0], parts[1])], True

    pairs = []
    for word in words:
        key, equals, value = word.partition("=")
        if not equals:
            raise request.error(f"syntax error: no '=' in {word!r}; use the form name=value")
        pairs.append(KeyValue(key, value))
    return pairs, False


def _parse_env(request):
    request.flags()
    pairs, _ = _name_value_pairs(request)
    for pair in pairs:
        if not pair.key:
            raise request.error("ENV names can not be blank")
    return EnvInstruction(pairs=pairs, **request.common())


def _parse_label(request):
    request.flags()
    pairs, legacy = _name_value_pairs(request)
    if legacy:
        logger.debug("%s:%s: LABEL in the legacy 'key value' form", request.path, request.node.line)
    for pair in pairs:
        if not pair.key:
            raise request.error("LABEL names can not be blank")
    return LabelInstruction(pairs=pairs, **request.common())


def _parse_arg(request):
    request.flags()
    words = split_words(request.node.args, request.escape)
    if not words:
        raise request.error("ARG requires at least one argument")

    pairs = []
    for word in words:
        key, equals, value = word.partition("=")
        if not key:
            raise request.error(f"ARG names can not be blank: {word!r}")
        pairs.append(KeyValue(key, value if equals else None))
    return ArgInstruction(pairs=pairs, **request.common())


def _parse_expose(request):
    request.flags()
    ports = request.whitespace_words()
    if not ports:
        raise request.error("EXPOSE requires at least one argument")
    return ExposeInstruction(ports=ports, **request.common())


def _parse_workdir(request):
    request.flags()
    return WorkdirInstruction(path=request.exactly_one(), **request.common())


def _parse_user(request):
    request.flags()
    return UserInstruction(user=request.exactly_one(), **request.common())


def _parse_stopsignal(request):
    request.flags()
    return StopsignalInstruction(signal=request.exactly_one(), **request.common())


def _parse_maintainer(request):
    request.flags()
    return MaintainerInstruction(maintainer=request.exactly_one(), **request.common())


def _parse_volume(request):
    request.flags()
    array = request.json_array()
    paths = array if array is not None else request.whitespace_words()
    if not paths:
        raise request.error("VOLUME requires at least one argument")
    for path in paths:
        if not path.strip():
            raise request.error("VOLUME specified can not be an empty string")
    return VolumeInstruction(paths=paths, **request.common())


_HEALTHCHECK_FLAGS = (
    FlagSpec("interval"),
    FlagSpec("timeout"),
    FlagSpec("start-period"),
    FlagSpec("start-interval"),
    FlagSpec("retries"),
)


def _parse_healthcheck(request):
    args = request.node.args
    if not args:
        raise request.error("HEALTHCHECK requires at least one argument")

    pieces = re.split(r"\s+", args, maxsplit=1)
    kind = pieces[0].upper()
    rest = pieces[1] if len(pieces) > 1 else ""

    # As in Docker, flags are read only for the CMD form.
    if kind == "NONE":
        if rest:
            raise request.error("HEALTHCHECK NONE takes no arguments")
        return HealthcheckInstruction(test=["NONE"], **request.common())

    flags = request.flags(*_HEALTHCHECK_FLAGS)
    if kind != "CMD":
        raise request.error(f"unknown type {pieces[0]!r} in HEALTHCHECK: use CMD or NONE")

    test = _healthcheck_test(request, rest)
    durations = {name.replace("-", "_"): _duration_flag(request, flags, name) for name in
                 ("interval", "timeout", "start-period", "start-interval")}
    return HealthcheckInstruction(test=test, retries=_retries_flag(request, flags), **durations, **request.common())


def _healthcheck_test(request, rest):
    array = request.json_array(rest)
    if array is not None:
        if not array:
            raise request.error("missing command after HEALTHCHECK CMD")
        return ["CMD", *array]
    if not rest:
        raise request.error("missing command after HEALTHCHECK CMD")
    return ["CMD-SHELL", rest]


def _duration_flag(request, flags, name):
    text = flags.get(name)
    if not text:
        return None
    try:
        value = parse_duration(text)
    except FlagError as error:
        raise request.error(f"--{name}: {error}") from None
    if value == 0:
        return 0
    if value < 1_000_000:
        raise request.error(f"--{name} {text!r} cannot be less than 1ms")
    return value


def _retries_flag(request, flags):
    text = flags.get("retries")
    if not text:
        return None
    try:
        retries = int(text, 10)
    except ValueError:
        raise request.error(f"--retries: invalid number {text!r}") from None
    if retries < 0:
        raise request.error(f"--retries cannot be negative ({retries})")
    return retries


_FORBIDDEN_TRIGGERS = ("FROM", "MAINTAINER")


def _parse_onbuild(request):
    request.flags()
    args = request.node.args
    if not args:
        raise request.error("ONBUILD requires at least one argument")

    inner_keyword, inner_flags, inner_args = split_command(args)
    trigger_keyword = inner_keyword.upper()
    if trigger_keyword == "ONBUILD":
        raise request.error("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_keyword in _FORBIDDEN_TRIGGERS:
        raise request.error(f"{trigger_keyword} isn't allowed as an ONBUILD trigger")

    # The image stores the trigger as text, its heredoc bodies appended, and
    # the child build parses it again.
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", request.node.original)
    for heredoc in request.node.heredocs:
        expression += "\n" + heredoc.content + heredoc.name

    inner = dataclasses.replace(
        request.node, keyword=trigger_keyword, flags=inner_flags, args=inner_args, original=args
    )
    trigger = parse_instruction(inner, request.path, request.escape)
    return OnbuildInstruction(expression=expression, trigger=trigger, **request.common())


_PARSERS = {
    "ADD": _parse_add,
    "ARG": _parse_arg,
    "CMD": _parse_cmd,
    "COPY": _parse_copy,
    "ENTRYPOINT": _parse_entrypoint,
    "ENV": _parse_env,
    "EXPOSE": _parse_expose,
    "FROM": _parse_from,
    "HEALTHCHECK": _parse_healthcheck,
    "LABEL": _parse_label,
    "MAINTAINER": _parse_maintainer,
    "ONBUILD": _parse_onbuild,
    "RUN": _parse_run,
    "SHELL": _parse_shell,
    "STOPSIGNAL": _parse_stopsignal,
    "USER": _parse_user,
    "VOLUME": _parse_volume,
    "WORKDIR": _parse_workdir,
}


def parse_instruction(node: Node, path: str = "Dockerfile", escape: str = "\\") -> Instruction:
    """Turn one node into its typed instruction. Raises DockerfileError."""
    parser = _PARSERS.get(node.keyword)
    if parser is None:
        raise DockerfileError(_unknown_keyword_message(node.keyword), path=path, line=node.line)
    return parser(_Request(node, path, escape))


def _unknown_keyword_message(keyword):
    message = f"unknown instruction: {keyword}"
    close = difflib.get_close_matches(keyword, KEYWORDS, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]}?)"
    return message
