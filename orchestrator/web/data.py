"""What the site's pages show, as JSON-ready dicts: every page renders one of these, and its `/api/...` twin
returns it as it is. Read-only queries through the layers the CLI uses."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from db import crud, fleet
from db.models import EvalResult, Job, Prediction, Sweep, SweepJob, TrainResult
from db.settings import get_settings
from db.states import TERMINAL, JobState
from jobs.errors import NotFound
from jobs.specs import run_label
from orchestrator import leaderboard as board
from orchestrator.analysis import UNLABELLED, RunAnalysis, analyse, sweep_results
from orchestrator.fleet_view import waiting_reasons, worker_rows
from orchestrator.show import EXAMPLE_KINDS, find_run

# `?show=` on a run page: every question, the right or wrong ones, the comparison's two sides, or a label.
QUESTION_FILTERS = ("all", "right", "wrong", *EXAMPLE_KINDS)


# --------------------------------------------------------------------------- sweeps and progress


def find_sweep(session: Session, ref: str) -> Sweep:
    found = crud.find_sweep(session, sweep_ref=ref)
    if found is None:
        raise NotFound(f"no sweep {ref!r} (give a sweep id or name)")
    return found


def progress(session: Session, sweep_id: str) -> dict[str, Any]:
    """Jobs by state, and the running jobs' own progress: what the live bar draws."""
    jobs = crud.sweep_jobs(session, sweep_id=sweep_id)
    return progress_of(sweep_id, jobs)


def progress_of(sweep_id: str, jobs: list[Job]) -> dict[str, Any]:
    counts = Counter(JobState(job.state).value for job in jobs)
    ended = sum(counts[state.value] for state in TERMINAL)
    running = [
        {"job_id": j.id, "label": j.label, "done": j.progress_done, "total": j.progress_total}
        for j in jobs
        if j.state == JobState.running
    ]
    return {
        "sweep_id": sweep_id,
        "total": len(jobs),
        "ended": ended,
        "finished": ended == len(jobs),
        "counts": {state.value: counts[state.value] for state in JobState},
        "running": running,
    }


def sweep_summary(sweep: Sweep, jobs: list[Job]) -> dict[str, Any]:
    return {
        "id": sweep.id,
        "name": sweep.name,
        "seed": sweep.seed,
        "created_at": sweep.created_at.isoformat(timespec="seconds"),
        "progress": progress_of(sweep.id, jobs),
    }


def sweeps(session: Session) -> list[dict[str, Any]]:
    """Every sweep, newest first, with its jobs by state, its number of runs with results and its best run."""
    found = session.exec(select(Sweep).order_by(col(Sweep.created_at).desc())).all()
    results: dict[str, list[tuple[str, EvalResult]]] = {}
    for sweep, result, job in sweep_results(session, sweep_ids=[s.id for s in found]):
        results.setdefault(sweep.id, []).append((job.id, result))
    return [
        {**sweep_summary(sweep, crud.sweep_jobs(session, sweep_id=sweep.id)), **_best(results.get(sweep.id, []))}
        for sweep in found
    ]


def _best(results: list[tuple[str, EvalResult]]) -> dict[str, Any]:
    """The leaderboard's first row in brief: the highest pass@1, ties to fewer tokens."""
    if not results:
        return {"runs": 0, "best": None}
    job_id, r = min(results, key=lambda item: (-item[1].pass_at_1, item[1].mean_output_tokens))
    best = {"job_id": job_id, "run": run_label(r.model, r.adapter, r.strategy), "pass_at_1": r.pass_at_1, "n": r.n}
    return {"runs": len(results), "best": best}


def sweep_page(session: Session, ref: str) -> dict[str, Any]:
    """A sweep: its progress, its leaderboard (the CLI's JSON rows), its jobs and why queued ones wait."""
    sweep = find_sweep(session, ref)
    jobs = crud.sweep_jobs(session, sweep_id=sweep.id)
    rows = leaderboard(session, sweep.id)
    waiting = waiting_reasons(jobs, fleet.list_workers(session))
    return {
        **sweep_summary(sweep, jobs),
        "dataset": rows[0]["dataset"] if rows else None,
        "reference": next((r["vs_base"]["reference"] for r in rows if r["vs_base"]), None),
        "leaderboard": rows,
        "jobs": [_job(job, waiting.get(job.id)) for job in jobs],
    }


def _job(job: Job, waits: str | None) -> dict[str, Any]:
    error = (job.error or "").strip().splitlines()
    return {
        "id": job.id,
        "kind": job.kind,
        "label": job.label,
        "state": JobState(job.state).value,
        "done": job.progress_done,
        "total": job.progress_total,
        "attempts": job.attempts,
        "worker": job.worker,
        "error": error[0] if error else None,
        "waits": waits,
    }


def leaderboard(session: Session, sweep_id: str) -> list[dict[str, Any]]:
    """The rows `orchestrator leaderboard --sweep <id> --format json` prints, best first."""
    return [asdict(row) for row in board.rows(session, sweep_ids=[sweep_id])]


# --------------------------------------------------------------------------- the sweep's plots' data


def loss_curves(session: Session, sweep_id: str) -> list[dict[str, Any]]:
    """Each train job of the sweep with a result: its label and loss per optimiser step."""
    found = session.exec(
        select(Job.id, Job.label, TrainResult.loss_curve, TrainResult.mode)
        .join(SweepJob, col(SweepJob.job_id) == col(Job.id))
        .join(TrainResult, col(TrainResult.job_id) == col(Job.id))
        .where(col(SweepJob.sweep_id) == sweep_id)
        .order_by(col(SweepJob.position))
    ).all()
    return [{"job_id": i, "label": label, "loss": list(loss), "mode": mode} for i, label, loss, mode in found]


def pass_by_complexity(session: Session, rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """run → [{complexity, n, correct, pass_at_1}] from the stored predictions; empty where the questions all
    have one complexity (nothing to plot)."""
    runs = {row["job_id"]: row["run"] for row in rows}
    found = session.exec(
        select(
            Prediction.job_id,
            Prediction.complexity,
            func.count(),
            func.sum(case((col(Prediction.correct), 1), else_=0)),
        )
        .where(col(Prediction.job_id).in_(list(runs)))
        .group_by(col(Prediction.job_id), col(Prediction.complexity))
        .order_by(col(Prediction.complexity))
    ).all()
    if len({complexity for _, complexity, _, _ in found}) < 2:
        return {}
    by_run: dict[str, list[dict[str, Any]]] = {}
    for job_id, complexity, n, correct in found:
        point = {"complexity": complexity, "n": n, "correct": int(correct), "pass_at_1": int(correct) / n}
        by_run.setdefault(runs[job_id], []).append(point)
    return by_run


# --------------------------------------------------------------------------- one run


def run_page(session: Session, ref: str, sweep_ref: str | None = None) -> dict[str, Any]:
    """A run: its leaderboard row, the question ids that changed against the reference, and its sweep."""
    sweep_id, job_id = find_run(session, ref=ref, sweep_ref=sweep_ref)
    analysis = analyse(session, sweep_ids=[sweep_id]).get((sweep_id, job_id))
    if analysis is None:
        raise NotFound(f"run {ref!r} has no result yet")
    row = next(r for r in leaderboard(session, sweep_id) if r["job_id"] == job_id)
    table = analysis.vs_base.table if analysis.vs_base else None
    return {
        "sweep": {"id": sweep_id, "name": row["sweep"]},
        "run": row,
        "regressed": list(table.regressed) if table else [],
        "fixed": list(table.fixed) if table else [],
    }


def questions(
    session: Session, ref: str, *, show: str, limit: int, offset: int, sweep_ref: str | None = None
) -> dict[str, Any]:
    """The run's questions that `show` selects (in the dataset's order) with their raw generations; for
    regressions and fixes also the reference run's generation of the same question."""
    sweep_id, job_id = find_run(session, ref=ref, sweep_ref=sweep_ref)
    analysis = analyse(session, sweep_ids=[sweep_id]).get((sweep_id, job_id))
    if analysis is None:
        raise NotFound(f"run {ref!r} has no result yet")
    mine = _predictions(session, job_id)
    selected = [p for p in mine if _selects(p, show, analysis)]
    page = selected[offset : offset + limit]
    reference = _reference_predictions(session, analysis, show, [p.question_id for p in page])
    return {
        "job_id": job_id,
        "show": show,
        "total": len(selected),
        "offset": offset,
        "limit": limit,
        "labels": dict(Counter(p.failure_label or UNLABELLED for p in mine if not p.correct)),
        "questions": [_question(p, reference.get(p.question_id)) for p in page],
    }


def _predictions(session: Session, job_id: str) -> list[Prediction]:
    query = select(Prediction).where(col(Prediction.job_id) == job_id).order_by(col(Prediction.id))
    return list(session.exec(query).all())


def _selects(p: Prediction, show: str, analysis: RunAnalysis) -> bool:
    table = analysis.vs_base.table if analysis.vs_base else None
    if show in ("regressions", "fixes"):
        ids = (table.regressed if show == "regressions" else table.fixed) if table else ()
        return p.question_id in ids
    if show in ("all", "right", "wrong"):
        return show == "all" or p.correct == (show == "right")
    return not p.correct and (p.failure_label or UNLABELLED) == show


def _reference_predictions(
    session: Session, analysis: RunAnalysis, show: str, ids: list[str]
) -> dict[str, Prediction]:
    if not ids or analysis.vs_base is None or show not in ("regressions", "fixes"):
        return {}
    query = select(Prediction).where(
        col(Prediction.job_id) == analysis.vs_base.reference_job_id, col(Prediction.question_id).in_(ids)
    )
    return {p.question_id: p for p in session.exec(query).all()}


def _question(p: Prediction, reference: Prediction | None) -> dict[str, Any]:
    shown = {
        "question_id": p.question_id,
        "question": p.question,
        "correct": p.correct,
        "reference_answer": p.reference_answer,
        "extracted_answer": p.extracted_answer,
        "label": None if p.correct else (p.failure_label or UNLABELLED),
        "exact": p.failure_exact,
        "evidence": p.failure_evidence,
        "reading": p.failure_reading,
        "output_tokens": p.output_tokens,
        "complexity": p.complexity,
        "truncated": p.truncated,
        "raw_output": p.raw_output,
        "reference_run": None,
    }
    if reference is not None:
        shown["reference_run"] = {
            "correct": reference.correct,
            "extracted_answer": reference.extracted_answer,
            "raw_output": reference.raw_output,
        }
    return shown


# --------------------------------------------------------------------------- the fleet


def fleet_page(session: Session) -> dict[str, Any]:
    """Registered workers with their state, and the queued jobs no live worker can hold, with the reason."""
    settings = get_settings()
    workers = fleet.list_workers(session)
    queued = list(session.exec(select(Job).where(col(Job.state) == JobState.queued).order_by(col(Job.queued_at))))
    reasons = waiting_reasons(queued, workers)
    return {
        "embedded": settings.embedded,
        "workers": worker_rows(workers),
        "queued": [
            {"id": job.id, "kind": job.kind, "label": job.label, "queue": job.queue, "reason": reasons.get(job.id)}
            for job in queued
        ],
        "flower_url": settings.flower_url,
    }
