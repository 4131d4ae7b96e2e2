"""Instruction-level expansion: which fields expand and how quotes are removed."""

import pytest

from layerlab.engine.dockerfile import EXPANDING_KEYWORDS, KeyValue, expand_instruction, parse
from layerlab.engine.errors import DockerfileError

ENV = {"NAME": "app", "PORTS": "80 443/udp", "DIR": "/srv/app", "UID": "1000"}


def _instruction(line):
    return parse("FROM scratch\n" + line + "\n").instructions[1]


def test_env_pairs_lose_quotes():
    instruction = _instruction('ENV a="x y" b=c\\ d c=$NAME d=\'$NAME\'')

    expanded = instruction.expanded(ENV)

    assert expanded.pairs == [
        KeyValue("a", "x y"),
        KeyValue("b", "c d"),
        KeyValue("c", "app"),
        KeyValue("d", "$NAME"),
    ]
    assert instruction.pairs[0].value == '"x y"'


def test_env_legacy_value_keeps_spaces():
    expanded = _instruction('ENV greeting hello   "big world"').expanded(ENV)

    assert expanded.pairs == [KeyValue("greeting", "hello   big world")]


def test_label_keys_expand():
    expanded = _instruction('LABEL "com.example.$NAME"="v 1"').expanded(ENV)

    assert expanded.pairs == [KeyValue("com.example.app", "v 1")]


def test_arg_default_expands():
    expanded = _instruction("ARG dir=${DIR}/data other").expanded(ENV)

    assert expanded.pairs == [KeyValue("dir", "/srv/app/data"), KeyValue("other", None)]


def test_expose_splits_variable_words():
    expanded = _instruction("EXPOSE $PORTS 8080").expanded(ENV)

    assert expanded.ports == ["80", "443/udp", "8080"]


def test_expose_invalid_port_rejected():
    with pytest.raises(DockerfileError) as caught:
        _instruction("EXPOSE 80/xyz").expanded(ENV)

    assert "Dockerfile:2: EXPOSE: invalid protocol 'xyz'" in str(caught.value)


def test_copy_sources_expand_one_word_each():
    expanded = _instruction("COPY --chown=$UID:$UID $NAME/ ${DIR}/").expanded(ENV)

    assert expanded.sources == ["app/"]
    assert expanded.dest == "/srv/app/"
    assert expanded.chown == "1000:1000"


def test_copy_heredoc_body_expands_without_quote_removal():
    dockerfile = parse('FROM scratch\nCOPY <<EOF <<"RAW" /d/\nhi "$NAME" \\$x\nEOF\n$NAME\nRAW\n')

    expanded = dockerfile.instructions[1].expanded(ENV)

    assert expanded.source_contents[0].content == 'hi "app" $x\n'
    assert expanded.source_contents[1].content == "$NAME\n"


def test_workdir_user_stopsignal_expand():
    dockerfile = parse('FROM scratch\nWORKDIR "$DIR/x y"\nUSER $UID:${GID:-0}\nSTOPSIGNAL ${SIG:-SIGINT}\n')

    workdir, user, signal = (instruction.expanded(ENV) for instruction in dockerfile.instructions[1:])

    assert workdir.path == "/srv/app/x y"
    assert user.user == "1000:0"
    assert user.name == "1000"
    assert user.group == "0"
    assert signal.signal == "SIGINT"


def test_from_expands_image_and_platform():
    dockerfile = parse("ARG TAG=3.19\nFROM --platform=$BUILDPLATFORM alpine:${TAG}\n")

    expanded = expand_instruction(dockerfile.instructions[1], {"TAG": "3.19", "BUILDPLATFORM": "linux/amd64"})

    assert expanded.image == "alpine:3.19"
    assert expanded.platform == "linux/amd64"


def test_run_command_does_not_expand():
    instruction = _instruction("RUN --mount=type=cache,target=$DIR echo $NAME")

    expanded = instruction.expanded(ENV)

    assert expanded.command == ["echo $NAME"]
    assert expanded.mounts[0]["target"] == "/srv/app"


def test_cmd_returns_copy_unchanged():
    instruction = _instruction("CMD echo $NAME")

    expanded = instruction.expanded(ENV)

    assert expanded == instruction
    assert expanded is not instruction


def test_bad_substitution_names_line():
    with pytest.raises(DockerfileError) as caught:
        _instruction("WORKDIR ${}").expanded(ENV)

    assert "Dockerfile:2: WORKDIR:" in str(caught.value)
    assert "bad substitution" in str(caught.value)


def test_expanding_keywords():
    assert EXPANDING_KEYWORDS == {
        "ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
    assert "ONBUILD" not in EXPANDING_KEYWORDS
    assert "RUN" not in EXPANDING_KEYWORDS
