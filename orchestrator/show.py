"""`orchestrator show <run>`: one run's figures, failure taxonomy, its comparison with the sweep's reference
(the regressions and fixes by question id) and, on demand, the raw generations behind them."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import typer
from sqlmodel import Session, col, select

from db import crud
from db.models import EvalResult, Job, Prediction, Sweep, SweepJob
from db.services import prepare_database
from db.session import session_scope
from db.settings import get_settings
from jobs.errors import NotFound, UsageError, one_line_errors
from jobs.scoring.taxonomy import LABELS
from orchestrator.analysis import UNLABELLED, Comparison, RunAnalysis, analyse, shares
from orchestrator.leaderboard import p_cell, protocol

EXAMPLE_KINDS = ("regressions", "fixes", *LABELS, UNLABELLED)


@one_line_errors()
def show_command(
    run: str = typer.Argument(..., help="Job id or run label, as the leaderboard shows it."),
    sweep: str | None = typer.Option(
        None, "--sweep", "-s", help="Sweep id or name (default: the newest sweep with that run)."
    ),
    examples: str | None = typer.Option(
        None, "--examples", "-e", help="Show raw generations: regressions, fixes or a failure label."
    ),
    count: int = typer.Option(5, "-n", help="How many examples."),
) -> None:
    """One run: figures, failure taxonomy, regressions and fixes against the reference, raw generations."""
    check_examples(examples, count)
    prepare_database(get_settings())
    with session_scope() as session:
        text = show(session, ref=run, sweep_ref=sweep, examples=examples, count=count)
    sys.stdout.write(text + "\n")


def check_examples(kind: str | None, count: int) -> None:
    """`--examples` and `-n` before anything is read: one line naming the option."""
    if kind is not None and kind not in EXAMPLE_KINDS:
        raise UsageError(
            f"--examples: expected regressions, fixes or a failure label ({', '.join(LABELS)}), got {kind!r}"
        )
    if count < 1:
        raise UsageError(f"-n: expected at least 1, got {count}")


def find_run(session: Session, *, ref: str, sweep_ref: str | None) -> tuple[str, str]:
    """(sweep id, job id) of a run named by its job id or its label (`SmolLM2 + base · greedy`), in the given
    sweep, else in the newest sweep that has it."""
    sweep_id = None
    if sweep_ref is not None:
        sweep = crud.find_sweep(session, sweep_ref=sweep_ref)
        if sweep is None:
            raise NotFound(f"no sweep {sweep_ref!r}")
        sweep_id = sweep.id
    query = (
        select(SweepJob.sweep_id, Job.id)
        .join(Job, col(Job.id) == col(SweepJob.job_id))
        .join(Sweep, col(Sweep.id) == col(SweepJob.sweep_id))
        .where(col(Job.kind) == "eval", (col(Job.id) == ref) | (col(Job.label) == ref))
        .order_by(col(Sweep.created_at).desc())
    )
    if sweep_id is not None:
        query = query.where(col(SweepJob.sweep_id) == sweep_id)
    found = session.exec(query).first()
    if found is None:
        where = f" in sweep {sweep_ref!r}" if sweep_ref else ""
        raise NotFound(f"no eval run {ref!r}{where} (give a job id or a run label, as the leaderboard shows them)")
    return found[0], found[1]


def show(session: Session, *, ref: str, sweep_ref: str | None, examples: str | None, count: int) -> str:
    """The text `orchestrator show` prints."""
    check_examples(examples, count)
    sweep_id, job_id = find_run(session, ref=ref, sweep_ref=sweep_ref)
    analysis = analyse(session, sweep_ids=[sweep_id]).get((sweep_id, job_id))
    if analysis is None:
        raise NotFound(f"run {ref!r} has no result yet: see `orchestrator status {sweep_id}`")
    lines = [*figures_lines(analysis), *lm_eval_lines(session, analysis)]
    lines += [*taxonomy_lines(analysis.taxonomy), *comparison_lines(analysis.vs_base)]
    lines += mirage_lines(analysis)
    if examples is not None:
        lines += example_lines(session, analysis, examples, count)
    return "\n".join(lines)


def figures_lines(a: RunAnalysis) -> list[str]:
    f = a.run.figures
    return [
        f"{f.run}  (job {f.job_id}, sweep {f.sweep} {f.sweep_id})",
        f"  n {f.n} · pass@1 {100 * f.pass_at_1:.1f}% [{100 * f.ci_low:.1f}, {100 * f.ci_high:.1f}] (95% Wilson)",
        f"  flags: {', '.join(a.flags) or 'none'}",
        *runtime_lines(a.run.perplexity, a.run.run_info),
    ]


def runtime_lines(perplexity: float | None, run_info: dict[str, Any] | None) -> list[str]:
    """What ran (quantization, thinking mode, warnings) and the perplexity, where the run recorded them."""
    lines = [] if perplexity is None else [f"  perplexity on the reference solutions: {perplexity:.3f}"]
    if not run_info:
        return lines
    thinking = run_info.get("thinking") or {}
    switch = "with" if thinking.get("template_switch") else "without"
    lines.append(
        f"  ran: weights {run_info.get('quantization', 'none')} (compute {run_info.get('compute_dtype', '?')}) on "
        f"{run_info.get('device', '?')} · thinking {thinking.get('mode', 'auto')} (template {switch} a switch)"
    )
    lines += [f"  warning: {w}" for w in run_info.get("warnings") or []]
    return lines


def lm_eval_lines(session: Session, a: RunAnalysis) -> list[str]:
    """The prompt preset and voting rule the run used, and lm-eval's two GSM8K scores beside our pass@1."""
    found = protocol(a.run.spec)
    asked = f"  prompt {found['prompt']}"
    if found["votes"]:
        asked += f" · votes: invalid {found['votes']['invalid_votes']}, normalise {found['votes']['normalise']}"
    result = session.exec(select(EvalResult).where(col(EvalResult.job_id) == a.run.job_id)).first()
    if result is None or result.strict_match is None or result.flexible_extract is None:
        return [asked, "  lm-eval scores: none stored (this run was recorded before they existed)"]
    n = a.run.figures.n
    return [
        asked,
        f"  lm-eval {result.lm_eval_task}: strict-match {100 * result.strict_match:.1f}% "
        f"({round(result.strict_match * n)}/{n}) · flexible-extract {100 * result.flexible_extract:.1f}% "
        f"({round(result.flexible_extract * n)}/{n})",
    ]


def taxonomy_lines(taxonomy: dict[str, int] | None) -> list[str]:
    if taxonomy is None:
        return ["failure taxonomy: none stored (this run was recorded before failure labels existed)"]
    if not taxonomy:
        return ["failure taxonomy: no wrong answers"]
    total = sum(taxonomy.values())
    width = max(len(label) for label in taxonomy)
    lines = [f"failure taxonomy ({total} wrong answers):"]
    lines += [f"  {label:<{width}}  {count:>5}  {100 * count / total:3.0f}%" for label, count in taxonomy.items()]
    return lines


def comparison_lines(vs: Comparison | None) -> list[str]:
    if vs is None:
        return ["vs base: none (this run is the reference, or the sweep has no base run with greedy)"]
    head = f"vs {vs.reference} (job {vs.reference_job_id})"
    t = vs.table
    if t is None or vs.delta is None or vs.delta_ci_low is None or vs.delta_ci_high is None:
        return [f"{head}: no comparison, {vs.note}"]
    return [
        f"{head}, on the same {t.n} questions:",
        f"  both right {t.both_right} · regressions {t.regressions} · fixes {t.fixes} · both wrong {t.both_wrong}",
        f"  Δ pass@1 {100 * vs.delta:+.1f} points [{100 * vs.delta_ci_low:+.1f}, {100 * vs.delta_ci_high:+.1f}]"
        f" (Newcombe paired 95%) · exact McNemar p {p_cell(vs.as_json())}",
        f"  regressions by failure label: {shares(vs.regression_taxonomy)}",
        f"  regressions ({t.regressions}): {_ids(t.regressed)}",
        f"  fixes ({t.fixes}): {_ids(t.fixed)}",
    ]


def _ids(ids: Iterable[str]) -> str:
    return ", ".join(ids) or "none"


def mirage_lines(a: RunAnalysis) -> list[str]:
    lines = []
    for check in a.mirage_checks:
        s, big = check.subset, check.larger
        verdict = "MIRAGE: outside the subset's interval" if check.mirage else "inside the subset's interval"
        lines.append(
            f"same run on nested questions: n {s.n} ({s.sweep}) {100 * s.pass_at_1:.1f}% "
            f"[{100 * s.ci_low:.1f}, {100 * s.ci_high:.1f}] vs n {big.n} ({big.sweep}) {100 * big.pass_at_1:.1f}%: "
            + verdict
        )
    return lines


# --------------------------------------------------------------------------- raw generations


@dataclass(frozen=True)
class _Example:
    mine: Prediction
    reference: Prediction | None


def example_lines(session: Session, a: RunAnalysis, kind: str, count: int) -> list[str]:
    selected = _selected(session, a, kind)
    shown = selected[:count]
    lines = ["", f"examples: {kind}, {len(shown)} of {len(selected)}"]
    reference_job = a.vs_base.reference_job_id if a.vs_base and kind in ("regressions", "fixes") else None
    for example in _examples(session, a.run.job_id, reference_job, shown):
        lines += _example(example)
    return lines


def _selected(session: Session, a: RunAnalysis, kind: str) -> list[str]:
    """The question ids of the kind asked for, in the dataset's order."""
    if kind in ("regressions", "fixes"):
        t = a.vs_base.table if a.vs_base else None
        if t is None:
            raise UsageError(f"--examples {kind}: this run has no comparison with a reference on the same questions")
        return list(t.regressed if kind == "regressions" else t.fixed)
    label = None if kind == UNLABELLED else kind
    query = select(Prediction.question_id).where(
        col(Prediction.job_id) == a.run.job_id, col(Prediction.correct).is_(False), Prediction.failure_label == label
    )
    return list(session.exec(query.order_by(col(Prediction.id))).all())


def _examples(session: Session, job_id: str, reference_job: str | None, ids: list[str]) -> list[_Example]:
    if not ids:
        return []
    jobs = [job_id] if reference_job is None else [job_id, reference_job]
    found = session.exec(
        select(Prediction).where(col(Prediction.job_id).in_(jobs), col(Prediction.question_id).in_(ids))
    ).all()
    by_key = {(p.job_id, p.question_id): p for p in found}
    return [
        _Example(by_key[(job_id, qid)], by_key.get((reference_job or "", qid)))
        for qid in ids
        if (job_id, qid) in by_key
    ]


def _example(e: _Example) -> list[str]:
    p = e.mine
    verdict = "right" if p.correct else f"wrong ({p.failure_label or UNLABELLED})"
    lines = [
        "",
        f"── {p.question_id} · {verdict} · reference answer {p.reference_answer} · extracted {p.extracted_answer}",
        f"question: {p.question}",
    ]
    if p.failure_evidence:
        lines.append(f"evidence: {p.failure_evidence}")
    if p.failure_reading:
        lines.append(f"reading: {p.failure_reading}")
    lines += ["generation:", p.raw_output]
    if e.reference is not None:
        r = e.reference
        lines += [
            f"reference run's generation ({'right' if r.correct else 'wrong'}, extracted {r.extracted_answer}):",
            r.raw_output,
        ]
    return lines
