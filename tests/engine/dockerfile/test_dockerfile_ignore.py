""".dockerignore matching, with moby patternmatcher semantics."""

import pytest

from layerlab.engine.dockerfile import IgnoreMatcher
from layerlab.engine.dockerfile.ignore import clean_path
from layerlab.engine.errors import DockerfileError

IGNORE_FILE = """\
# comments start at column 0
node_modules
*.log
!keep.log
/build/
**/tmp
docs/**
!docs/keep/**
./dist/../out
  spaced  
 #not-a-comment
*/cache?
"""

CASES = [
    ("node_modules", True),
    ("node_modules/pkg/index.js", True),
    ("src/node_modules", False),
    ("a.log", True),
    ("keep.log", False),
    ("sub/a.log", False),
    ("build", True),
    ("build/x/y", True),
    ("tmp", True),
    ("a/b/tmp/c", True),
    ("docs", False),
    ("docs/a.md", True),
    ("docs/keep/b.md", False),
    ("out/file", True),
    ("dist", False),
    ("spaced", True),
    ("#not-a-comment", True),
    ("src/cache1", True),
    ("src/cache", False),
    ("src/x/cache1", False),
    ("README.md", False),
    ("./node_modules", True),
    ("/build/x", True),
]


@pytest.fixture(name="matcher")
def matcher_fixture():
    return IgnoreMatcher.from_text(IGNORE_FILE)


@pytest.mark.parametrize(("path", "expected"), CASES)
def test_ignore_excluded(matcher, path, expected):
    assert matcher.excluded(path) is expected


def test_ignore_later_line_wins():
    matcher = IgnoreMatcher.from_text("!a.txt\n*.txt\n")

    assert matcher.excluded("a.txt") is True


def test_ignore_exception_reincludes_under_excluded_dir():
    matcher = IgnoreMatcher.from_text("vendor\n!vendor/keep.go\n")

    assert matcher.excluded("vendor/other.go") is True
    assert matcher.excluded("vendor/keep.go") is False
    assert matcher.may_contain_included("vendor") is True


def test_ignore_skips_dirs_without_exceptions():
    matcher = IgnoreMatcher.from_text("node_modules\ndocs/**\n!docs/keep/**\n")

    assert matcher.may_contain_included("node_modules") is False
    assert matcher.may_contain_included("docs") is True
    assert matcher.may_contain_included("docs/other") is False
    assert matcher.may_contain_included("src") is True


def test_ignore_double_star_exception_keeps_walk():
    matcher = IgnoreMatcher.from_text("*\n!**/*.py\n")

    assert matcher.may_contain_included("anything") is True
    assert matcher.excluded("pkg/mod.py") is False
    assert matcher.excluded("pkg/mod.txt") is True


def test_ignore_bare_exclamation_rejected():
    with pytest.raises(DockerfileError) as caught:
        IgnoreMatcher.from_text("a\n!\n")

    assert ".dockerignore:2" in str(caught.value)


def test_ignore_unclosed_bracket_rejected():
    with pytest.raises(DockerfileError) as caught:
        IgnoreMatcher.from_text("file[ab\n")

    assert "unclosed" in str(caught.value)


def test_ignore_character_class():
    matcher = IgnoreMatcher.from_text("file[0-9].txt\n")

    assert matcher.excluded("file3.txt") is True
    assert matcher.excluded("filex.txt") is False


def test_ignore_from_context(tmp_path):
    (tmp_path / ".dockerignore").write_text("secret\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("other\n")

    assert IgnoreMatcher.from_context(tmp_path).excluded("secret") is True
    specific = IgnoreMatcher.from_context(tmp_path, tmp_path / "Dockerfile")
    assert specific.excluded("other") is True
    assert specific.excluded("secret") is False


def test_ignore_from_context_without_file(tmp_path):
    assert IgnoreMatcher.from_context(tmp_path).excluded("anything") is False


CLEAN_CASES = [
    ("", "."),
    ("a//b", "a/b"),
    ("./a/./b/", "a/b"),
    ("a/../..", ".."),
    ("/../a", "/a"),
    ("//a", "/a"),
    ("a/b/../c", "a/c"),
]


@pytest.mark.parametrize(("path", "expected"), CLEAN_CASES)
def test_clean_path(path, expected):
    assert clean_path(path) == expected
