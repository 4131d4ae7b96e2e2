"""Variable expansion and word splitting, checked against BuildKit's shell lexer rules."""

import pytest

from layerlab.engine.dockerfile import ExpansionError, expand, expand_words

ENV = {"a": "x y", "empty": "", "path": "/usr/local/bin", "name": "app"}

WORD_CASES = [
    ("$name", "app"),
    ("${name}", "app"),
    ("${name}_suffix", "app_suffix"),
    ("$name_suffix", ""),
    ("pre-$name", "pre-app"),
    ("${unset:-default}", "default"),
    ("${empty:-default}", "default"),
    ("${name:-default}", "app"),
    ("${unset-default}", "default"),
    ("${empty-default}", ""),
    ("${name:+alt}", "alt"),
    ("${empty:+alt}", ""),
    ("${unset:+alt}", ""),
    ("${empty+alt}", "alt"),
    ("${unset+alt}", ""),
    ("${unset:-$name}", "app"),
    ("${unset:-'single $name'}", "single $name"),
    ("\\$name", "$name"),
    ("\\${name}", "${name}"),
    ("'$name'", "$name"),
    ('"$name"', "app"),
    ('"a\\"b"', 'a"b'),
    ('"a\\nb"', "a\\nb"),
    ("a\\nb", "anb"),
    ("a\\ b", "a b"),
    ("'it''s'", "its"),
    ("$", "$"),
    ("a$", "a$"),
    ("$1", ""),
    ("$$", ""),
    ("${path#*/}", "usr/local/bin"),
    ("${path##*/}", "bin"),
    ("${path%/*}", "/usr/local"),
    ("${path%%/*}", ""),
    ("${path/local/share}", "/usr/share/bin"),
    ("${path//l/L}", "/usr/LocaL/bin"),
    ("${path#\\*}", "/usr/local/bin"),
    ("${name:?}", "app"),
    ("trailing\\", "trailing"),
]


@pytest.mark.parametrize(("word", "expected"), WORD_CASES)
def test_expand_word(word, expected):
    assert expand(word, ENV) == expected


WORDS_CASES = [
    ("a b  c", ["a", "b", "c"]),
    ("$a", ["x", "y"]),
    ('"$a"', ["x y"]),
    ("pre$a", ["prex", "y"]),
    ("'a b' c", ["a b", "c"]),
    ('"" x', ["x"]),
    ("80/tcp\t443", ["80/tcp", "443"]),
    ("a\\ b c", ["a b", "c"]),
]


@pytest.mark.parametrize(("text", "expected"), WORDS_CASES)
def test_expand_words_split(text, expected):
    assert expand_words(text, ENV) == expected


def test_expand_backtick_escape():
    assert expand("`$name", ENV, escape="`") == "$name"
    assert expand("c:\\dir", ENV, escape="`") == "c:\\dir"
    assert expand("\\$name", ENV, escape="`") == "\\app"


ERROR_CASES = [
    ("'unterminated", "single-quote"),
    ('"unterminated', "double-quote"),
    ("${name", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${name!x}", "unsupported modifier (!)"),
    ("${name:#x}", "unsupported modifier (:#)"),
    ("${unset:?must be set}", "unset: must be set"),
    ("${unset?}", "unset: is not allowed to be unset"),
    ("${empty:?}", "empty: is not allowed to be empty"),
    ("${path/x", "missing '/'"),
]


@pytest.mark.parametrize(("word", "message"), ERROR_CASES)
def test_expand_error(word, message):
    with pytest.raises(ExpansionError) as caught:
        expand(word, ENV)

    assert message in str(caught.value)
