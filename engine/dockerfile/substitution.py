"""Instruction-level variable expansion: which fields of which instruction expand, and how.

The builder calls `expand_instruction` with the ARG and ENV values in scope
at that step. Each field is expanded as BuildKit's dispatcher does it: most
as one word with quotes removed, EXPOSE with word splitting, and COPY/ADD
heredoc bodies with quotes left alone.
"""

import dataclasses
import logging
from collections.abc import Mapping

from layerlab.engine.errors import DockerfileError

from .expansion import EXPANDING_KEYWORDS, ExpansionError, ShellLexer
from .flags import FlagError, parse_mount
from .instructions import (
    ArgInstruction,
    CopyInstruction,
    EnvInstruction,
    ExposeInstruction,
    FromInstruction,
    Instruction,
    KeyValue,
    LabelInstruction,
    RunInstruction,
    StopsignalInstruction,
    UserInstruction,
    VolumeInstruction,
    WorkdirInstruction,
)
from .ports import parse_port

logger = logging.getLogger(__name__)


class _Expander:
    """Expansion of one instruction's fields, turning lexer errors into DockerfileError."""

    def __init__(self, instruction, env, escape, path):
        self.instruction = instruction
        self.path = path
        self.env = env
        self.lexer = ShellLexer(escape)
        self.escape = escape

    def error(self, message):
        return DockerfileError(message, path=self.path, line=self.instruction.line, instruction=self.instruction.keyword)

    def word(self, text):
        if text is None:
            return None
        try:
            return self.lexer.process_word(text, self.env)
        except ExpansionError as error:
            raise self.error(str(error)) from None

    def words(self, text):
        try:
            return self.lexer.process_words(text, self.env)
        except ExpansionError as error:
            raise self.error(str(error)) from None

    def pairs(self, pairs):
        return [KeyValue(self.word(pair.key), self.word(pair.value)) for pair in pairs]

    def heredoc(self, heredoc):
        # An unquoted delimiter expands the body; quotes in it stay literal.
        if not heredoc.expand:
            return heredoc
        lexer = ShellLexer(self.escape, process_quotes=False)
        try:
            content = lexer.process_word(heredoc.content, self.env)
        except ExpansionError as error:
            raise self.error(str(error)) from None
        return dataclasses.replace(heredoc, content=content)


def _expand_from(expander, instruction):
    return {"image": expander.word(instruction.image), "platform": expander.word(instruction.platform)}


def _expand_run(expander, instruction):
    specs = [expander.word(spec) for spec in instruction.mount_specs]
    try:
        mounts = [parse_mount(spec) for spec in specs]
    except FlagError as error:
        raise expander.error(str(error)) from None
    return {
        "mount_specs": specs,
        "mounts": mounts,
        "network": expander.word(instruction.network),
        "security": expander.word(instruction.security),
    }


def _expand_copy(expander, instruction):
    fields = {
        "sources": [expander.word(source) for source in instruction.sources],
        "dest": expander.word(instruction.dest),
        "source_contents": [expander.heredoc(heredoc) for heredoc in instruction.source_contents],
        "from_stage": expander.word(instruction.from_stage),
        "chown": expander.word(instruction.chown),
        "chmod": expander.word(instruction.chmod),
        "excludes": [expander.word(pattern) for pattern in instruction.excludes],
    }
    if hasattr(instruction, "checksum"):
        fields["checksum"] = expander.word(instruction.checksum)
    return fields


def _expand_pairs(expander, instruction):
    return {"pairs": expander.pairs(instruction.pairs)}


def _expand_expose(expander, instruction):
    ports = []
    for port in instruction.ports:
        ports.extend(expander.words(port))

    for port in ports:
        try:
            parse_port(port)
        except ValueError as error:
            raise expander.error(str(error)) from None
    return {"ports": ports}


def _expand_volume(expander, instruction):
    paths = [expander.word(path) for path in instruction.paths]
    for path in paths:
        if not path.strip():
            raise expander.error("VOLUME specified can not be an empty string")
    return {"paths": paths}


_FIELD_EXPANDERS = (
    (FromInstruction, _expand_from),
    (RunInstruction, _expand_run),
    (CopyInstruction, _expand_copy),
    (EnvInstruction, _expand_pairs),
    (LabelInstruction, _expand_pairs),
    (ArgInstruction, _expand_pairs),
    (ExposeInstruction, _expand_expose),
    (VolumeInstruction, _expand_volume),
    (WorkdirInstruction, lambda expander, instruction: {"path": expander.word(instruction.path)}),
    (UserInstruction, lambda expander, instruction: {"user": expander.word(instruction.user)}),
    (StopsignalInstruction, lambda expander, instruction: {"signal": expander.word(instruction.signal)}),
)


def expand_instruction(
    instruction: Instruction, env: Mapping[str, str], escape: str = "\\", path: str = "Dockerfile"
) -> Instruction:
    """Return a copy of `instruction` with its expandable fields expanded with `env`.

    Instructions outside EXPANDING_KEYWORDS come back unchanged, except that
    RUN's `--mount`, `--network` and `--security` values expand, as in
    BuildKit. ENV, LABEL and ARG keys and values lose their quotes here.
    Raises DockerfileError for a bad substitution or an invalid EXPOSE port.
    """
    expander = _Expander(instruction, env, escape, path)
    for kind, expand_fields in _FIELD_EXPANDERS:
        if isinstance(instruction, kind):
            return dataclasses.replace(instruction, **expand_fields(expander, instruction))

    if instruction.keyword in EXPANDING_KEYWORDS:
        logger.warning("no field expansion defined for %s", instruction.keyword)
    return dataclasses.replace(instruction)

