"""Leaderboard: ranked runs per sweep, rendered as a rich table, Markdown or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from rich.table import Table
from sqlmodel import Session, col, select

from db.models import AuditResult, EvalResult, Job, Sweep, SweepJob
from jobs.specs import run_label


@dataclass(frozen=True)
class Row:
    sweep: str
    sweep_id: str
    run: str
    model: str
    adapter: str | None
    strategy: str
    dataset: str
    n: int
    correct: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    mean_output_tokens: float
    tokens_per_s: float
    wall_s: float
    peak_memory_mb: float
    memory_kind: str
    device: str
    seed: int
    job_id: str
    audit: dict[str, Any] | None = (
        None  # the adapter's memorisation audit: {n, mean_nll, correct, pass_at_1, ci_low, ci_high}
    )
    # jobs.scoring.metrics; None for rows stored before they existed or where they do not apply.
    median_output_tokens: float | None = None
    mean_thinking_tokens: float | None = None
    mean_answer_tokens: float | None = None
    res: float | None = None
    mean_latency_s: float | None = None
    truncated: int | None = None
    repetition_loops: int | None = None
    fixes: int | None = None
    breaks: int | None = None
    mean_agreement: float | None = None


def rows(session: Session, *, sweep_ids: list[str]) -> list[Row]:
    """Runs with results, best first within each sweep (ties: fewer tokens first)."""
    found = session.exec(
        select(Sweep, EvalResult, Job)
        .join(SweepJob, col(SweepJob.sweep_id) == col(Sweep.id))
        .join(Job, col(Job.id) == col(SweepJob.job_id))
        .join(EvalResult, col(EvalResult.job_id) == col(Job.id))
        .where(col(Sweep.id).in_(sweep_ids))
    ).all()
    ranked = sorted(found, key=lambda t: (sweep_ids.index(t[0].id), -t[1].pass_at_1, t[1].mean_output_tokens))
    audits = _audits(session)
    return [
        _row(sweep, result, audit=audits.get((job.spec.get("adapter") or {}).get("train_job") or ""))
        for sweep, result, job in ranked
    ]


def _audits(session: Session) -> dict[str, dict[str, Any]]:
    """Audit figures by the spec hash of the train job whose adapter they audit."""
    found = session.exec(select(AuditResult, Job).join(Job, col(Job.id) == col(AuditResult.job_id))).all()
    keys = ("n", "mean_nll", "correct", "pass_at_1", "ci_low", "ci_high")
    return {job.spec["train_job"]: {k: getattr(audit, k) for k in keys} for audit, job in found}


def _row(sweep: Sweep, r: EvalResult, *, audit: dict[str, Any] | None) -> Row:
    # Every other Row field is an EvalResult column of the same name.
    stored = {f.name: getattr(r, f.name) for f in fields(Row) if f.name in EvalResult.model_fields}
    return Row(
        sweep=sweep.name, sweep_id=sweep.id, run=run_label(r.model, r.adapter, r.strategy), audit=audit, **stored
    )


def _opt(value: float | int | None, spec: str = ".1f") -> str:
    return "–" if value is None else format(value, spec)


def _extra_cells(row: Row) -> list[str]:
    """Cells of the metrics columns: median tokens, think/answer split, RES, latency, truncated, loops,
    fix/break, agreement."""
    split = (
        "–"
        if row.mean_thinking_tokens is None
        else f"{row.mean_thinking_tokens:.0f}/{_opt(row.mean_answer_tokens, '.0f')}"
    )
    fix_break = "–" if row.fixes is None else f"{row.fixes}/{row.breaks}"
    agreement = "–" if row.mean_agreement is None else f"{100 * row.mean_agreement:.0f}%"
    return [
        _opt(row.median_output_tokens, ".0f"),
        split,
        _opt(row.res, ".4f"),
        _opt(row.mean_latency_s, ".2f"),
        _opt(row.truncated, "d"),
        _opt(row.repetition_loops, "d"),
        fix_break,
        agreement,
    ]


EXTRA_HEADERS = ("median tok", "think/answer", "RES", "latency s", "trunc", "loops", "fix/break", "agree")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _interval(row: Row) -> str:
    return f"{_pct(row.pass_at_1)}% [{_pct(row.ci_low)}, {_pct(row.ci_high)}]"


def _grouped(all_rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in all_rows:
        groups.setdefault((row.sweep_id, row.sweep), []).append(row)
    return groups


# Terminal columns beyond the core ones, each shown only where some run of the sweep has a value
# (Markdown and JSON carry every metric; a terminal has 80 columns to spare).
OPTIONAL_COLUMNS: tuple[tuple[str, Callable[[Row], str | None]], ...] = (
    (
        "think/answer",
        lambda r: (
            None
            if r.mean_thinking_tokens is None
            else f"{r.mean_thinking_tokens:.0f}/{_opt(r.mean_answer_tokens, '.0f')}"
        ),
    ),
    ("fix/break", lambda r: None if r.fixes is None else f"{r.fixes}/{r.breaks}"),
    ("agree", lambda r: None if r.mean_agreement is None else f"{100 * r.mean_agreement:.0f}%"),
    ("train-set audit", lambda r: _audit_cell(r) if r.audit else None),
)


def as_tables(all_rows: list[Row]) -> list[Table]:
    tables = []
    for (sweep_id, name), group in _grouped(all_rows).items():
        table = Table(title=f"{name} ({sweep_id}) · {group[0].dataset} · seed {group[0].seed}", title_justify="left")
        optional = [(h, cell) for h, cell in OPTIONAL_COLUMNS if any(cell(row) is not None for row in group)]
        for header in (
            "#",
            "run",
            "n",
            "pass@1 [95% CI]",
            "tokens mean/med",
            "RES",
            "tok/s",
            "trunc/loops",
            *(h for h, _ in optional),
        ):
            table.add_column(
                header, justify="left" if header == "run" else "right", min_width=24 if header == "run" else None
            )
        for rank, row in enumerate(group, 1):
            table.add_row(
                str(rank),
                row.run,
                str(row.n),
                _interval(row),
                f"{row.mean_output_tokens:.0f}/{_opt(row.median_output_tokens, '.0f')}",
                _opt(row.res, ".4f"),
                f"{row.tokens_per_s:.1f}",
                f"{_opt(row.truncated, 'd')}/{_opt(row.repetition_loops, 'd')}",
                *(cell(row) or "–" for _, cell in optional),
            )
        tables.append(table)
    return tables


def _audit_cell(row: Row) -> str:
    if not row.audit:
        return ""
    a = row.audit
    return f"NLL {a['mean_nll']:.2f}, pass@1 {a['correct']}/{a['n']}"


def as_markdown(all_rows: list[Row]) -> str:
    parts = []
    for (sweep_id, name), group in _grouped(all_rows).items():
        parts.append(
            f"## {name} (`{sweep_id}`)\n\n"
            f"Dataset {group[0].dataset}, seed {group[0].seed}; pass@1 with a 95% Wilson interval.\n"
        )
        parts.append(
            "| # | run | n | pass@1 [95% CI] | mean tokens | tok/s | peak MB | " + " | ".join(EXTRA_HEADERS) + " |"
        )
        parts.append("|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(EXTRA_HEADERS))
        for rank, row in enumerate(group, 1):
            parts.append(
                f"| {rank} | {row.run} | {row.n} | {_interval(row)} | {row.mean_output_tokens:.1f} "
                f"| {row.tokens_per_s:.1f} | "
                f"{row.peak_memory_mb:.0f} ({row.memory_kind}) | " + " | ".join(_extra_cells(row)) + " |"
            )
        parts.append("")
    return "\n".join(parts)


def as_json(all_rows: list[Row]) -> str:
    return json.dumps([asdict(row) for row in all_rows], indent=2)
