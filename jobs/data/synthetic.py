"""Seeded GSM8K-style multi-step arithmetic word problems with computed answers.

A problem follows one quantity (eggs in a basket, dollars in a wallet, a speed...)
through k operations. Themes and their sentences are data (THEMES); the code only picks
numbers that keep every intermediate value a non-negative integer and computes them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from jobs.data.question import Question

# Operation symbol as GSM8K writes it inside <<...>>, and how it computes.
OPERATIONS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "div": "/",
}
# Bounds that keep problems in GSM8K's range of sizes.
ADD_RANGE = (2, 30)
MUL_RANGE = (2, 5)
DIV_RANGE = (2, 10)
MAX_VALUE = 10_000
# Openers for the second and later steps, so a chain of steps reads as a story.
CONNECTORS = ("Then", "After that,", "Later,", "Next,")


@dataclass(frozen=True)
class Step:
    problem: str  # sentence of the question; {name} and {b} filled in
    solution: str  # solution line; {calc} becomes `v op b = <<v op b=c>>c`


@dataclass(frozen=True)
class Theme:
    start: str  # opening sentence with the starting value {a}
    start_range: tuple[int, int]
    question: str
    names: tuple[str, ...]
    steps: dict[str, tuple[Step, ...]]  # operation -> ways to say it


THEMES: dict[str, Theme] = {
    "eggs": Theme(
        start="{name} collects {a} eggs from the hens in the morning.",
        start_range=(6, 40),
        question="How many eggs does {name} have at the end?",
        names=("Janet", "Maria", "Aisha", "Olga"),
        steps={
            "add": (
                Step("A neighbour gives {name} {b} more eggs.", "With the neighbour's eggs {name} has {calc} eggs."),
                Step("In the afternoon the hens lay another {b} eggs.", "After the afternoon there are {calc} eggs."),
            ),
            "sub": (
                Step("{name} bakes muffins with {b} of the eggs.", "After baking {name} has {calc} eggs."),
                Step("{b} eggs break on the way home.", "Without the broken ones there are {calc} eggs."),
            ),
            "mul": (
                Step(
                    "By the end of the week {name} has {b} times as many eggs.",
                    "At the end of the week {name} has {calc} eggs.",
                ),
            ),
            "div": (
                Step(
                    "{name} packs the eggs equally into {b} cartons and keeps one carton.",
                    "One carton holds {calc} eggs.",
                ),
            ),
        },
    ),
    "shopping": Theme(
        start="{name} has ${a} to spend at the market.",
        start_range=(10, 120),
        question="How many dollars does {name} have now?",
        names=("Tom", "Lena", "Carlos", "Mei"),
        steps={
            "add": (
                Step("An aunt gives {name} another ${b}.", "With the aunt's gift {name} has {calc} dollars."),
                Step("{name} returns a jacket and gets ${b} back.", "After the refund {name} has {calc} dollars."),
            ),
            "sub": (
                Step("{name} spends ${b} on vegetables.", "After the vegetables {name} has {calc} dollars left."),
                Step(
                    "A basket of apples costs ${b}, and {name} buys it.",
                    "After the apples {name} has {calc} dollars.",
                ),
            ),
            "mul": (
                Step(
                    "Selling an old bike leaves {name} with {b} times as much money.",
                    "After selling the bike {name} has {calc} dollars.",
                ),
            ),
            "div": (
                Step(
                    "{name} splits the money equally into {b} envelopes and takes only one to the shop.",
                    "One envelope holds {calc} dollars.",
                ),
            ),
        },
    ),
    "speeds": Theme(
        start="{name} rides a bike at {a} km per hour.",
        start_range=(8, 30),
        question="How fast, in km per hour, does {name} ride at the end?",
        names=("Priya", "Jonas", "Sam", "Yuki"),
        steps={
            "add": (
                Step(
                    "Going downhill, {name} rides {b} km per hour faster.",
                    "Downhill the speed is {calc} km per hour.",
                ),
            ),
            "sub": (
                Step(
                    "Into the wind, {name} rides {b} km per hour slower.",
                    "Into the wind the speed is {calc} km per hour.",
                ),
            ),
            "mul": (
                Step("On an e-bike, {name} rides {b} times as fast.", "On the e-bike the speed is {calc} km per hour."),
            ),
            "div": (
                Step("Pushing the bike uphill, {name} is {b} times slower.", "Uphill the speed is {calc} km per hour."),
            ),
        },
    ),
    "savings": Theme(
        start="{name} has ${a} in a savings jar.",
        start_range=(20, 200),
        question="How many dollars are in the jar at the end?",
        names=("Ali", "Grace", "Noah", "Fatima"),
        steps={
            "add": (
                Step("{name} adds ${b} from a birthday card.", "After the birthday the jar holds {calc} dollars."),
                Step("{name} saves ${b} more from chores.", "With the chore money the jar holds {calc} dollars."),
            ),
            "sub": (
                Step("{name} takes out ${b} for a book.", "After the book the jar holds {calc} dollars."),
            ),
            "mul": (
                Step(
                    "After a year of saving, the jar holds {b} times as much.",
                    "After a year the jar holds {calc} dollars.",
                ),
            ),
            "div": (
                Step(
                    "{name} shares the jar equally with siblings, {b} shares in all, and puts one share back.",
                    "One share is {calc} dollars.",
                ),
            ),
        },
    ),
    "library": Theme(
        start="A school library has {a} books on one shelf.",
        start_range=(12, 150),
        question="How many books are on the shelf at the end?",
        names=("the librarian",),
        steps={
            "add": (
                Step(
                    "A parent donates {b} books, and {name} shelves them.",
                    "After the donation there are {calc} books.",
                ),
            ),
            "sub": (
                Step("Students borrow {b} books.", "After the loans there are {calc} books."),
            ),
            "mul": (
                Step(
                    "A new shelf holds {b} times as many books, and {name} fills it.",
                    "The new shelf holds {calc} books.",
                ),
            ),
            "div": (
                Step(
                    "{name} splits the books equally among {b} classrooms and puts back one classroom's share.",
                    "One share is {calc} books.",
                ),
            ),
        },
    ),
}


def _operand(rng: random.Random, op: str, value: int) -> int | None:
    """A second operand that keeps the result a non-negative integer in range, or None."""
    if op == "add":
        return rng.randint(*ADD_RANGE)
    if op == "sub":
        return rng.randint(1, min(value - 1, 40)) if value >= 3 else None
    if op == "mul":
        fits = [b for b in range(MUL_RANGE[0], MUL_RANGE[1] + 1) if value * b <= MAX_VALUE]
        return rng.choice(fits) if fits else None
    divisors = [b for b in range(DIV_RANGE[0], DIV_RANGE[1] + 1) if value % b == 0 and value // b >= 2]
    return rng.choice(divisors) if divisors else None


def _apply(op: str, value: int, operand: int) -> int:
    if op == "add":
        return value + operand
    if op == "sub":
        return value - operand
    if op == "mul":
        return value * operand
    return value // operand  # exact: _operand only picks divisors


def _problem(rng: random.Random, steps: int, question_id: str) -> Question:
    theme = THEMES[rng.choice(sorted(THEMES))]
    name = rng.choice(theme.names)
    value = rng.randint(*theme.start_range)
    sentences = [theme.start.format(name=name, a=value)]
    lines = []
    for index in range(steps):
        choices = [(op, b) for op in OPERATIONS if (b := _operand(rng, op, value)) is not None]
        op, operand = rng.choice(choices)  # "add" always fits, so never empty
        result = _apply(op, value, operand)
        symbol = OPERATIONS[op]
        calc = f"{value} {symbol} {operand} = <<{value}{symbol}{operand}={result}>>{result}"
        step = rng.choice(theme.steps[op])
        sentences.append(_connect(rng, index, step.problem.format(name=name, b=operand), name))
        lines.append(_capitalise(step.solution.format(name=name, calc=calc)))
        value = result
    sentences.append(theme.question.format(name=name))
    lines.append(f"#### {value}")
    return Question(
        id=question_id,
        question=" ".join(_capitalise(s) for s in sentences),
        answer=str(value),
        solution="\n".join(lines),
        complexity=steps,
    )


def _connect(rng: random.Random, index: int, sentence: str, name: str) -> str:
    if index == 0:
        return sentence
    if not sentence.startswith(name):
        sentence = sentence[:1].lower() + sentence[1:]
    return f"{rng.choice(CONNECTORS)} {sentence}"


def _capitalise(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def generate(n: int, complexity: tuple[int, int] = (1, 4), seed: int = 0) -> list[Question]:
    """`n` problems with between complexity[0] and complexity[1] steps each; same seed, same problems."""
    low, high = complexity
    if n < 0 or not 1 <= low <= high:
        raise ValueError("need n >= 0 and 1 <= complexity[0] <= complexity[1]")
    rng = random.Random(seed)
    return [_problem(rng, rng.randint(low, high), f"synthetic-{seed}-{i}") for i in range(n)]
