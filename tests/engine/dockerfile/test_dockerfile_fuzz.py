"""Property test: any text either parses or raises DockerfileError, never another exception."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerlab.engine.dockerfile import IgnoreMatcher, parse
from layerlab.engine.errors import DockerfileError

_KEYWORDS = [
    "FROM", "RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "ENV", "LABEL", "EXPOSE", "WORKDIR",
    "USER", "ARG", "VOLUME", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD", "MAINTAINER", "from", "RUNN",
]
_PIECES = [
    " ", "\t", "\\", "`", '"', "'", "<<", "<<-", "EOF", "[", "]", ",", "=", "--", "--mount=", "--from=",
    "--chown=", "type=cache", "target=/x", "$", "${", "}", ":-", "#", "a", "b c", "\n", "\r\n", "NONE",
    "CMD", "AS", "1", "/", "*", "!", "{", "escape=", "syntax=",
]

_lines = st.builds(
    lambda keyword, pieces: keyword + " " + "".join(pieces),
    st.sampled_from(_KEYWORDS),
    st.lists(st.sampled_from(_PIECES), max_size=12),
)
_documents = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(_lines, st.sampled_from(["", "# escape=`", "#c", "EOF", "\\"])), max_size=12).map("\n".join),
)


def _expand_everything(dockerfile):
    for instruction in dockerfile.instructions:
        instruction.expanded({"a": "1", "b": "x y"}, dockerfile.escape)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
def test_parse_raises_only_dockerfile_error(text):
    try:
        dockerfile = parse(text)
        _expand_everything(dockerfile)
    except DockerfileError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab*?[]!/\\.#- \n", max_size=12), max_size=6).map("\n".join),
       st.text(alphabet="ab/.", max_size=10))
def test_ignore_raises_only_dockerfile_error(patterns, path):
    try:
        matcher = IgnoreMatcher.from_text(patterns)
    except DockerfileError:
        return
    matcher.excluded(path)
    matcher.may_contain_included(path)
