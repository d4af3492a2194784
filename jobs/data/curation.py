"""Curating a training set: quality, difficulty, logic density and diversity filters, then a versioned dataset.

Plain functions over `Item`s (a question, its reference solution and final answer), each filter
returning what it kept; `curate` chains them, counting what survives each, and fails naming the
filters when fewer than the target survive (never a short dataset written silently).

- quality: drops items with no final answer (`#### <number>`), a reference whose stated
  calculations are wrong (jobs.scoring.calculations re-evaluates them), exact duplicates
  (normalised text: jobs.data.contamination.words) and near duplicates: a question whose word
  3-gram shingles have Jaccard similarity >= NEAR_DUPLICATE (0.8) with an earlier kept one.
- difficulty: drops the questions a baseline solved (ids given by the caller: the runner reads the
  baseline evals' predictions from the database; this module knows nothing of it).
- density (VQ-1's logic density): steps + distinct operations + distractors, see `density`;
  kept when >= min_density, or the top_k densest.
- diversity: stratified over (steps, operation set), seeded round robin down to the target size.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.data.contamination import words
from jobs.errors import FatalJobError

NEAR_DUPLICATE = 0.8  # Jaccard similarity of word 3-gram shingles at or above which a question is a near copy
SHINGLE = 3
COMMON_SHINGLE = 200  # a shingle in more questions than this ("how many apples") proposes no candidate pairs
MAX_STEPS_STRATUM = 8  # solutions with more steps share the last stratum

_CALCULATION = re.compile(r"<<([^<>=]*)=[^<>]*>>")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_OPERATORS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    solution: str  # the reference solution, `#### <answer>` line included (GSM8K `answer` or a trace `response`)


@dataclass(frozen=True)
class Counts:
    """How many items survived each stage, in order: the manifest's `counts` and a failure's message."""

    stages: list[tuple[str, int]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # by reason

    def describe(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in self.stages)


# --------------------------------------------------------------------------- reading a source


def parse_source(text: str, *, stem: str) -> list[Item]:
    """JSONL rows with `question` and `answer` (GSM8K) or `response` (a trace); malformed answers are kept
    for the quality filter to count. ValueError `<line>: why` for a line that is not such a row."""
    items = []
    for index, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as error:
            raise ValueError(f"{index + 1}: not JSON: {error}") from None
        solution = row.get("answer", row.get("response")) if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(solution, str):
            raise ValueError(f"{index + 1}: want an object with a `question` and an `answer` (or `response`) string")
        items.append(Item(id=f"{stem}-{index}", question=row["question"], solution=solution))
    if not items:
        raise ValueError("1: no items: the source has no JSON line")
    return items


# --------------------------------------------------------------------------- quality


def final_answer(item: Item) -> str | None:
    from jobs.scoring.answers import extract_answer, reference_answer

    try:
        reference_answer(item.solution)  # a `#### …` line is required: a bare number at the end is not enough
    except ValueError:
        return None
    return extract_answer(item.solution)


def wrong_calculations(item: Item) -> int:
    """Stated calculations of the reference that do not hold (`3 * 4 = 13`, `<<3*4=13>>13`)."""
    from jobs.scoring.calculations import stated_calculations

    return sum(not c.correct for c in stated_calculations(item.solution))


def shingles(text: str) -> frozenset[tuple[str, ...]]:
    tokens = words(text)
    if len(tokens) < SHINGLE:
        return frozenset({tuple(tokens)})
    return frozenset(tuple(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def quality(items: Sequence[Item], dropped: Counter[str]) -> list[Item]:
    """Items with a final answer, right calculations, and no exact or near copy earlier in the source."""
    well_formed = []
    for item in items:
        if final_answer(item) is None:
            dropped["no_final_answer"] += 1
        elif wrong_calculations(item):
            dropped["wrong_calculation"] += 1
        else:
            well_formed.append(item)
    return _without_duplicates(well_formed, dropped)


def _without_duplicates(items: Sequence[Item], dropped: Counter[str]) -> list[Item]:
    all_shingles = [shingles(item.question) for item in items]
    frequency = Counter(s for each in all_shingles for s in each)
    seen_texts: set[str] = set()
    index: defaultdict[tuple[str, ...], list[int]] = defaultdict(list)  # shingle -> kept items holding it
    kept: list[int] = []
    for i, item in enumerate(items):
        text = " ".join(words(item.question))
        if text in seen_texts:
            dropped["exact_duplicate"] += 1
            continue
        candidates = {j for s in all_shingles[i] if frequency[s] <= COMMON_SHINGLE for j in index[s]}
        if any(jaccard(all_shingles[i], all_shingles[j]) >= NEAR_DUPLICATE for j in candidates):
            dropped["near_duplicate"] += 1
            continue
        seen_texts.add(text)
        kept.append(i)
        for s in all_shingles[i]:
            index[s].append(i)
    return [items[i] for i in kept]


# --------------------------------------------------------------------------- difficulty, density, diversity


def difficulty(items: Sequence[Item], solved: set[str], dropped: Counter[str]) -> list[Item]:
    """Items no baseline solved (`solved`: question ids, as the baselines' predictions name them)."""
    kept = [item for item in items if item.id not in solved]
    dropped["solved_by_baseline"] += len(items) - len(kept)
    return kept


def steps(item: Item) -> int:
    """Calculations of the reference: GSM8K's <<…>> annotations, else the calculations it states, at least 1."""
    from jobs.scoring.calculations import stated_calculations

    annotated = _CALCULATION.findall(item.solution)
    return max(1, len(annotated) or len(stated_calculations(item.solution)))


def operations(item: Item) -> frozenset[str]:
    from jobs.scoring.calculations import stated_calculations

    annotated = _CALCULATION.findall(item.solution) or [c.expression for c in stated_calculations(item.solution)]
    text = " ".join(annotated).replace("x", "*").replace("×", "*").replace("÷", "/")
    return frozenset(name for symbol, name in _OPERATORS.items() if symbol in text)


def distractors(item: Item) -> int:
    """Numbers the question gives that its solution never uses: facts a reader must see past."""
    used = set(_NUMBER.findall(item.solution.replace(",", "")))
    return sum(number not in used for number in set(_NUMBER.findall(item.question.replace(",", ""))))


def density(item: Item) -> int:
    """Logic density: steps + distinct operations + distractors (VQ-1 favours multi-step, constrained items)."""
    return steps(item) + len(operations(item)) + distractors(item)


def dense(items: Sequence[Item], *, min_density: int | None, top_k: int | None, dropped: Counter[str]) -> list[Item]:
    kept = list(items)
    if min_density is not None:
        kept = [item for item in kept if density(item) >= min_density]
    if top_k is not None and len(kept) > top_k:
        ranked = sorted(range(len(kept)), key=lambda i: (-density(kept[i]), i))  # ties: source order
        kept = [kept[i] for i in sorted(ranked[:top_k])]
    dropped["low_density"] += len(items) - len(kept)
    return kept


def stratum(item: Item) -> tuple[int, str]:
    return min(steps(item), MAX_STEPS_STRATUM), "+".join(sorted(operations(item)))


def diverse(items: Sequence[Item], *, target: int, seed: int) -> list[Item]:
    """`target` items spread evenly over the strata (steps × operations): each stratum shuffled with `seed`,
    then taken one from each in turn (strata in sorted order) until the target is reached; source order kept."""
    strata: defaultdict[tuple[int, str], list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        strata[stratum(item)].append(i)
    rng = random.Random(seed)
    queues = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        queues.append(members)
    chosen: list[int] = []
    while len(chosen) < min(target, len(items)):
        for queue in queues:
            if queue and len(chosen) < target:
                chosen.append(queue.pop())
    return [items[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------- the whole curation


@dataclass(frozen=True)
class Curated:
    items: list[Item]
    counts: Counts
    jsonl: bytes  # one {id, question, answer} a line: what train jobs read
    sha256: str


def curate(
    items: Sequence[Item],
    *,
    target: int,
    seed: int,
    quality_filter: bool = True,
    solved: set[str] | None = None,
    min_density: int | None = None,
    top_k: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Curated:
    """Run the filters in order; FatalJobError with every stage's count when fewer than `target` survive."""
    dropped: Counter[str] = Counter()
    stages = [("source", len(items))]
    kept = list(items)
    filters: list[tuple[str, Callable[[list[Item]], list[Item]]]] = []
    if quality_filter:
        filters.append(("quality", lambda xs: quality(xs, dropped)))
    if solved is not None:
        filters.append(("difficulty", lambda xs: difficulty(xs, solved, dropped)))
    if min_density is not None or top_k is not None:
        filters.append(("density", lambda xs: dense(xs, min_density=min_density, top_k=top_k, dropped=dropped)))
    for done, (name, keep) in enumerate(filters):
        kept = keep(kept)
        stages.append((name, len(kept)))
        if progress:
            progress(done + 1, len(filters) + 1)
    counts = Counts(stages=stages, dropped=dict(sorted(dropped.items())))
    if len(kept) < target:
        raise FatalJobError(
            f"curate.target: {target} asked but only {len(kept)} items survive the filters ({counts.describe()}; "
            f"dropped: {', '.join(f'{k} {v}' for k, v in counts.dropped.items()) or 'none'})"
        )
    chosen = diverse(kept, target=target, seed=seed)
    counts.stages.append(("diversity", len(chosen)))
    data = to_jsonl(chosen)
    return Curated(items=chosen, counts=counts, jsonl=data, sha256=hashlib.sha256(data).hexdigest())


def to_jsonl(items: Iterable[Item]) -> bytes:
    """GSM8K-shaped JSONL (train jobs and evals read it as a gsm8k file); the source id travels along."""
    lines = [json.dumps({"id": i.id, "question": i.question, "answer": i.solution}, ensure_ascii=False) for i in items]
    return ("\n".join(lines) + "\n").encode("utf-8")


def manifest(curated: Curated, *, name: str, sources: list[str], baselines: list[str], seed: int,
             settings: dict[str, Any]) -> dict[str, Any]:
    """What the artifact's manifest.json says: enough to rebuild it and to trust it."""
    return {
        "name": name,
        "sha256": curated.sha256,
        "count": len(curated.items),
        "counts": dict(curated.counts.stages),
        "dropped": curated.counts.dropped,
        "sources": sources,
        "baselines": baselines,
        "seed": seed,
        "settings": settings,
        "near_duplicate_threshold": NEAR_DUPLICATE,
        "strata": dict(sorted(Counter("/".join(map(str, stratum(i))) for i in curated.items).items())),
    }
