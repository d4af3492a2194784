"""Leaderboard: ranked runs per sweep, rendered as a rich table, Markdown or JSON.

Each run carries what orchestrator.analysis derives: its failure taxonomy, its comparison with the
sweep's reference on the same questions (`vs_base`) and its flags. The JSON keys are a contract for
scripts: add keys, never rename them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rich import box
from rich.table import Table
from sqlmodel import Session, col, select

from db.models import AuditResult, EvalResult, Job, Sweep
from jobs.specs import run_label
from orchestrator.analysis import RunAnalysis, Thresholds, analyse, sweep_results, top_label
from orchestrator.tables import Column, fitted


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
    # Perplexity on the reference solutions (eval.perplexity) and what ran: quantization, compute dtype,
    # thinking mode, warnings (jobs.models.loading.LoadedModel.info); None for rows stored before 0008.
    perplexity: float | None = None
    run_info: dict[str, Any] | None = None
    # orchestrator.analysis: failure label → count over the wrong answers (None: not classified),
    # the comparison with the sweep's reference on the same questions (None for the reference itself
    # or where the sweep has none; numbers None where the questions differ), the flags, and the same
    # run on nested question sets (the mirage check's two sides).
    taxonomy: dict[str, int] | None = None
    vs_base: dict[str, Any] | None = None
    flags: list[str] = field(default_factory=list)
    mirage_checks: list[dict[str, Any]] = field(default_factory=list)
    # lm-evaluation-harness's GSM8K exact match under its two filters (jobs.scoring.lm_eval_compat), the lm-eval
    # task whose rules they follow (gsm8k | gsm8k_cot; None before revision 0006), the prompt preset the run
    # asked with, and a vote's rules ({invalid_votes, normalise}; None for strategies that do not vote).
    strict_match: float | None = None
    flexible_extract: float | None = None
    lm_eval_task: str | None = None
    prompt: str = "zero_shot"
    votes: dict[str, str] | None = None
    # The sweep's train/eval contamination measured at submit (jobs.data.contamination.Overlap.to_json, one
    # per train source); None where no local train source was measured against a local eval file.
    overlap: list[dict[str, Any]] | None = None


def rows(session: Session, *, sweep_ids: list[str], thresholds: Thresholds | None = None) -> list[Row]:
    """Runs with results, best first within each sweep (ties: fewer tokens first); `thresholds` default to the
    settings'."""
    found = sweep_results(session, sweep_ids=sweep_ids)
    ranked = sorted(found, key=lambda t: (sweep_ids.index(t[0].id), -t[1].pass_at_1, t[1].mean_output_tokens))
    audits = _audits(session)
    analysed = analyse(session, sweep_ids=sweep_ids, thresholds=thresholds)
    return [
        _row(
            sweep,
            result,
            audit=audits.get((job.spec.get("adapter") or {}).get("train_job") or ""),
            analysis=analysed.get((sweep.id, job.id)),
            protocol=protocol(job.spec),
        )
        for sweep, result, job in ranked
    ]


def protocol(spec: dict[str, Any]) -> dict[str, Any]:
    """The prompt preset and voting rule an eval job's stored spec records (the defaults where it predates them)."""
    strategy = spec.get("strategy") or {}
    params = strategy.get("params") or {}
    votes = None
    if "n" in params:  # the strategies that vote (jobs.specs.SelfConsistencyParams and its kin)
        votes = {"invalid_votes": params.get("invalid_votes", "skip"), "normalise": params.get("normalise", "numeric")}
    return {"prompt": spec.get("prompt", "zero_shot"), "votes": votes}


def _audits(session: Session) -> dict[str, dict[str, Any]]:
    """Audit figures by the spec hash of the train job whose adapter they audit."""
    found = session.exec(select(AuditResult, Job).join(Job, col(Job.id) == col(AuditResult.job_id))).all()
    keys = ("n", "mean_nll", "correct", "pass_at_1", "ci_low", "ci_high")
    return {job.spec["train_job"]: {k: getattr(audit, k) for k in keys} for audit, job in found}


def _row(
    sweep: Sweep,
    r: EvalResult,
    *,
    audit: dict[str, Any] | None,
    analysis: RunAnalysis | None,
    protocol: dict[str, Any] | None = None,
) -> Row:
    # Every other Row field is an EvalResult column of the same name (taxonomy: analysis's, which falls back
    # to counting the predictions' labels where the result stores none).
    derived = {"taxonomy", "vs_base", "flags", "mirage_checks"}
    stored = {f.name: getattr(r, f.name) for f in fields(Row) if f.name in EvalResult.model_fields.keys() - derived}
    return Row(
        sweep=sweep.name,
        sweep_id=sweep.id,
        run=run_label(r.model, r.adapter, r.strategy),
        audit=audit,
        taxonomy=analysis.taxonomy if analysis else None,
        vs_base=analysis.vs_base.as_json() if analysis and analysis.vs_base else None,
        flags=list(analysis.flags) if analysis else [],
        mirage_checks=[check.as_json() for check in analysis.mirage_checks] if analysis else [],
        overlap=sweep.overlap,
        **(protocol or {}),
        **stored,
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


def delta_cell(vs_base: dict[str, Any] | None) -> str:
    """Δ pass@1 in points with its paired 95% interval; what stands instead where there is no number."""
    if vs_base is None:
        return "–"
    if vs_base["delta"] is None:
        return "different questions"
    delta, low, high = (100 * vs_base[key] for key in ("delta", "delta_ci_low", "delta_ci_high"))
    return f"{delta:+.1f} [{low:+.1f}, {high:+.1f}]"


def transitions_cell(vs_base: dict[str, Any] | None) -> str:
    if vs_base is None or vs_base["regressions"] is None:
        return "–"
    return f"{vs_base['regressions']}/{vs_base['fixes']}"


def p_cell(vs_base: dict[str, Any] | None) -> str:
    p = None if vs_base is None else vs_base["mcnemar_p"]
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def reference_of(group: list[Row]) -> str | None:
    """The run a sweep's others were compared with (the first comparison names it)."""
    return next((row.vs_base["reference"] for row in group if row.vs_base), None)


def comparison_cells(row: Row, reference: str | None) -> list[str]:
    """Δ [95% CI], reg/fix, McNemar p, top failure label, flags."""
    delta = (
        "reference"
        if reference is not None and row.run == reference and row.vs_base is None
        else delta_cell(row.vs_base)
    )
    return [
        delta,
        transitions_cell(row.vs_base),
        p_cell(row.vs_base),
        top_label(row.taxonomy) or "–",
        ", ".join(row.flags) or "–",
    ]


COMPARISON_HEADERS = ("Δ pass@1 [95% CI]", "reg/fix", "McNemar p", "top failure", "flags")


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
    ("lm-eval strict/flex", lambda r: lm_eval_cell(r)),
    ("ppl", lambda r: _opt(r.perplexity, ".2f") if r.perplexity is not None else None),
    ("weights", lambda r: (r.run_info or {}).get("quantization") if (r.run_info or {}).get("quantization") not in
     (None, "none") else None),
)


def lm_eval_cell(row: Row) -> str | None:
    """lm-eval's strict-match / flexible-extract in percent, beside our pass@1; None before revision 0006."""
    if row.strict_match is None or row.flexible_extract is None:
        return None
    return f"{_pct(row.strict_match)}/{_pct(row.flexible_extract)}"


def _tokens_cell(row: Row) -> str:
    return f"{row.mean_output_tokens:.0f}/{_opt(row.median_output_tokens, '.0f')}"


def _memory_cell(row: Row) -> str:
    return f"{row.peak_memory_mb:.0f} ({row.memory_kind})"


# The terminal table's columns; on a narrow terminal the highest `drop` goes first (latency, then memory, ...),
# never the rank, the run or pass@1. The optional columns come from OPTIONAL_COLUMNS, where some run has a value.
CORE_COLUMNS: tuple[Column[tuple[int, Row]], ...] = (
    Column("#", lambda item: str(item[0]), whole=True, justify="right"),
    Column("run", lambda item: item[1].run, min_width=20),
    Column("n", lambda item: str(item[1].n), whole=True, justify="right"),
    Column("pass@1 [95% CI]", lambda item: _interval(item[1]), whole=True, justify="right"),
    Column("tokens mean/med", lambda item: _tokens_cell(item[1]), drop=5, whole=True, justify="right"),
    Column("RES", lambda item: _opt(item[1].res, ".4f"), drop=6, whole=True, justify="right"),
    Column("tok/s", lambda item: f"{item[1].tokens_per_s:.1f}", drop=7, whole=True, justify="right"),
    Column("trunc/loops", lambda item: f"{_opt(item[1].truncated, 'd')}/{_opt(item[1].repetition_loops, 'd')}",
           drop=8, whole=True, justify="right"),
)
TAIL_COLUMNS: tuple[Column[tuple[int, Row]], ...] = (
    Column("peak MB", lambda item: _memory_cell(item[1]), drop=15, whole=True, justify="right"),
    Column("latency s", lambda item: _opt(item[1].mean_latency_s, ".2f"), drop=16, whole=True, justify="right"),
)


def _optional_column(header: str, cell: Callable[[Row], str | None], *, drop: int) -> Column[tuple[int, Row]]:
    def text(item: tuple[int, Row]) -> str:
        return cell(item[1]) or "–"

    return Column(header, text, drop=drop, whole=header != "train-set audit", justify="right")


def as_tables(all_rows: list[Row], width: int = 80) -> list[Table]:
    """One table per sweep that fits `width` (low-value columns dropped first), each followed by its comparison."""
    tables = []
    for (sweep_id, name), group in _grouped(all_rows).items():
        title = f"{name} ({sweep_id}) · {group[0].dataset} · seed {group[0].seed}"
        optional = [
            _optional_column(header, cell, drop=9 + i)
            for i, (header, cell) in enumerate(OPTIONAL_COLUMNS)
            if any(cell(row) is not None for row in group)
        ]
        columns = [*CORE_COLUMNS, *optional, *TAIL_COLUMNS]
        tables.append(fitted(title, columns, list(enumerate(group, 1)), width=width))
        comparison = _comparison_table(group)
        if comparison is not None:
            tables.append(comparison)
    return tables


def _comparison_table(group: list[Row]) -> Table | None:
    """The ranks of the table above against the sweep's reference, on the same questions: kept apart so that
    both fit 80 columns. None when no run has a comparison, a taxonomy or a flag."""
    if not any(row.vs_base or row.taxonomy or row.flags for row in group):
        return None
    reference = reference_of(group)
    # Short: a console that soft-wraps (the CLI's) never wraps a title. Markdown and `report` say the methods.
    title = f"vs {reference}: Δ in points (95% CI), McNemar p" if reference else "no run compared with a reference"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for header in ("#", "Δ pass@1 [95% CI]", "reg/fix", "p", "top failure", "flags"):
        table.add_column(header, justify="left" if header in ("top failure", "flags") else "right")
    for rank, row in enumerate(group, 1):
        table.add_row(str(rank), *comparison_cells(row, reference))
    return table


def _audit_cell(row: Row) -> str:
    if not row.audit:
        return ""
    a = row.audit
    return f"NLL {a['mean_nll']:.2f}, pass@1 {a['correct']}/{a['n']}"


def as_markdown(all_rows: list[Row]) -> str:
    parts = []
    for (sweep_id, name), group in _grouped(all_rows).items():
        reference = reference_of(group)
        parts.append(
            f"## {name} (`{sweep_id}`)\n\n"
            f"Dataset {group[0].dataset}, seed {group[0].seed}; pass@1 with a 95% Wilson interval.\n"
            + _comparison_note(reference)
        )
        headers = ["#", "run", "n", "pass@1 [95% CI]", "mean tokens", "tok/s", "peak MB", *EXTRA_HEADERS]
        parts.append("| " + " | ".join([*headers, *COMPARISON_HEADERS]) + " |")
        parts.append("|---:|---|---:|---:|---:|---:|---:|" + "---:|" * (len(EXTRA_HEADERS) + 3) + "---|---|")
        for rank, row in enumerate(group, 1):
            parts.append(
                f"| {rank} | {row.run} | {row.n} | {_interval(row)} | {row.mean_output_tokens:.1f} "
                f"| {row.tokens_per_s:.1f} | "
                f"{row.peak_memory_mb:.0f} ({row.memory_kind}) | "
                + " | ".join([*_extra_cells(row), *comparison_cells(row, reference)])
                + " |"
            )
        parts.append("")
    return "\n".join(parts)


def _comparison_note(reference: str | None) -> str:
    if reference is None:
        return (
            "No run was compared with a reference (the base model with greedy, or the sweep's `eval.reference`): "
            "the sweep has no reference run, or no other run.\n"
        )
    return (
        f"Δ pass@1 (points, Newcombe's paired 95% interval), regressions/fixes and the exact McNemar p against "
        f"**{reference}** on the same questions.\n"
    )


def as_json(all_rows: list[Row]) -> str:
    return json.dumps([asdict(row) for row in all_rows], indent=2)
