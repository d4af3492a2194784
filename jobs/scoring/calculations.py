"""The calculations a solution states (`16 - 3 - 4 = 9`, `<<9*2=18>>`, `20% of 50 is 10`), re-evaluated.

Model text is data, never code: a tokenizer turns it into numbers, operators, parentheses,
`%` and equals signs, and a recursive-descent parser over + - * / (also written × ÷ x ·),
parentheses and postfix `%` computes with exact fractions. Nothing here calls eval, exec or
compile, and the grammar has no names, calls, attributes or powers, so `__import__('os')`
is just a word that ends a calculation.

What counts as a stated calculation: in a stretch of text made of numbers, operators,
parentheses and equals signs (`=`, or the words `is` / `equals`), each equals sign with an
expression of at least one operator on its left and a number on its right. A unit word
after a number (`9 eggs * $2`) is skipped; any other word, a `<<`, a full stop ends the
stretch. A chain `a + b = c * d = e` states two calculations, `a + b = c` and `c * d = e`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise

MAX_DEPTH = 16  # nested parentheses a calculation may have
MAX_TOKENS = 64  # an expression longer than this is not a calculation anyone states
MAX_DIGITS = 30  # a longer number is noise (or a loop), not a quantity
MAX_UNIT_WORDS = 3  # "9 duck eggs * 2", "60 miles per week * 3": words skipped after a number

# LaTeX and Markdown that small models wrap around arithmetic, rewritten to plain symbols first.
_LATEX = (
    (re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}"), r"(\1)/(\2)"),
    (re.compile(r"\\(?:text|mathrm|boxed)\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"\\(?:times|cdot|ast)(?![A-Za-z])"), " * "),
    (re.compile(r"\\div(?![A-Za-z])"), " / "),
    (re.compile(r"\\(?:approx|eq)(?![A-Za-z])"), " = "),
    (re.compile(r"\\left|\\right|\\[()\[\],;!]|\\quad|\*\*"), " "),
    (re.compile(r"\\([$%])"), r"\1"),
)
_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅖": "2/5", "⅗": "3/5", "⅘": "4/5",
           "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8", "⅞": "7/8"}
_VULGAR_CHAR = re.compile("[" + "".join(_VULGAR) + "]")
# "Number of times = 288 / 7\nNumber of times = 4": one calculation over two lines that name the same thing.
_NAMED_LINE = re.compile(r"(?P<label>[ \t]*[A-Za-z][^=<>!\n]{0,80})=(?P<value>[^=\n]*)")
_ARITHMETIC = re.compile(r"[-+*/\u00d7\u00f7]")
_TOKEN = re.compile(
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"|(?P<op>[-+*/\u00d7\u00f7\u00b7\u22c5\u2217\u2212\u2013])"
    r"|(?P<lp>\()|(?P<rp>\))|(?P<pct>%)|(?P<eq>[=\u2248])"
    r"|(?P<word>[A-Za-z]+)"
    r"|(?P<space>[^\S\n]+|[$\u20ac\u00a3]|(?<=\d)(?:\.\.\.|\u2026))"  # 66.666...% is 66.666%
    r"|(?P<other>.)",
    re.DOTALL,
)
_OPERATORS = {"\u00d7": "*", "\u00b7": "*", "\u22c5": "*", "\u2217": "*", "\u00f7": "/", "\u2212": "-", "\u2013": "-"}
_EQUALS_WORDS = frozenset({"is", "equals", "equal"})
_TIMES_WORDS = frozenset({"x", "times"})  # only between two quantities: "3 x 4", not "x = 3"
_VALUE_END = frozenset({"num", "%", ")", "unit"})  # what a quantity ends with
_OPERAND_AHEAD = re.compile(r"[^\S\n]*[\d$(.]")
_UNIT_AHEAD = re.compile(r"[A-Za-z]{2,}")  # "/minute" (one letter, "/x", is a division by a variable)
_VARIABLE = re.compile(r"[A-Za-z](?![A-Za-z])")  # one letter glued to a number: 5A, 3x


class CalculationError(ValueError):
    """The text is not an arithmetic expression this parser reads (or divides by zero)."""


@dataclass(frozen=True)
class Token:
    kind: str  # num | op | ( | ) | % | = | unit | break
    text: str  # canonical: an operator as one of + - * /
    start: int
    end: int
    value: Fraction = Fraction(0)


@dataclass(frozen=True)
class Calculation:
    """A calculation the text states: `expression = stated`, and what the expression really gives."""

    expression: str  # as written (unit words included), whitespace collapsed: "9 eggs * $2"
    stated: str  # the result as written: "18", "$18", "25%"
    stated_result: Fraction
    true_result: Fraction
    correct: bool  # stated within rounding of the true result (see `agrees`)

    def __str__(self) -> str:
        if self.correct:
            return f"{self.expression} = {self.stated}"
        truth = self.true_result
        shown = f"{format_number(truth * 100)}%" if self.stated.endswith("%") else format_number(truth)
        return f"{self.expression} = {self.stated} (is {shown})"


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; CalculationError for anything else.

    The same tokenizer and parser as `stated_calculations`: numbers (commas, `$`, decimals),
    + - * / × ÷ x, parentheses, postfix %. Never evaluates text as code.
    """
    tokens = [t for t in tokenize(expression) if t.kind != "unit"]
    if any(t.kind in ("break", "=") for t in tokens):
        bad = next(t for t in tokens if t.kind in ("break", "="))
        raise CalculationError(f"{bad.text!r} is not arithmetic")
    return _Parser(tokens).parse()


def stated_calculations(text: str) -> list[Calculation]:
    """Every calculation `text` states, in order, each once (see the module doc for what counts)."""
    normal = normalize(text)
    found: dict[tuple[str, str], Calculation] = {}
    for run in _runs(tokenize(normal)):
        for calculation in _calculations_in_run(run, normal):
            found.setdefault((calculation.expression.replace(" ", ""), calculation.stated), calculation)
    return list(found.values())


def normalize(text: str) -> str:
    """Text with LaTeX, Markdown bold and ½-style fractions rewritten as the plain symbols the tokenizer reads,
    and a result restated on the next line joined to its calculation ("Cost = 42 * 7\nCost = 288")."""
    for pattern, replacement in _LATEX:
        text = pattern.sub(replacement, text)
    text = _VULGAR_CHAR.sub(lambda m: " " + _VULGAR[m.group()], text)  # 1½ is 1 1/2
    return _join_restated(text)


def _join_restated(text: str) -> str:
    """Each line `label = result` after a line `label = calculation` becomes `label = calculation = result`."""
    lines = text.split("\n")
    joined = list(lines)
    for index in range(1, len(lines)):
        before, line = _NAMED_LINE.fullmatch(lines[index - 1]), _NAMED_LINE.fullmatch(lines[index])
        if before and line and before["label"] == line["label"] and _ARITHMETIC.search(before["value"]):
            joined[index] = f"{line['label']}= {before['value'].strip()} = {line['value'].strip()}"
    return "\n".join(joined)


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`; anything that cannot belong to a calculation becomes a `break` token."""
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "space":
            continue
        token = _token(kind or "other", match, tokens, text)
        if token.kind == "unit" and _unit_words(tokens) >= MAX_UNIT_WORDS:
            token = Token("break", token.text, token.start, token.end)
        tokens.append(token)
    return tokens


def agrees(true: Fraction, stated: Fraction, decimals: int, *, slack: Fraction = Fraction(1)) -> bool:
    """True when `stated`, written with `decimals` decimals, is `true` rounded or cut to that many.

    The tolerance is `slack` units in the last written digit: 1 accepts rounding and truncation
    (10/3 = 3.33, 2/3 = 0.66, 7/2 = 3), 1/2 accepts rounding only.
    """
    if true == stated:
        return True
    unit = Fraction(1, 10**decimals)
    difference = abs(true - stated)
    return difference < unit * slack or (slack < 1 and difference == unit * slack)


def format_number(value: Fraction) -> str:
    """A fraction as people write it: `9`, `3.333333`, `-0.5`."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def decimals_of(number_text: str) -> int:
    """Digits written after the decimal point of a number: `3.50` -> 2, `$18` -> 0."""
    digits = re.sub(r"[^\d.]", "", number_text)
    return len(digits.split(".", 1)[1]) if "." in digits else 0


# ----------------------------------------------------------------------------- tokens


def _token(kind: str, match: re.Match[str], before: Sequence[Token], text: str) -> Token:
    raw, start, end = match.group(), match.start(), match.end()
    if kind == "num":
        return _number(raw, start, end)
    if kind == "op":
        if raw == "/" and before and before[-1].kind in ("num", "unit") and _UNIT_AHEAD.match(text, end):
            return Token("unit", raw, start, end)  # "hours/dog", "$20/hour": part of a unit, not a division
        return Token("op", _OPERATORS.get(raw, raw), start, end)
    if kind in ("lp", "rp", "pct", "eq"):
        return Token({"lp": "(", "rp": ")", "pct": "%", "eq": "="}[kind], raw, start, end)
    if kind == "word":
        return _word(raw, start, end, before, text)
    return Token("break", raw, start, end)


def _number(raw: str, start: int, end: int) -> Token:
    if len(raw) > MAX_DIGITS or (re.fullmatch(r"0\d+", raw) and len(raw) != 3):  # "0900" is a time; "000" counts
        return Token("break", raw, start, end)
    return Token("num", raw, start, end, Fraction(raw.replace(",", "")))


def _word(raw: str, start: int, end: int, before: Sequence[Token], text: str) -> Token:
    """A word is `=` (is, equals), `*` (x, times, and `of` after a percent or fraction), `%` (percent),
    a unit skipped after a quantity, or else the end of a calculation."""
    word = raw.lower()
    previous = before[-1].kind if before else "break"
    if word in _EQUALS_WORDS:
        return Token("=", raw, start, end)
    if previous in _VALUE_END and word in _TIMES_WORDS and _OPERAND_AHEAD.match(text, end):
        return Token("op", "*", start, end)
    if word == "of" and (previous == "%" or _after_fraction(before)):
        return Token("op", "*", start, end)
    if word == "percent" and previous == "num":
        return Token("%", raw, start, end)
    if previous in _VALUE_END and (len(raw) > 1 or _article(word, start, text)):
        return Token("unit", raw, start, end)  # but one letter is a variable (3x + 4 = 28)
    return Token("break", raw, start, end)


def _article(word: str, start: int, text: str) -> bool:
    # "3 days a week": `a` after a space is part of a unit; glued to a number ("3a") it is a variable.
    return word == "a" and text[start - 1 : start].isspace()


def _after_fraction(before: Sequence[Token]) -> bool:
    # "1/2 of 10": the tokens so far end in number / number.
    return len(before) >= 3 and [t.kind for t in before[-3:]] == ["num", "op", "num"] and before[-2].text == "/"


def _unit_words(tokens: Sequence[Token]) -> int:
    count = 0
    for token in reversed(tokens):
        if token.kind != "unit":
            break
        count += 1
    return count


def _runs(tokens: Sequence[Token]) -> Iterator[list[Token]]:
    """Stretches of tokens between breaks."""
    run: list[Token] = []
    for token in tokens:
        if token.kind == "break":
            if run:
                yield run
            run = []
        else:
            run.append(token)
    if run:
        yield run


# ----------------------------------------------------------------------------- calculations


@dataclass(frozen=True)
class _Stated:
    """The result a right-hand side states: its readings (value, decimals written) and where it ends."""

    readings: list[tuple[Fraction, int]]
    value: Fraction  # the reading shown: the longest form (3 000, 1 1/2, 3/25) when there is one
    end: int


def _calculations_in_run(run: list[Token], text: str) -> Iterator[Calculation]:
    segments: list[list[Token]] = [[]]
    signs: list[Token] = []
    for token in run:
        if token.kind == "=":
            segments.append([])
            signs.append(token)
        else:
            segments[-1].append(token)
    for (left, right), sign in zip(pairwise(segments), signs, strict=True):
        calculation = _checked(left, right, text, spelled=sign.text.isalpha())
        if calculation is not None:
            yield calculation


def _checked(left: list[Token], right: list[Token], text: str, *, spelled: bool) -> Calculation | None:
    if not _has_operator(left):
        return None  # the common case, "the answer is 5": no parsing needed
    found = _expression(left, text, spelled=spelled)
    stated = _stated(right, text)
    if found is None or stated is None:
        return None
    tokens, values = found
    divides = any(t.text == "/" for t in tokens)
    correct = _right_side_agrees(values, right) or any(
        _agrees_as_written(value, reading, decimals, divides=divides)
        for value in values
        for reading, decimals in stated.readings
    )
    return Calculation(
        expression=_written(text, tokens[0].start, tokens[-1].end),
        stated=_written(text, right[0].start, stated.end),
        stated_result=stated.value,
        true_result=values[0],
        correct=correct,
    )


def _agrees_as_written(true: Fraction, stated: Fraction, decimals: int, *, divides: bool) -> bool:
    # A whole number for a fraction is a count rounded down or up only after a division (100 stickers / 3 = 33);
    # 1.6 * 4 = 6 is wrong.
    if decimals == 0 and true.denominator != 1 and not divides:
        return False
    return agrees(true, stated, decimals)


def _written(text: str, start: int, end: int) -> str:
    start -= text[start - 1 : start] == "$" if start else 0  # "$18" as written
    return " ".join(text[start:end].split())


def _expression(tokens: list[Token], text: str, *, spelled: bool) -> tuple[list[Token], list[Fraction]] | None:
    """The left-hand side: `tokens`, or their longest tail after a parenthesis or a word, parsed;
    None when it is not a calculation.

    A tail, because a stretch may start with what is not part of the calculation ("2) 3 + 4",
    "24 degrees in 24/4"); never after a number or an operator, where the calculation goes on
    to the left in what the parser does not read ("1 1/2", "X*2 - 40"). A fraction alone is a
    division before `=` (16/2=8), a quantity before a unit or a spelled `is` ("1/2 a cup = 4 ounces").
    """
    tokens = tokens[-MAX_TOKENS:]
    quantity = spelled or bool(tokens and tokens[-1].kind == "unit")  # "3/4 full is", "1/2 a cup ="
    while tokens and tokens[-1].kind == "unit":  # "3 + 4 apples = 7"
        tokens = tokens[:-1]
    for start in range(len(tokens)):
        tail = tokens[start:]
        if tail[0].kind == "unit" or (start > 0 and tokens[start - 1].kind not in ("(", ")", "unit")):
            continue
        values = _values(tail)
        if values is not None:
            calculation = _has_operator(tail) and not (quantity and _number_at(tail, 0)[0] == len(tail))
            return (tail, values) if calculation and _starts_cleanly(tail, text) else None
    return None


def _starts_cleanly(tokens: list[Token], text: str) -> bool:
    """False when the expression is glued to text before it: `6:00+18`, `2L + 8`, `X + 4 = 28`."""
    before = text[max(0, tokens[0].start - 80) : tokens[0].start]
    if before[-1:].isalnum() or before[-1:] in (":", ".", ",", "/", "^", "_", "'"):
        return False
    if tokens[0].kind != "op":
        return True
    # An expression that starts with an operator continues what stands before it (a variable).
    previous = before.rstrip(" \t$")[-1:]
    return not (previous.isalnum() or previous in (")", "]", "}"))


def _values(tokens: list[Token]) -> list[Fraction] | None:
    """The values the expression may mean, the likeliest first; None when it does not parse.

    Readings: numbers written tight bind first (`60 / 3/4` is 80, `1 1/2 * 60` is 90, `17 000 / 5`
    is 3400), then plain precedence; with a percent also the calculator's (50 + 10% = 55), and a
    trailing `* 100%` that converts to percent (12 / 18 * 100% = 66.7).
    """
    values: list[Fraction] = []
    percent = any(t.kind == "%" for t in tokens)
    for reading in (_readable(tokens, grouped=True), _readable(tokens, grouped=False)):
        for calculator in (False, True) if percent else (False,):
            try:
                values.append(_Parser(reading, calculator_percent=calculator).parse())
            except CalculationError:
                continue
    if values and [t.text for t in tokens[-3:]] == ["*", "100", "%"]:
        values += [v * 100 for v in values]
    return list(dict.fromkeys(values)) or None


def _readable(tokens: list[Token], *, grouped: bool) -> list[Token]:
    """The tokens the parser reads: units dropped, numbers written as one (17 000, 3/4, 1 1/2)
    in parentheses when `grouped`. A unit between two values stays a break: "20 so 20/4" and
    "10 cents (.10)" are two things side by side, not a product."""
    out: list[Token] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        length = _number_at(tokens, index)[0] if grouped else 1
        if token.kind == "unit":
            following = tokens[index + 1].kind if index + 1 < len(tokens) else ""
            if out and out[-1].kind in _VALUE_END and following in ("num", "("):
                out.append(Token("break", token.text, token.start, token.end))
        elif length > 1:
            out += [_pseudo("(", token), *_spelled(tokens[index : index + length]), _pseudo(")", token)]
        else:
            out.append(token)
        index += max(length, 1)
    return out


def _number_at(tokens: Sequence[Token], index: int) -> tuple[int, Fraction]:
    """(tokens, value) of the number written at `index`: 17 000, 1 1/2, 1 and 1/2, 3/4 take more than one."""
    first = tokens[index]
    if first.kind != "num":
        return 0, Fraction(0)
    groups = _thousands(tokens, index)
    if groups > 1:
        return groups, Fraction("".join(t.text for t in tokens[index : index + groups]))
    for gap in (1, 2):  # "1 1/2", "1 and 1/2"
        if gap == 2 and not (index + 1 < len(tokens) and tokens[index + 1].text == "and"):
            continue
        if _tight_fraction(tokens, index + gap) and _mixed(first, tokens[index + gap], tokens[index + gap + 2]):
            return gap + 3, first.value + tokens[index + gap].value / tokens[index + gap + 2].value
    if _tight_fraction(tokens, index) and tokens[index + 2].value != 0:
        return 3, first.value / tokens[index + 2].value
    return 1, first.value


def _spelled(tokens: list[Token]) -> list[Token]:
    # The tokens of a number written as one, as the parser reads them.
    first = tokens[0]
    if all(t.kind == "num" for t in tokens):  # 17 000
        value = Fraction("".join(t.text for t in tokens))
        return [Token("num", " ".join(t.text for t in tokens), first.start, tokens[-1].end, value)]
    if len(tokens) > 3:  # 1 1/2 and 1 and 1/2 are 1 + 1/2
        return [first, _pseudo("+", first), *tokens[-3:]]
    return tokens


def _thousands(tokens: Sequence[Token], index: int) -> int:
    """Tokens of a number written with spaces between its thousands (`3 000`, `1 500 000`); 1 when not."""
    first, length = tokens[index], 1
    if not (first.text.isdigit() and len(first.text) <= 3):
        return 1
    while index + length < len(tokens):
        before, group = tokens[index + length - 1], tokens[index + length]
        three_digits = group.kind == "num" and group.text.isdigit() and len(group.text) == 3
        if not (three_digits and group.start - before.end == 1):
            break
        length += 1
    return length


def _tight_fraction(tokens: Sequence[Token], index: int) -> bool:
    if index + 3 > len(tokens):
        return False
    top, bar, bottom = tokens[index : index + 3]
    numbers = top.kind == bottom.kind == "num" and bar.text == "/"
    return numbers and top.end == bar.start and bar.end == bottom.start


def _mixed(whole: Token, top: Token, bottom: Token) -> bool:
    # "1 1/2": a whole number, a space, then a proper fraction.
    return whole.value.denominator == 1 and whole.end < top.start and 0 < top.value < bottom.value


def _pseudo(kind: str, near: Token) -> Token:
    return Token(kind if kind in "()" else "op", kind, near.start, near.start)


def _has_operator(tokens: list[Token]) -> bool:
    # A binary operator: an op after a value. "-3" alone or "25%" alone is a number, not a calculation.
    return any(t.kind == "op" and i > 0 and tokens[i - 1].kind in _VALUE_END for i, t in enumerate(tokens))


def _stated(tokens: list[Token], text: str) -> _Stated | None:
    """The number a right-hand side starts with, in every form it may be written; None when there is none."""
    sign, index = 1, 0
    if tokens[:1] and tokens[0].kind == "op" and tokens[0].text in ("+", "-"):
        sign, index = (-1 if tokens[0].text == "-" else 1), 1
    if index >= len(tokens) or tokens[index].kind != "num":
        return None
    rest = tokens[index:]
    values = [t for t in rest if t.kind != "unit"]
    if (values[-1].kind == "op" and len(values) > 1) or _VARIABLE.match(text, rest[0].end):
        return None  # "3*30 = 30 + M", "100/5 = 5A/5": the right side goes on in a variable, it is an equation
    number = rest[0]
    readings = [(sign * number.value, decimals_of(number.text))]
    shown, end = readings[0][0], number.end
    if rest[1:2] and rest[1].text.lower() in ("cents", "cent"):
        readings.append((readings[0][0] / 100, readings[0][1] + 2))  # "$2.50 - $2.24 = 26 cents"
    if values[1:2] and values[1].kind == "%":
        # 25%: a quarter, or (after * 100) twenty-five.
        readings = [(readings[0][0] / 100, readings[0][1] + 2), readings[0]]
        shown, end = readings[0][0], values[1].end
    length, value = _number_at(rest, 0)
    if length > 1:
        readings.append((sign * value, EXACT))
        shown, end = sign * value, rest[length - 1].end
    return _Stated(readings, shown, end)


EXACT = 9  # decimals standing for "exact" in a reading: a fraction or a grouped number


def _right_side_agrees(values: list[Fraction], right: list[Token]) -> bool:
    # "2 * 3 = 3 * 2": a right side that is an expression of the same value.
    tokens = [t for t in right if t.kind != "unit"]
    if not _has_operator(tokens):
        return False
    other = _values(tokens)
    return other is not None and any(value in other for value in values)


# ----------------------------------------------------------------------------- the parser


class _Parser:
    """Recursive descent over the tokens of one expression:

    expression := term (("+" | "-") term)*
    term       := unary (("*" | "/") unary | "(" expression ")")*     # 2(3 + 4), (1/2) 278 multiply
    unary      := ("+" | "-") unary | primary "%"*
    primary    := number | "(" expression ")"
    """

    def __init__(self, tokens: Sequence[Token], *, calculator_percent: bool = False) -> None:
        self.tokens = tokens
        self.position = 0
        self.depth = 0
        # 50 + 10% read as 50 + 10% of 50, as a shop calculator does.
        self.calculator_percent = calculator_percent

    def parse(self) -> Fraction:
        if len(self.tokens) > MAX_TOKENS:
            raise CalculationError(f"longer than {MAX_TOKENS} tokens")
        value = self._expression()
        if self.position != len(self.tokens):
            raise CalculationError(f"unexpected {self.tokens[self.position].text!r}")
        return value

    def _expression(self) -> Fraction:
        value, _ = self._term()
        while self._at("op", "+", "-"):
            minus = self._take().text == "-"
            right, percent = self._term()
            if percent and self.calculator_percent:
                right *= value
            value = value - right if minus else value + right
        return value

    def _term(self) -> tuple[Fraction, bool]:
        """The term's value and whether it is a bare percentage (`10%`)."""
        value, percent = self._unary()
        while self._at("op", "*", "/") or self._at("(") or (self._at("num") and self._after(")")):
            divide = self._take().text == "/" if self._at("op") else False
            right, _ = self._unary()
            if divide and right == 0:
                raise CalculationError("division by zero")
            value, percent = (value / right if divide else value * right), False
        return value, percent

    def _unary(self) -> tuple[Fraction, bool]:
        if self._at("op", "+", "-"):
            negative = self._take().text == "-"
            value, percent = self._unary()
            return (-value if negative else value), percent
        value, percent = self._primary(), False
        while self._at("%"):
            self._take()
            value, percent = value / 100, True
        return value, percent

    def _primary(self) -> Fraction:
        token = self._take()
        if token.kind == "num":
            return token.value
        if token.kind != "(":
            raise CalculationError(f"unexpected {token.text!r}")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculationError(f"more than {MAX_DEPTH} nested parentheses")
        value = self._expression()
        if not self._at(")"):
            raise CalculationError("unclosed parenthesis")
        self._take()
        self.depth -= 1
        return value

    def _at(self, kind: str, *texts: str) -> bool:
        if self.position >= len(self.tokens):
            return False
        token = self.tokens[self.position]
        return token.kind == kind and (not texts or token.text in texts)

    def _after(self, kind: str) -> bool:
        return self.position > 0 and self.tokens[self.position - 1].kind == kind

    def _take(self) -> Token:
        if self.position >= len(self.tokens):
            raise CalculationError("unexpected end")
        self.position += 1
        return self.tokens[self.position - 1]
