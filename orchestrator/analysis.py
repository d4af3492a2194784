"""Why answers fail, in numbers: every run against its sweep's reference on the same questions, and the
flags that keep a small or unconfirmed result from passing for a finding.

- **vs base.** Each run is paired with its sweep's reference (the base run: same model, no adapter,
  `greedy`; or the run the sweep names in `eval.reference`) question by question: the transition
  matrix, the exact McNemar p on the discordant pairs, Δ pass@1 with Newcombe's paired interval
  (`jobs.scoring.stats`) and the failure labels of the regressions. Two runs asked different
  questions are never compared: the comparison says so instead of giving numbers.
- **flags.** `quick-eval` (n below, or interval wider than, the settings' thresholds),
  `not-significant` (McNemar p at or above the significance level), `mirage` (the same run on a
  larger question set scored outside this run's interval).

The queries read stored rows (results, predictions and their failure labels); the rest are pure
functions of what they return, so recomputing gives the same figures.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import load_only
from sqlmodel import Session, col, select

from db.models import EvalResult, Job, Prediction, Sweep, SweepJob
from db.settings import Settings, get_settings
from jobs.scoring.stats import mcnemar_exact_p, paired_difference_interval
from jobs.specs import run_label
from orchestrator.expand import CURATE_BASELINE

QUICK_EVAL = "quick-eval"
NOT_SIGNIFICANT = "not-significant"
MIRAGE = "mirage"
UNLABELLED = "unlabelled"  # a wrong answer no classifier has labelled yet
DIFFERENT_QUESTIONS = "different question sets"
GREEDY = {"name": "greedy", "params": {}}
PAIRING_COLUMNS = ("job_id", "question_id", "correct", "failure_label", "question")


@dataclass(frozen=True)
class Thresholds:
    """The mirage guard's settings (REASONFLEET_QUICK_EVAL_N, _QUICK_EVAL_HALF_WIDTH, _SIGNIFICANCE)."""

    quick_eval_n: int
    quick_eval_half_width: float
    significance: float

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Thresholds:
        s = settings or get_settings()
        return cls(s.quick_eval_n, s.quick_eval_half_width, s.significance)


@dataclass(frozen=True)
class Answer:
    """One question as a run answered it: what pairing, taxonomy and nesting need."""

    correct: bool
    label: str | None = None  # Prediction.failure_label; None for correct answers and unclassified ones
    question: str = ""  # the text: two question sets are the same only if ids and texts agree


Answers = Mapping[str, Answer]  # by question id


# --------------------------------------------------------------------------- pairing (pure)


@dataclass(frozen=True)
class Transitions:
    """The paired 2×2 table of a run against its reference, with the question ids that changed."""

    both_right: int
    regressions: int  # right in the reference, wrong in the run
    fixes: int  # wrong in the reference, right in the run
    both_wrong: int
    regressed: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return self.both_right + self.regressions + self.fixes + self.both_wrong


def same_questions(a: Answers, b: Answers) -> bool:
    """The two runs were asked the same questions: the same ids with the same texts."""
    return a.keys() == b.keys() and all(a[qid].question == b[qid].question for qid in a)


def nested(subset: Answers, larger: Answers) -> bool:
    """Every question of `subset` is in `larger` (same text), and `larger` has more."""
    return len(subset) < len(larger) and all(
        qid in larger and larger[qid].question == answer.question for qid, answer in subset.items()
    )


def transitions(run: Answers, reference: Answers) -> Transitions:
    """Counts on the questions both answered (callers first check that these are all their questions); the
    question ids that changed keep the run's order (the dataset's)."""
    shared = [qid for qid in run if qid in reference]
    cells: dict[tuple[bool, bool], list[str]] = {(r, c): [] for r in (True, False) for c in (True, False)}
    for qid in shared:
        cells[(reference[qid].correct, run[qid].correct)].append(qid)
    return Transitions(
        both_right=len(cells[(True, True)]),
        regressions=len(cells[(True, False)]),
        fixes=len(cells[(False, True)]),
        both_wrong=len(cells[(False, False)]),
        regressed=tuple(cells[(True, False)]),
        fixed=tuple(cells[(False, True)]),
    )


def label_counts(answers: Iterable[Answer]) -> dict[str, int] | None:
    """Failure label → count over the wrong answers, most frequent first; None when none of them is labelled
    (not classified yet); {} when there is nothing wrong."""
    wrong = [a for a in answers if not a.correct]
    if wrong and all(a.label is None for a in wrong):
        return None
    return ordered(Counter(a.label or UNLABELLED for a in wrong))


def ordered(counts: Mapping[str, int]) -> dict[str, int]:
    """Most frequent first, ties by name: every taxonomy is shown in this order."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def top_label(taxonomy: Mapping[str, int] | None) -> str | None:
    """The most frequent failure label with its share of the wrong answers (`relationship 48%`)."""
    labelled = ordered({label: count for label, count in (taxonomy or {}).items() if label != UNLABELLED})
    if not taxonomy or not labelled:
        return None
    label, count = next(iter(labelled.items()))
    return f"{label} {round(100 * count / sum(taxonomy.values()))}%"


def shares(counts: Mapping[str, int] | None, top: int | None = None) -> str:
    """`relationship 48%, arithmetic 38%, unit 8%`: the seed experiment's way of writing a taxonomy."""
    if not counts:
        return "–"
    total = sum(counts.values())
    items = list(counts.items())[:top]
    return ", ".join(f"{label} {round(100 * count / total)}%" for label, count in items)


@dataclass(frozen=True)
class Comparison:
    """A run against its reference; numbers only where both answered the same questions."""

    reference: str  # the reference's run label
    reference_job_id: str
    table: Transitions | None  # None: different question sets
    mcnemar_p: float | None = None
    delta: float | None = None  # pass@1(run) − pass@1(reference) on the shared questions
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None
    regression_taxonomy: dict[str, int] | None = None
    note: str | None = None  # why there are no numbers

    def as_json(self) -> dict[str, Any]:
        """The leaderboard's `vs_base` (a contract: add keys, never rename)."""
        t = self.table
        return {
            "reference": self.reference,
            "both_right": t.both_right if t else None,
            "regressions": t.regressions if t else None,
            "fixes": t.fixes if t else None,
            "both_wrong": t.both_wrong if t else None,
            "mcnemar_p": self.mcnemar_p,
            "delta": self.delta,
            "delta_ci_low": self.delta_ci_low,
            "delta_ci_high": self.delta_ci_high,
            "regression_taxonomy": self.regression_taxonomy,
            "n": t.n if t else None,
            "reference_job_id": self.reference_job_id,
            "note": self.note,
        }


def compare(run: Answers, reference: Answers, *, reference_label: str, reference_job_id: str) -> Comparison:
    """Transitions, exact McNemar p, Δ with Newcombe's paired interval, and the regressions' failure labels."""
    if not same_questions(run, reference) or not run:
        shared = len(run.keys() & reference.keys())
        note = f"{DIFFERENT_QUESTIONS} (this run {len(run)}, reference {len(reference)}, shared ids {shared})"
        return Comparison(reference_label, reference_job_id, table=None, note=note)
    t = transitions(run, reference)
    # Newcombe's table: "first" is the run, "second" the reference, so the interval is for run − reference.
    low, high = paired_difference_interval(t.both_right, t.fixes, t.regressions, t.both_wrong)
    return Comparison(
        reference_label,
        reference_job_id,
        table=t,
        mcnemar_p=mcnemar_exact_p(t.regressions, t.fixes),
        delta=(t.fixes - t.regressions) / t.n,
        delta_ci_low=low,
        delta_ci_high=high,
        regression_taxonomy=label_counts(run[qid] for qid in t.regressed),
    )


# --------------------------------------------------------------------------- flags (pure)


@dataclass(frozen=True)
class Figures:
    """A run's headline numbers, enough to flag it and to show it beside another."""

    sweep_id: str
    sweep: str
    job_id: str
    run: str
    n: int
    pass_at_1: float
    ci_low: float
    ci_high: float

    def as_json(self) -> dict[str, Any]:
        return {
            "sweep": self.sweep,
            "sweep_id": self.sweep_id,
            "job_id": self.job_id,
            "run": self.run,
            "n": self.n,
            "pass_at_1": self.pass_at_1,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        }


@dataclass(frozen=True)
class MirageCheck:
    """The same run on a subset and on a larger question set: the larger set's pass@1 must fall inside the
    subset's interval, else the subset's result was a mirage."""

    subset: Figures
    larger: Figures

    @property
    def mirage(self) -> bool:
        return not self.subset.ci_low <= self.larger.pass_at_1 <= self.subset.ci_high

    def as_json(self) -> dict[str, Any]:
        return {"subset": self.subset.as_json(), "larger": self.larger.as_json(), "mirage": self.mirage}


def flags(figures: Figures, vs_base: Comparison | None, checks: Iterable[MirageCheck], t: Thresholds) -> list[str]:
    """The run's flags, in a fixed order: quick-eval, not-significant, mirage."""
    found = []
    if figures.n < t.quick_eval_n or (figures.ci_high - figures.ci_low) / 2 > t.quick_eval_half_width:
        found.append(QUICK_EVAL)
    if vs_base is not None and vs_base.mcnemar_p is not None and vs_base.mcnemar_p >= t.significance:
        found.append(NOT_SIGNIFICANT)
    if any(check.mirage and check.subset.job_id == figures.job_id for check in checks):
        found.append(MIRAGE)
    return found


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Run:
    """An eval job with its result, as one sweep holds it."""

    figures: Figures
    adapter: str | None
    strategy: str
    spec: dict[str, Any]
    stored_taxonomy: dict[str, int] | None
    perplexity: float | None = None
    run_info: dict[str, Any] | None = None  # what ran: quantization, thinking mode, warnings
    job_label: str = ""

    @property
    def job_id(self) -> str:
        return self.figures.job_id

    @property
    def label(self) -> str:
        return self.figures.run


@dataclass(frozen=True)
class RunAnalysis:
    """What the leaderboard, `show` and `report` add to a run."""

    run: Run
    taxonomy: dict[str, int] | None
    vs_base: Comparison | None
    flags: list[str]
    mirage_checks: list[MirageCheck] = field(default_factory=list)


def sweep_results(session: Session, *, sweep_ids: list[str]) -> list[tuple[Sweep, EvalResult, Job]]:
    """Every eval job with a result in these sweeps, in submission order (a job shared by two sweeps is in each)."""
    return list(
        session.exec(
            select(Sweep, EvalResult, Job)
            .join(SweepJob, col(SweepJob.sweep_id) == col(Sweep.id))
            .join(Job, col(Job.id) == col(SweepJob.job_id))
            .join(EvalResult, col(EvalResult.job_id) == col(Job.id))
            .where(col(Sweep.id).in_(sweep_ids))
            .order_by(col(SweepJob.position))
        ).all()
    )


def runs(session: Session, *, sweep_ids: list[str]) -> list[Run]:
    """Every eval run with a result in these sweeps (a job shared by two sweeps is a run of each)."""
    return [_run(sweep, result, job) for sweep, result, job in sweep_results(session, sweep_ids=sweep_ids)]


def _run(sweep: Sweep, r: EvalResult, job: Job) -> Run:
    label = run_label(r.model, r.adapter, r.strategy)
    figures = Figures(sweep.id, sweep.name, job.id, label, r.n, r.pass_at_1, r.ci_low, r.ci_high)
    return Run(figures, r.adapter, r.strategy, job.spec, r.taxonomy, r.perplexity, r.run_info, job.label)


def answers(session: Session, *, job_ids: Iterable[str]) -> dict[str, dict[str, Answer]]:
    """job id → question id → Answer, without the raw generations (`show --examples` reads those)."""
    ids = sorted(set(job_ids))
    found: dict[str, dict[str, Answer]] = {job_id: {} for job_id in ids}
    # Only the columns pairing needs (by name: load_only takes the class attributes): raw generations are the
    # bulk of the table.
    wanted = load_only(*(getattr(Prediction, name) for name in PAIRING_COLUMNS))
    for start in range(0, len(ids), 500):
        rows = session.exec(
            select(Prediction)
            .options(wanted)
            .where(col(Prediction.job_id).in_(ids[start : start + 500]))
            .order_by(col(Prediction.id))  # the dataset's order
        ).all()
        for p in rows:
            label = None if p.correct else p.failure_label
            found[p.job_id][p.question_id] = Answer(correct=p.correct, label=label, question=p.question)
    return found


def reference_run(sweep_runs: list[Run], named: str | None) -> Run | None:
    """The run a sweep's others are compared with: the one `eval.reference` names (a run label, or a strategy
    of the base model), else the base run (no adapter, greedy with default parameters)."""
    if named is not None:
        by_label = [r for r in sweep_runs if r.label == named]
        by_strategy = [r for r in sweep_runs if r.adapter is None and r.strategy == named]
        matches = by_label or by_strategy
        return matches[0] if matches else None
    base = [
        r for r in sweep_runs
        if r.spec.get("adapter") is None and r.spec.get("strategy") == GREEDY
        and not r.job_label.startswith(CURATE_BASELINE)  # a curate baseline answered other questions
    ]
    # In a quantization grid the full-precision base is the reference: what does 4-bit cost.
    base.sort(key=lambda r: "quantization" in (r.spec.get("model") or {}))
    return base[0] if base else None


def named_reference(sweep: Sweep) -> str | None:
    reference = (sweep.spec.get("eval") or {}).get("reference")
    return reference if isinstance(reference, str) else None


def analyse(
    session: Session, *, sweep_ids: list[str], thresholds: Thresholds | None = None
) -> dict[tuple[str, str], RunAnalysis]:
    """(sweep id, job id) → the run's taxonomy, comparison with its sweep's reference, flags and mirage checks."""
    t = thresholds or Thresholds.from_settings()
    all_runs = runs(session, sweep_ids=sweep_ids)
    sweeps = {s.id: s for s in session.exec(select(Sweep).where(col(Sweep.id).in_(sweep_ids))).all()}
    others = _same_runs_elsewhere(session, all_runs)
    by_job = answers(session, job_ids=[r.job_id for r in all_runs] + [o.job_id for o in others])
    checks = _mirage_checks(all_runs, others, by_job)
    analysed: dict[tuple[str, str], RunAnalysis] = {}
    for sweep_id, sweep in sweeps.items():
        sweep_runs = [r for r in all_runs if r.figures.sweep_id == sweep_id]
        reference = reference_run(sweep_runs, named_reference(sweep))
        for run in sweep_runs:
            vs_base = None
            if reference is not None and run.job_id != reference.job_id:
                vs_base = compare(
                    by_job[run.job_id],
                    by_job[reference.job_id],
                    reference_label=reference.label,
                    reference_job_id=reference.job_id,
                )
            mine = checks.get(run.job_id, [])
            stored = run.stored_taxonomy
            taxonomy = ordered(stored) if stored is not None else label_counts(by_job[run.job_id].values())
            analysed[(sweep_id, run.job_id)] = RunAnalysis(
                run, taxonomy, vs_base, flags(run.figures, vs_base, mine, t), mine
            )
    return analysed


# --------------------------------------------------------------------------- the same run on other question sets


def _identity(run: Run) -> tuple[str, str, str]:
    """What makes two evals "the same run" apart from their questions: label, model and strategy."""
    spec = run.spec
    return run.label, repr(sorted((spec.get("model") or {}).items())), repr(spec.get("strategy"))


def _same_runs_elsewhere(session: Session, shown: list[Run]) -> list[Run]:
    """Eval runs of any sweep with the label of a shown run (each job once, in its newest sweep)."""
    labels = sorted({r.label for r in shown})
    if not labels:
        return []
    found = session.exec(
        select(Sweep, EvalResult, Job)
        .join(SweepJob, col(SweepJob.sweep_id) == col(Sweep.id))
        .join(Job, col(Job.id) == col(SweepJob.job_id))
        .join(EvalResult, col(EvalResult.job_id) == col(Job.id))
        .where(col(Job.label).in_(labels), col(Job.kind) == "eval")
        .order_by(col(Sweep.created_at).desc())
    ).all()
    newest: dict[str, Run] = {}
    for sweep, result, job in found:
        newest.setdefault(job.id, _run(sweep, result, job))
    wanted = {_identity(r) for r in shown}
    return [r for r in newest.values() if _identity(r) in wanted]


def _mirage_checks(shown: list[Run], others: list[Run], by_job: Mapping[str, Answers]) -> dict[str, list[MirageCheck]]:
    """job id → the checks it takes part in, as the subset or as the larger set."""
    checks: dict[str, list[MirageCheck]] = {}
    for run in shown:
        for other in others:
            if other.job_id == run.job_id or _identity(other) != _identity(run):
                continue
            mine, theirs = by_job[run.job_id], by_job[other.job_id]
            if nested(mine, theirs):
                checks.setdefault(run.job_id, []).append(MirageCheck(subset=run.figures, larger=other.figures))
            elif nested(theirs, mine):
                checks.setdefault(run.job_id, []).append(MirageCheck(subset=other.figures, larger=run.figures))
    return checks
