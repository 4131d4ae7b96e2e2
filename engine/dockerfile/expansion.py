"""Variable expansion and word splitting, as BuildKit's Dockerfile shell lexer does them.

Supported forms: `$name`, `${name}`, `${name:-word}`, `${name-word}`,
`${name:+word}`, `${name+word}`, `${name:?message}`, `${name?message}`,
`${name#pattern}`, `${name##pattern}`, `${name%pattern}`, `${name%%pattern}`,
`${name/pattern/replacement}` and `${name//pattern/replacement}`. Single
quotes stop expansion, double quotes allow it, and the escape token (`\\` or a
backtick) keeps the next character literal. Quotes are removed here, not in
the parser, which is why `WORKDIR "/a b"` becomes `/a b`.
"""

import logging
import re
from collections.abc import Mapping

logger = logging.getLogger(__name__)

# Instructions whose arguments the builder expands with ARG and ENV values
# (the Dockerfile reference's "Environment replacement" list). ONBUILD is
# absent because its trigger is expanded when it runs in the child build.
EXPANDING_KEYWORDS = frozenset(
    {"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)

# Single-character parameters of POSIX sh: `$$` or `$?` read a variable of
# that name, which is never set, so they expand to the empty string.
_SPECIAL_PARAMETERS = frozenset("@*#?-$!0")

_REGEX_SPECIALS = frozenset("[]{}.+()|^$")


class ExpansionError(ValueError):
    """A word that the lexer cannot expand (unterminated quote, bad substitution)."""


class _Words:
    """Split the lexer output into words: expanded text splits on whitespace, quoted text does not."""

    def __init__(self):
        self.words = []
        self.buffer = []
        self.in_word = False

    def add_char(self, char):
        if char.isspace():
            if self.in_word and self.buffer:
                self._flush()
            return
        self.add_raw_char(char)

    def add_raw_char(self, char):
        self.buffer.append(char)
        self.in_word = True

    def add_string(self, text):
        for char in text:
            self.add_char(char)

    def add_raw_string(self, text):
        # An empty quoted string starts no word of its own, as in BuildKit.
        if text:
            self.buffer.append(text)
        self.in_word = True

    def finish(self):
        if self.buffer:
            self._flush()
        return self.words

    def _flush(self):
        self.words.append("".join(self.buffer))
        self.buffer = []
        self.in_word = False


class ShellLexer:
    """One pass over a word: quote removal, escapes and `$` substitutions.

    `raw_quotes` and `raw_escapes` keep quote characters and escape tokens in
    the output, and `skip_unset` leaves references to unset variables as
    they are. The parser uses those modes to read heredoc delimiters. With
    `process_quotes` False, quotes are ordinary characters, as in the body
    of a COPY heredoc.
    """

    def __init__(self, escape="\\", *, raw_quotes=False, raw_escapes=False, skip_unset=False, process_quotes=True):
        self.escape = escape
        self.process_quotes = process_quotes
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset

    def process_word(self, text, env):
        """Expand `text` as one word: quotes are removed and whitespace is kept."""
        result, _ = self._run(text, env)
        return result

    def process_words(self, text, env):
        """Expand `text` and split it into words, honouring quotes."""
        _, words = self._run(text, env)
        return words

    def _run(self, text, env):
        scan = _Scan(self, text, env)
        try:
            return scan.stop_on(None, self.raw_escapes)
        except ExpansionError as error:
            raise ExpansionError(f"failed to process {text!r}: {error}") from None


class _Scan:
    """The state of one lexer pass over a string."""

    def __init__(self, lexer, text, env):
        self.lexer = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self):
        char = self.peek()
        if char is not None:
            self.pos += 1
        return char

    def stop_on(self, stop_char, raw_escapes):
        """Process characters up to `stop_char` (or the end when it is None)."""
        saved_raw = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop_char)
        finally:
            self.raw_escapes = saved_raw

    def _stop_on(self, stop_char):
        result = []
        words = _Words()
        escape = self.lexer.escape

        while self.peek() is not None:
            char = self.peek()

            if stop_char is not None and char == stop_char:
                self.next()
                return "".join(result), words.finish()

            if char == "$":
                value = self.dollar()
                result.append(value)
                words.add_string(value)
                continue

            if char in "'\"" and self.lexer.process_quotes:
                value = self.single_quote() if char == "'" else self.double_quote()
                result.append(value)
                words.add_raw_string(value)
                continue

            self.next()
            if char == escape:
                if self.raw_escapes:
                    words.add_raw_char(char)
                    result.append(char)

                # An escape token at the end of the text is dropped.
                char = self.next()
                if char is None:
                    break
                words.add_raw_char(char)
            else:
                words.add_char(char)
            result.append(char)

        if stop_char is not None:
            raise ExpansionError(f"unexpected end of statement while looking for matching {stop_char}")
        return "".join(result), words.finish()

    def single_quote(self):
        # Nothing can be escaped between single quotes, as in sh.
        quote = self.next()
        result = [quote] if self.lexer.raw_quotes else []

        while True:
            char = self.next()
            if char is None:
                raise ExpansionError("unexpected end of statement while looking for matching single-quote")
            if char == "'":
                if self.lexer.raw_quotes:
                    result.append(char)
                return "".join(result)
            result.append(char)

    def double_quote(self):
        # The escape token escapes only `"`, `$` and itself here; before any
        # other character it stays literal, as a backslash does in sh.
        quote = self.next()
        result = [quote] if self.lexer.raw_quotes else []
        escape = self.lexer.escape

        while True:
            char = self.peek()
            if char is None:
                raise ExpansionError("unexpected end of statement while looking for matching double-quote")

            if char == '"':
                self.next()
                if self.lexer.raw_quotes:
                    result.append(char)
                return "".join(result)

            if char == "$":
                result.append(self.dollar())
                continue

            self.next()
            if char == escape:
                if self.raw_escapes:
                    result.append(char)
                following = self.peek()
                if following is None:
                    continue
                if following in ('"', "$", escape):
                    char = self.next()
            result.append(char)

    def dollar(self):
        self.next()

        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.lookup(name)
            if value is None:
                return "$" + name if self.lexer.skip_unset else ""
            return value

        self.next()
        if self.peek() is None:
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")

        name = self.name()
        operator = self.next()
        if operator is None:
            raise ExpansionError("syntax error: missing '}'")
        if operator == "}":
            return self.plain_reference(name)
        if operator == "/":
            return self.replace(name)
        if operator in (":", "+", "-", "?", "#", "%"):
            return self.modifier(name, operator)
        raise ExpansionError(f"unsupported modifier ({operator}) in substitution")

    def plain_reference(self, name):
        value = self.lookup(name)
        if value is None:
            return "${" + name + "}" if self.lexer.skip_unset else ""
        return value

    def modifier(self, name, operator):
        null_is_unset = operator == ":"
        spelled = operator
        if null_is_unset:
            operator = self.next()
            spelled += operator or ""

        if operator not in ("+", "-", "?", "#", "%"):
            raise ExpansionError(f"unsupported modifier ({spelled}) in substitution")

        # Patterns keep their escapes so that `\*` reaches the pattern
        # compiler as a literal star.
        pattern_operator = operator in ("#", "%")
        if null_is_unset and pattern_operator:
            raise ExpansionError(f"unsupported modifier ({spelled}) in substitution")

        word = self.word_until("}", pattern_operator)
        value = self.lookup(name)
        if value is None and self.lexer.skip_unset:
            return "${" + name + spelled + word + "}"

        unset = value is None or (null_is_unset and value == "")
        if operator == "-":
            return word if unset else value
        if operator == "+":
            return "" if unset else word
        if operator == "?":
            return self.required(name, value, word, null_is_unset)
        return self.trim(value or "", word, operator)

    def word_until(self, stop_char, raw_escapes):
        try:
            word, _ = self.stop_on(stop_char, raw_escapes)
        except ExpansionError:
            if self.peek() is None:
                raise ExpansionError(f"syntax error: missing '{stop_char}'") from None
            raise
        return word

    @staticmethod
    def required(name, value, word, null_is_unset):
        if value is None:
            raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
        if null_is_unset and value == "":
            raise ExpansionError(f"{name}: {word or 'is not allowed to be empty'}")
        return value

    @staticmethod
    def trim(value, word, operator):
        # `#`/`%` remove the shortest match, `##`/`%%` the longest.
        greedy = word.startswith(operator)
        if greedy:
            word = word[1:]
        if operator == "#":
            return _trim_prefix(word, value, greedy)

        # A regular expression cannot find the shortest match that ends at
        # the end of the string, so both sides are reversed.
        reversed_value = _trim_prefix(_reverse_pattern(word), value[::-1], greedy)
        return reversed_value[::-1]

    def replace(self, name):
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()

        try:
            pattern, _ = self.stop_on("/", True)
        except ExpansionError:
            if self.peek() is None:
                raise ExpansionError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self.word_until("}", True)

        value = self.lookup(name)
        if value is None and self.lexer.skip_unset:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        value = value or ""

        regex = _compile_pattern(pattern, greedy=True, anchored=False)
        count = 0 if replace_all else 1
        return regex.sub(lambda _match: replacement, value, count=count)

    def name(self):
        # A name is letters, digits and `_`; a leading digit reads a run of
        # digits ($10), and a special parameter is one character long.
        start = self.pos
        char = self.peek()
        if char is None:
            return ""

        if char.isdigit():
            while self.peek() is not None and self.peek().isdigit():
                self.next()
            return self.text[start:self.pos]

        if char in _SPECIAL_PARAMETERS:
            self.next()
            return char

        while self.peek() is not None and (self.peek().isalnum() or self.peek() == "_"):
            self.next()
        return self.text[start:self.pos]

    def lookup(self, name):
        return self.env.get(name)


def _compile_pattern(pattern, *, greedy, anchored):
    """Compile a `${name#pattern}` glob to a regex: `*`, `?` and escapes, but no brackets."""
    star = ".*" if greedy else ".*?"
    out = ["^"] if anchored else []
    index = 0

    while index < len(pattern):
        char = pattern[index]
        index += 1

        if char == "*":
            out.append(star)
        elif char == "?":
            out.append(".")
        elif char == "\\":
            following = pattern[index] if index < len(pattern) else ""
            index += 1
            # `\}` and `\/` only protect the delimiters of `${...}`.
            if following in ("}", "/"):
                out.append(re.escape(following))
            elif following in ("*", "?", "\\"):
                out.append(re.escape(following))
            else:
                raise ExpansionError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{following}'")
        elif char in _REGEX_SPECIALS:
            out.append("\\" + char)
        else:
            out.append(re.escape(char))

    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern, value, greedy):
    match = _compile_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end():] if match else value


def _reverse_pattern(pattern):
    # Reverse a pattern but keep each escape in front of the character it escapes.
    tokens = []
    index = 0
    while index < len(pattern):
        if pattern[index] == "\\" and index + 1 < len(pattern):
            tokens.append(pattern[index:index + 2])
            index += 2
        else:
            tokens.append(pattern[index])
            index += 1
    return "".join(reversed(tokens))


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand variables in `word` and remove its quotes, keeping it one word.

    Raises ExpansionError for an unterminated quote or a bad substitution.
    """
    return ShellLexer(escape).process_word(word, env)


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand variables in `text` and split it into words, honouring quotes.

    Whitespace produced by a variable splits words, whitespace inside quotes
    does not, and an empty quoted word (`""`) yields no word, as in BuildKit.
    """
    return ShellLexer(escape).process_words(text, env)
