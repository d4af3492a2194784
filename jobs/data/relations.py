"""Synthetic problems that know their wrong readings: relation-typed steps over a computation graph.

A problem follows one quantity from person to person ("Ben collects twice as many eggs as Ana"),
through rates that change what is counted ("Ben sells each egg for 30 cents") and units ("2 dozen
more", "How many hours..."). Every step adds nodes to a computation graph; the answer is the graph's
value, and each classic wrong reading is the same graph with one node rewritten (a percent-of read
for a percent-more, a conversion left out, a step skipped, a relation turned round, the decoy's
number used), evaluated the same way. Measures, their sentences and the names are data; the code
picks numbers that keep every true value a whole number and writes the GSM8K-style solution.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Literal, TypeVar, get_args

from jobs.data.question import Question
from jobs.scoring.answers import normalize_number
from jobs.specs import RELATION_NAMES, RelationName

# --------------------------------------------------------------------------- the computation graph

Op = Literal["value", "add", "sub", "mul", "div", "pct"]
Value = int | Fraction
T = TypeVar("T")


@dataclass(frozen=True)
class Ref:
    """An edge of the graph: the value of an earlier node."""

    node: int


@dataclass(frozen=True)
class Node:
    """One quantity: `value` states its argument (a number the text gives), the others compute."""

    op: Op
    args: tuple[Ref | int, ...]


def _exact_div(a: Value, b: Value) -> Value:
    if isinstance(a, int) and isinstance(b, int) and b and a % b == 0:
        return a // b
    quotient = Fraction(a) / Fraction(b)  # ZeroDivisionError for b == 0: a reading that has no answer
    return quotient.numerator if quotient.denominator == 1 else quotient


OPS: dict[Op, Callable[..., Value]] = {
    "value": lambda a: a,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _exact_div,
    "pct": lambda a, b: _exact_div(a * b, 100),  # b percent of a
}
SYMBOLS: dict[Op, str] = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def evaluate(nodes: Sequence[Node], known: Sequence[Value] = ()) -> list[Value]:
    """Every node's value, in order (a node only refers to earlier ones); the answer is the last.

    `known`: the values of the first nodes, already evaluated (a rewrite changes only what follows it).
    """
    values = list(known)
    for node in nodes[len(values) :]:
        values.append(OPS[node.op](*(values[a.node] if isinstance(a, Ref) else a for a in node.args)))
    return values


def steps_of(nodes: Sequence[Node]) -> int:
    """How many calculations the graph makes: its nodes that compute (each is one `<<...>>` of the solution)."""
    return sum(node.op != "value" for node in nodes)


# --------------------------------------------------------------------------- wrong readings

ReadingName = Literal[
    "percent_of_instead_of_more",
    "percent_more_instead_of_of",
    "unconverted_unit",
    "swapped_relation",
    "distractor_used",
    "dropped_step",
]
# The order a problem lists its readings in; when two readings give the same number, the first keeps it,
# so a wrong answer names one reading.
READINGS: tuple[ReadingName, ...] = get_args(ReadingName)


@dataclass(frozen=True)
class Misreading:
    """A wrong reading as a graph rewrite: node `node` becomes `replacement`."""

    name: ReadingName
    node: int
    replacement: Node

    def apply(self, nodes: Sequence[Node]) -> list[Node]:
        rewritten = list(nodes)
        rewritten[self.node] = self.replacement
        return rewritten


def answer_text(value: Value) -> str | None:
    """`value` as jobs.scoring.answers normalises answers; None when no one would write it (negative, 1/3)."""
    if value < 0 or 100 % Fraction(value).denominator:
        return None
    if isinstance(value, int):
        return str(value)
    return normalize_number(None, format(Decimal(value.numerator) / Decimal(value.denominator), "f"))


# --------------------------------------------------------------------------- measures: what a story counts

Kind = Literal["count", "time", "money"]


@dataclass(frozen=True)
class Unit:
    """The bigger unit a measure is also stated in (12 eggs a dozen, 60 minutes an hour, 100 cents a dollar)."""

    factor: int
    short: str  # an amount inside a comparison: "3 dozen", "2 hours", "$3"
    amount: str  # an amount on its own: "3 dozen eggs", "2 hours", "$3"
    ask: str  # what the question asks for: "dozen eggs", "hours", "dollars"


@dataclass(frozen=True)
class Rate:
    """A rate that turns the measure into another one: x eggs at r cents each are x*r cents."""

    sentence: str  # {who} and {r}
    decoy: str  # the same kind of fact about someone else, for the distractor
    op: Literal["mul", "div"]
    to: str  # key in MEASURES
    rates: range


@dataclass(frozen=True)
class Measure:
    kind: Kind
    noun: str  # plural, the unit answers are in: "eggs", "minutes", "cents"
    verb: str  # third person: "collects", "walks dogs", "earns"
    base: str  # for the question: "collect", "walk dogs", "earn"
    rates: tuple[Rate, ...]
    big: Unit | None = None
    start: range | None = None  # a starting amount; None: a story reaches this measure only through a rate
    more: range = range(2, 31)  # the N of "N more", "N fewer"

    def state(self, who: str, amount: str) -> str:
        """`who` has `amount` of this measure: "Ana collects 36 eggs", "Ana walks dogs for 2 hours"."""
        return f"{who} {self.verb} {'for ' if self.kind == 'time' else ''}{amount}"


DOZEN = Unit(12, "{n} dozen", "{n} dozen {noun}", "dozen {noun}")
HOURS = Unit(60, "{n} hours", "{n} hours", "hours")
DOLLARS = Unit(100, "${n}", "${n}", "dollars")
SELL_PRICES = range(5, 51, 5)
BUY_PRICES = range(5, 201)


def _sell(singular: str) -> Rate:
    text = "{who} sells each " + singular + " for {r} cents."
    return Rate(text, text, "mul", "money", SELL_PRICES)


def _buy(plural: str) -> Rate:
    return Rate(
        "{who} spends all of it on " + plural + " at {r} cents each.",
        "At another shop, " + plural + " cost {r} cents each.",
        "div",
        plural,  # the key of its measure
        BUY_PRICES,
    )


def _count(noun: str, singular: str, verb: str, base: str, big: Unit | None = None, start: bool = True) -> Measure:
    return Measure("count", noun, verb, base, (_sell(singular),), big, range(6, 61) if start else None)


def _minutes(verb: str, base: str, rate: Rate) -> Measure:
    return Measure("time", "minutes", verb, base, (rate,), HOURS, range(10, 91, 5), range(5, 61, 5))


def _same(text: str, op: Literal["mul", "div"], to: str, rates: range) -> Rate:
    """A rate whose decoy says the same of someone else."""
    return Rate(text, text, op, to, rates)


BOUGHT = ("pencils", "stickers", "postcards")
PAID_PER_MINUTE = "{who} is paid {r} cents for every minute of it."
MEASURES: dict[str, Measure] = {
    "eggs": _count("eggs", "egg", "collects", "collect", DOZEN),
    "cookies": _count("cookies", "cookie", "bakes", "bake", DOZEN),
    "muffins": _count("muffins", "muffin", "bakes", "bake", DOZEN),
    "roses": _count("roses", "rose", "picks", "pick", DOZEN),
    "marbles": _count("marbles", "marble", "wins", "win"),
    "seashells": _count("seashells", "seashell", "finds", "find"),
    "stamps": _count("stamps", "stamp", "collects", "collect"),
    "pencils": _count("pencils", "pencil", "buys", "buy", DOZEN, start=False),
    "stickers": _count("stickers", "sticker", "buys", "buy", start=False),
    "postcards": _count("postcards", "postcard", "buys", "buy", start=False),
    "words": Measure(
        "count", "words", "types", "type", (_same("{who} is paid {r} cents per word.", "mul", "money", range(2, 6)),)
    ),
    "dog walking": _minutes(
        "walks dogs",
        "walk dogs",
        Rate(PAID_PER_MINUTE, "{who} is paid {r} cents a minute for the same work.", "mul", "money", range(5, 31, 5)),
    ),
    "babysitting": _minutes(
        "babysits",
        "babysit",
        Rate(PAID_PER_MINUTE, "{who} is paid {r} cents a minute for babysitting.", "mul", "money", range(5, 31, 5)),
    ),
    "typing": _minutes("types", "type", _same("{who} types {r} words per minute.", "mul", "words", range(20, 61, 5))),
    "money": Measure(
        "money", "cents", "earns", "earn", tuple(map(_buy, BOUGHT)), DOLLARS, start=None, more=range(5, 100, 5)
    ),
}
STARTS: tuple[str, ...] = tuple(key for key, measure in MEASURES.items() if measure.start is not None)

# How each relation is said, by kind of measure; {prev} is the person compared with.
PHRASES: dict[Kind, dict[str, tuple[str, ...]]] = {
    "count": {
        "times": ("{k} as many {noun} as {prev}", "{k} as many {noun} as {prev} does"),
        "fraction": ("{f} as many {noun} as {prev}", "{f} of the number of {noun} {prev} {verb}"),
        "percent_more": ("{p}% more {noun} than {prev}", "{p}% more {noun} than {prev} does"),
        "percent_of": ("{p}% as many {noun} as {prev}", "{p}% of the number of {noun} {prev} {verb}"),
        "more": ("{n} more {noun} than {prev}", "{n} more {noun} than {prev} does"),
        "fewer": ("{n} fewer {noun} than {prev}", "{n} fewer {noun} than {prev} does"),
        "unit_more": ("{big} more {noun} than {prev}",),
        "unit_fewer": ("{big} fewer {noun} than {prev}",),
    },
    "time": {
        "times": ("{k} as long as {prev}", "{k} as long as {prev} does"),
        "fraction": ("{f} as long as {prev}", "for {f} of the time {prev} does"),
        "percent_more": ("{p}% longer than {prev}", "{p}% longer than {prev} does"),
        "percent_of": ("{p}% as long as {prev}", "for {p}% of the time {prev} does"),
        "more": ("{n} {noun} longer than {prev}", "{n} {noun} longer than {prev} does"),
        "fewer": ("{n} {noun} less than {prev}", "{n} {noun} less than {prev} does"),
        "unit_more": ("{big} longer than {prev}",),
        "unit_fewer": ("{big} less than {prev}",),
    },
    "money": {
        "times": ("{k} as much as {prev}", "{k} as much as {prev} does"),
        "fraction": ("{f} as much as {prev}", "{f} of what {prev} {verb}"),
        "percent_more": ("{p}% more than {prev}", "{p}% more than {prev} does"),
        "percent_of": ("{p}% as much as {prev}", "{p}% of what {prev} {verb}"),
        "more": ("{n} {noun} more than {prev}", "{n} {noun} more than {prev} does"),
        "fewer": ("{n} {noun} less than {prev}", "{n} {noun} less than {prev} does"),
        "unit_more": ("{big} more than {prev}",),
        "unit_fewer": ("{big} less than {prev}",),
    },
}
TIMES = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}
FRACTIONS = {2: "half", 3: "one-third", 4: "one-quarter", 5: "one-fifth"}
PERCENT_MORE = (10, 20, 25, 30, 40, 50, 60, 75)
PERCENT_OF = (10, 20, 25, 30, 40, 50, 60, 75, 80)
BIG_AMOUNTS = range(2, 5)  # "2 dozen" .. "4 hours": never "1 hours"
NAMES_TEXT = (
    "Ana Ben Cara Dev Elif Femi Gita Hugo Ines Jamal Kenji Lena Mateo Nadia Omar Priya Quinn Rosa Sven Tariq Uma"
    " Viktor Wen Ximena Yusuf Zoe Amara Bruno Chloe Diego Esme Farah Goran Hana Ivo Jun"
)
NAMES = tuple(NAMES_TEXT.split())
KIN = ("friend", "cousin", "neighbour", "classmate", "teammate")
MAX_VALUE = 10_000
START_IN_BIG_UNIT = 0.25  # share of stories, when units are asked for, that state the start in the big unit
NEW_PERSON_WITH_KIN = 0.25  # share of comparisons that introduce the person as someone's friend, cousin...
ATTEMPTS = 200  # stories tried per problem before the relations and complexity are declared impossible


# --------------------------------------------------------------------------- a story being built


@dataclass(frozen=True)
class Said:
    """A sentence that states one operand, kept so that a decoy can say the same about someone else."""

    index: int  # in the story's sentences
    template: str  # the decoy's template: {who} and the operand's field are filled in again
    fields: dict[str, str]
    key: str  # the operand's field
    render: Callable[[int], str]  # operand -> its words ("twice", "3 dozen", "25")
    anchor: str  # the decoy is this person's friend, cousin...


@dataclass(frozen=True)
class Decoy:
    """A fact shaped like one step but about someone else: its number, used in that step, is a wrong reading."""

    said: Said
    node: int
    position: int  # of the operand among the node's arguments
    offset: int  # added to the operand in the node (100 for "p% more" computed as x*(100+p)/100)
    operand: int
    choices: Sequence[int]


@dataclass(frozen=True)
class Problem:
    """A question with its computation graph and the rewrites behind its wrong readings (same order)."""

    question: Question
    nodes: tuple[Node, ...]
    misreadings: tuple[Misreading, ...]


@dataclass
class Story:
    """One problem while it is drawn: the graph, the sentences and the solution grow step by step."""

    rng: random.Random
    relations: tuple[str, ...]  # the computing relations, sorted; `distractor` is `decoyed`
    decoyed: bool
    remaining: int  # calculations still to make
    measure: Measure
    people: list[str]  # the chain's people in order; the last one is the decoy's
    nodes: list[Node] = field(default_factory=list)
    values: list[int] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    proposals: list[Misreading] = field(default_factory=list)
    decoys: list[Decoy] = field(default_factory=list)
    person: int = 0
    asked: Unit | None = None  # the question asks in this unit (the last step converts to it)
    readings: dict[Misreading, str | None] = field(default_factory=dict)  # answers of rewrites, once the graph is whole

    @property
    def value(self) -> int:
        return self.values[-1]

    @property
    def who(self) -> str:
        return self.people[self.person]

    def node(self, op: Op, *args: Ref | int) -> int:
        """Append a node; every true value of a story is a whole number."""
        value = OPS[op](*(self.values[a.node] if isinstance(a, Ref) else a for a in args))
        if not isinstance(value, int):
            raise RuntimeError(f"generator bug: {op}{args} is {value}, not a whole number")
        self.nodes.append(Node(op, args))
        self.values.append(value)
        if op != "value":
            self.remaining -= 1
        return len(self.nodes) - 1

    def calc(self, index: int) -> str:
        """A node's calculation as GSM8K writes it: `36 * 25 / 100 = <<36*25/100=9>>9`."""
        node = self.nodes[index]
        a, b = (self.values[x.node] if isinstance(x, Ref) else x for x in node.args)
        expression = f"{a} * {b} / 100" if node.op == "pct" else f"{a} {SYMBOLS[node.op]} {b}"
        result = self.values[index]
        return f"{expression} = <<{expression.replace(' ', '')}={result}>>{result}"

    def state_line(self, index: int) -> None:
        """The solution line `Ben collects 2 * 36 = <<2*36=72>>72 eggs.` for the current person."""
        self.lines.append(self.measure.state(self.who, f"{self.calc(index)} {self.measure.noun}") + ".")

    def say(
        self,
        template: str,
        fields: dict[str, str],
        key: str,
        render: Callable[[int], str],
        *,
        anchor: str | None = None,
        decoy: str | None = None,
    ) -> Said:
        """Add a sentence; a decoy of it (`decoy`, else the same template) is about `anchor`'s friend."""
        self.sentences.append(_capitalise(template.format(**fields)))
        return Said(len(self.sentences) - 1, decoy or template, fields, key, render, anchor or self.who)

    def propose(self, name: ReadingName, index: int, op: Op, *args: Ref | int) -> None:
        self.proposals.append(Misreading(name, index, Node(op, args)))

    def offer_decoy(self, said: Said, index: int, position: int, choices: Sequence[int], offset: int = 0) -> None:
        operand = self.nodes[index].args[position]
        assert isinstance(operand, int)
        self.decoys.append(Decoy(said, index, position, offset, operand - offset, choices))

    def base_fields(self) -> dict[str, str]:
        return {"noun": self.measure.noun, "verb": self.measure.verb}

    # ----------------------------------------------------------------------- the first sentence

    def start(self) -> None:
        big = self.measure.big
        in_big = big is not None and "unit" in self.relations
        only_units = self.relations == ("unit",)
        if in_big and (self.remaining % 2 == 1 if only_units else self.rng.random() < START_IN_BIG_UNIT):
            self.start_in_big_unit()
            return
        starts = self.measure.start
        assert starts is not None
        amount = self.rng.choice(starts)
        index = self.node("value", amount)
        template = self.measure.state("{who}", "{n} {noun}") + "."
        said = self.say(template, {**self.base_fields(), "who": self.who, "n": str(amount)}, "n", str)
        self.offer_decoy(said, index, 0, starts)

    def start_in_big_unit(self) -> None:
        big = self.measure.big
        assert big is not None
        k = self.rng.choice(BIG_AMOUNTS)
        index = self.node("mul", k, big.factor)
        render = _renderer(big.amount, self.measure.noun)
        template = self.measure.state("{who}", "{big}") + "."
        said = self.say(template, {**self.base_fields(), "who": self.who, "big": render(k)}, "big", render)
        self.state_line(index)
        self.propose("unconverted_unit", index, "value", k)
        self.offer_decoy(said, index, 0, BIG_AMOUNTS)

    # ----------------------------------------------------------------------- a step to the next person

    def introduce(self, relation: str, key: str, operand: int, render: Callable[[int], str]) -> Said:
        """The next person, said to have the current one's amount `relation` `operand`."""
        prev = self.who
        self.person += 1
        who = self.who
        if self.rng.random() < NEW_PERSON_WITH_KIN:
            who = f"{prev}'s {self.rng.choice(KIN)} {who}"
        template = "{who} {verb} " + self.rng.choice(PHRASES[self.measure.kind][relation]) + "."
        fields = {**self.base_fields(), "who": who, "prev": prev, key: render(operand)}
        return self.say(template, fields, key, render, anchor=prev)

    def compare(self, relation: str, op: Op, operand: int, key: str, render: Callable[[int], str]) -> int:
        """A one-calculation comparison; returns its node. The caller proposes what is special to it."""
        x = Ref(len(self.nodes) - 1)
        said = self.introduce(relation, key, operand, render)
        index = self.node(op, x, operand)
        self.state_line(index)
        self.propose("dropped_step", index, "value", x)
        self.offer_decoy(said, index, 1, _choices(relation, self.measure))
        return index

    def times(self) -> bool:
        x = self.value
        ks = [k for k in TIMES if x * k <= MAX_VALUE]
        if not ks:
            return False
        k = self.rng.choice(ks)
        index = self.compare("times", "mul", k, "k", TIMES.__getitem__)
        self.propose("swapped_relation", index, "div", Ref(index - 1), k)
        return True

    def fraction(self) -> bool:
        x = self.value
        ds = [d for d in FRACTIONS if x % d == 0 and x // d >= 2]
        if not ds:
            return False
        d = self.rng.choice(ds)
        index = self.compare("fraction", "div", d, "f", FRACTIONS.__getitem__)
        self.propose("swapped_relation", index, "mul", Ref(index - 1), d)
        return True

    def more(self) -> bool:
        x = self.value
        ns = [n for n in self.measure.more if x + n <= MAX_VALUE]
        if not ns:
            return False
        n = self.rng.choice(ns)
        index = self.compare("more", "add", n, "n", str)
        self.propose("swapped_relation", index, "sub", Ref(index - 1), n)
        return True

    def fewer(self) -> bool:
        x = self.value
        ns = [n for n in self.measure.more if x - n >= 2]
        if not ns:
            return False
        n = self.rng.choice(ns)
        index = self.compare("fewer", "sub", n, "n", str)
        self.propose("swapped_relation", index, "add", Ref(index - 1), n)
        return True

    def percent_of(self) -> bool:
        x = self.value
        ps = [p for p in PERCENT_OF if x * p % 100 == 0 and x * p // 100 >= 2]
        if not ps:
            return False
        p = self.rng.choice(ps)
        index = self.compare("percent_of", "pct", p, "p", str)
        self.propose("percent_more_instead_of_of", index, "pct", Ref(index - 1), 100 + p)
        return True

    def percent_more(self) -> bool:
        x = self.value
        ps = [p for p in PERCENT_MORE if x * p % 100 == 0 and x + x * p // 100 <= MAX_VALUE]
        if not ps:
            return False
        p = self.rng.choice(ps)
        if self.remaining >= 2:
            self.percent_more_in_two(p)
            return True
        start = Ref(len(self.nodes) - 1)
        said = self.introduce("percent_more", "p", p, str)
        index = self.node("pct", start, 100 + p)
        self.state_line(index)
        self.propose("percent_of_instead_of_more", index, "pct", start, p)
        self.propose("swapped_relation", index, "pct", start, 100 - p)
        self.propose("dropped_step", index, "value", start)
        self.offer_decoy(said, index, 1, PERCENT_MORE, offset=100)
        return True

    def percent_more_in_two(self, p: int) -> None:
        """`p% of x is ...`, then `x + that`: GSM8K's usual two lines."""
        start = Ref(len(self.nodes) - 1)
        x = self.value
        said = self.introduce("percent_more", "p", p, str)
        part = self.node("pct", start, p)
        self.lines.append(f"{p}% of {x} is {self.calc(part)}.")
        index = self.node("add", start, Ref(part))
        self.state_line(index)
        self.propose("percent_of_instead_of_more", index, "value", Ref(part))
        self.propose("swapped_relation", index, "sub", start, Ref(part))
        self.propose("dropped_step", index, "value", start)
        self.offer_decoy(said, part, 1, PERCENT_MORE)

    # ----------------------------------------------------------------------- units and rates

    def unit(self) -> bool:
        big = self.measure.big
        if big is None:
            return False
        if self.remaining == 1:
            return self.ask_in_big_unit(big)
        x = self.value
        forms = [("unit_more", "add", k) for k in BIG_AMOUNTS if x + k * big.factor <= MAX_VALUE]
        forms += [("unit_fewer", "sub", k) for k in BIG_AMOUNTS if x - k * big.factor >= 2]
        if not forms:
            return False
        relation, op, k = self.rng.choice(forms)
        self.unit_step(big, relation, "add" if op == "add" else "sub", k)
        return True

    def unit_step(self, big: Unit, relation: str, op: Op, k: int) -> None:
        """`Ben collects 2 dozen more eggs than Ana`: convert, then compare."""
        start = Ref(len(self.nodes) - 1)
        render = _renderer(big.short, self.measure.noun)
        said = self.introduce(relation, "big", k, render)
        converted = self.node("mul", k, big.factor)
        self.lines.append(f"{render(k)} is {self.calc(converted)} {self.measure.noun}.")
        index = self.node(op, start, Ref(converted))
        self.state_line(index)
        self.propose("unconverted_unit", converted, "value", k)
        self.propose("swapped_relation", index, "sub" if op == "add" else "add", start, Ref(converted))
        self.propose("dropped_step", index, "value", start)
        self.offer_decoy(said, converted, 0, BIG_AMOUNTS)

    def ask_in_big_unit(self, big: Unit) -> bool:
        """The last step: the question asks in the bigger unit (hours, dozens, dollars)."""
        x = self.value
        if x % big.factor or x // big.factor < 2:
            return False
        start = Ref(len(self.nodes) - 1)
        index = self.node("div", start, big.factor)
        self.lines.append(f"That is {self.calc(index)} {big.ask.format(noun=self.measure.noun)}.")
        self.propose("unconverted_unit", index, "value", start)
        self.asked = big
        return True

    def rate(self) -> bool:
        rates = list(self.measure.rates)
        self.rng.shuffle(rates)
        for rate in rates:
            fitting = [r for r in rate.rates if _rate_fits(rate.op, self.value, r)]
            if fitting:
                round_prices = [r for r in fitting if r % 5 == 0]  # 35 cents rather than 37 when both divide
                self.rate_step(rate, self.rng.choice(round_prices or fitting))
                return True
        return False

    def rate_step(self, rate: Rate, r: int) -> None:
        """`Ben sells each egg for 30 cents`: the same person, another measure."""
        start = Ref(len(self.nodes) - 1)
        said = self.say(rate.sentence, {"who": self.who, "r": str(r)}, "r", str, decoy=rate.decoy)
        self.measure = MEASURES[rate.to]
        index = self.node(rate.op, start, r)
        self.state_line(index)
        self.propose("swapped_relation", index, "div" if rate.op == "mul" else "mul", start, r)
        self.propose("dropped_step", index, "value", start)
        self.offer_decoy(said, index, 1, rate.rates)

    # ----------------------------------------------------------------------- the whole story

    def links(self) -> bool:
        """Steps until the story has its calculations; False when no relation fits the value reached."""
        while self.remaining > 0:
            order = list(self.relations)
            self.rng.shuffle(order)
            if not any(STEPS[name](self) for name in order):
                return False
        return True

    def add_decoy(self) -> None:
        """One step's look-alike about someone else, right after that step's sentence."""
        if not (self.decoyed and self.decoys):
            return
        decoy = self.rng.choice(self.decoys)
        others = [c for c in decoy.choices if c != decoy.operand]
        self.rng.shuffle(others)
        operand = _first_whole(others, lambda n: self.reading(self.decoy_misreading(decoy, n)))
        assert operand is not None  # every decoy has choices besides its own number
        said, name = decoy.said, self.people[-1]
        who = f"{said.anchor}'s {self.rng.choice(KIN)} {name}"
        self.sentences.insert(
            said.index + 1,
            _capitalise(said.template.format(**{**said.fields, "who": who, said.key: said.render(operand)})),
        )
        self.proposals.append(self.decoy_misreading(decoy, operand))

    def decoy_misreading(self, decoy: Decoy, operand: int) -> Misreading:
        node = self.nodes[decoy.node]
        args = list(node.args)
        args[decoy.position] = operand + decoy.offset
        return Misreading("distractor_used", decoy.node, Node(node.op, tuple(args)))

    def reading(self, misreading: Misreading) -> str | None:
        """The answer with `misreading` applied; None when it has none a person would write, or the true one."""
        if misreading not in self.readings:
            try:
                value = evaluate(misreading.apply(self.nodes), self.values[: misreading.node])[-1]
            except ZeroDivisionError:
                value = self.value
            self.readings[misreading] = None if value == self.value else answer_text(value)
        return self.readings[misreading]

    def choose_misreadings(self) -> tuple[Misreading, ...]:
        """Per reading, one of its proposals (drawn at random, whole numbers first) with an answer of its own."""
        taken: set[str] = set()
        chosen = []
        for name in READINGS:
            candidates = [m for m in self.proposals if m.name == name]
            self.rng.shuffle(candidates)
            found = _first_whole(candidates, lambda m: None if (a := self.reading(m)) in taken else a)
            answer = self.reading(found) if found else None
            if found and answer is not None and answer not in taken:
                taken.add(answer)
                chosen.append(found)
        return tuple(chosen)

    def problem(self, question_id: str) -> Problem:
        self.add_decoy()
        answer = evaluate(self.nodes)[-1]
        if answer != self.value or steps_of(self.nodes) != len(self.lines):
            raise RuntimeError(f"generator bug: {question_id}'s graph gives {answer}, its text {self.value}")
        misreadings = self.choose_misreadings()
        noun = self.asked.ask.format(noun=self.measure.noun) if self.asked else self.measure.noun
        question = Question(
            id=question_id,
            question=" ".join([*self.sentences, f"How many {noun} does {self.who} {self.measure.base}?"]),
            answer=str(answer),
            solution="\n".join([*self.lines, f"#### {answer}"]),
            complexity=steps_of(self.nodes),
            wrong_readings=tuple((m.name, str(self.reading(m))) for m in misreadings),
        )
        return Problem(question, tuple(self.nodes), misreadings)


STEPS: dict[str, Callable[[Story], bool]] = {
    "times": Story.times,
    "fraction": Story.fraction,
    "percent_more": Story.percent_more,
    "percent_of": Story.percent_of,
    "fewer": Story.fewer,
    "more": Story.more,
    "rate": Story.rate,
    "unit": Story.unit,
}


def _renderer(template: str, noun: str) -> Callable[[int], str]:
    """An amount in a bigger unit as words: 3 -> "3 dozen eggs", "$3"."""

    def render(n: int) -> str:
        return template.format(n=n, noun=noun)

    return render


def _choices(relation: str, measure: Measure) -> Sequence[int]:
    """The numbers a decoy of `relation` may state instead of the step's own."""
    if relation == "times":
        return tuple(TIMES)
    if relation == "fraction":
        return tuple(FRACTIONS)
    if relation == "percent_of":
        return PERCENT_OF
    return measure.more


def _rate_fits(op: str, x: int, r: int) -> bool:
    if op == "mul":
        return x * r <= MAX_VALUE
    return x % r == 0 and x // r >= 2


def _first_whole(options: Sequence[T], answer: Callable[[T], str | None]) -> T | None:
    """The first option whose answer is a whole number, else the first with an answer, else the first (None: none)."""
    fallback = None
    for option in options:
        text = answer(option)
        if text is not None and text.isdigit():
            return option
        if text is not None and fallback is None:
            fallback = option
    return fallback if fallback is not None else next(iter(options), None)


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


# --------------------------------------------------------------------------- the generator


def generate_problems(
    n: int, complexity: tuple[int, int] = (1, 4), seed: int = 0, relations: Collection[RelationName] = RELATION_NAMES
) -> list[Problem]:
    """`n` problems of complexity[0]..complexity[1] calculations each, over `relations`; same seed, same problems."""
    low, high = complexity
    if n < 0 or not 1 <= low <= high:
        raise ValueError("need n >= 0 and 1 <= complexity[0] <= complexity[1]")
    computing = tuple(sorted(set(relations) - {"distractor"}))
    if not computing:
        raise ValueError("name at least one relation besides `distractor`")
    rng = random.Random(seed)
    decoyed = "distractor" in relations
    return [_problem(rng, rng.randint(low, high), computing, decoyed, f"relations-{seed}-{i}") for i in range(n)]


def generate(
    n: int, complexity: tuple[int, int] = (1, 4), seed: int = 0, relations: Collection[RelationName] = RELATION_NAMES
) -> list[Question]:
    """The questions of `generate_problems`, for a dataset."""
    return [problem.question for problem in generate_problems(n, complexity, seed, relations)]


def _problem(rng: random.Random, steps: int, relations: tuple[str, ...], decoyed: bool, question_id: str) -> Problem:
    starts = STARTS if relations != ("unit",) else tuple(k for k in STARTS if MEASURES[k].big is not None)
    for _ in range(ATTEMPTS):
        measure = MEASURES[rng.choice(starts)]
        story = Story(rng, relations, decoyed, steps, measure, rng.sample(NAMES, steps + 2))
        story.start()
        if story.links():
            return story.problem(question_id)
    raise ValueError(
        f"relations [{', '.join(relations)}] made no {steps}-step problem with values up to {MAX_VALUE}"
        f" in {ATTEMPTS} tries: add relations or lower the complexity"
    )
