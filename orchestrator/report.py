"""`orchestrator report <sweep> -o DIR`: one Markdown file that says what a sweep found and how far to trust it —
the leaderboard, the comparisons with the reference, the failure taxonomies, the flags, the adapters' audits,
and what it takes to reproduce it (seed, config hash, versions)."""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from sqlmodel import Session

from db import crud
from db.models import Sweep
from db.services import prepare_database
from db.session import session_scope
from db.settings import get_settings
from jobs.errors import NotFound, UsageError, one_line_errors
from orchestrator.analysis import MIRAGE, NOT_SIGNIFICANT, QUICK_EVAL, UNLABELLED, Thresholds, ordered, shares
from orchestrator.leaderboard import Row, as_markdown, delta_cell, p_cell, reference_of, rows

VERSIONED = ("reasonfleet", "torch", "transformers", "peft")


@one_line_errors()
def report_command(
    sweep: str | None = typer.Argument(None, help="Sweep id or name (default: the newest)."),
    output: Path = typer.Option(
        Path("results"), "--output", "-o", help="Directory to write <sweep>-<id>.md into (made if missing)."
    ),
) -> None:
    """A Markdown report of a sweep: leaderboard, comparisons, failure taxonomies, flags, audits, provenance."""
    check_directory(output)
    prepare_database(get_settings())
    with session_scope() as session:
        found = crud.find_sweep(session, sweep_ref=sweep) if sweep else crud.latest_sweep(session)
        if found is None:
            raise NotFound(f"no sweep {sweep!r}" if sweep else "no sweeps yet")
        path = write_report(session, sweep=found, directory=output)
    Console(stderr=True, soft_wrap=True).print(f"wrote {path}", highlight=False)


def report_path(directory: Path, sweep: Sweep) -> Path:
    return directory / f"{sweep.name}-{sweep.id}.md"


def check_directory(directory: Path) -> None:
    """`-o` before anything is computed: an existing file, or a directory that cannot be made, is refused."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"-o {directory}: exists and is not a directory")


def write_report(session: Session, *, sweep: Sweep, directory: Path, thresholds: Thresholds | None = None) -> Path:
    t = thresholds or Thresholds.from_settings()
    text = render(sweep, rows(session, sweep_ids=[sweep.id], thresholds=t), t)
    path = report_path(directory, sweep)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise UsageError(f"-o {directory}: {error.strerror or error}") from None
    return path


def render(sweep: Sweep, runs: list[Row], t: Thresholds) -> str:
    """The report's Markdown: the same rows always give the same text."""
    sections = [
        f"# {sweep.name}: report\n",
        *provenance(sweep, runs, t),
        "## Leaderboard\n",
        re.sub(r"(?m)^## ", "### ", as_markdown(runs)).strip() if runs else "No results yet.",
        "",
        *comparisons(runs),
        *taxonomy_tables(runs),
        *flag_lines(runs, t),
        *audit_table(runs),
        "## Sweep file\n",
        "```yaml",
        yaml.safe_dump(sweep.spec, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
    ]
    return "\n".join(sections)


def provenance(sweep: Sweep, runs: list[Row], t: Thresholds) -> list[str]:
    devices = sorted({row.device for row in runs}) or ["–"]
    versions = " · ".join([f"python {platform.python_version()}", *(_version(name) for name in VERSIONED)])
    return [
        "| | |",
        "|---|---|",
        f"| sweep | {sweep.name} (`{sweep.id}`), submitted {sweep.created_at:%Y-%m-%d %H:%M} UTC |",
        f"| config hash | `{sweep.spec_hash}` |",
        f"| seed | {sweep.seed} |",
        f"| dataset | {runs[0].dataset if runs else '–'} |",
        f"| devices | {', '.join(devices)} |",
        f"| versions | {versions} (this installation, when the report was written) |",
        f"| flags | `{QUICK_EVAL}`: n < {t.quick_eval_n} or 95% interval wider than "
        f"±{100 * t.quick_eval_half_width:g} points; `{NOT_SIGNIFICANT}`: McNemar p ≥ {t.significance:g}; "
        f"`{MIRAGE}`: the same run on a larger question set scored outside this run's interval |",
        "",
    ]


def _version(name: str) -> str:
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} not installed"


def comparisons(runs: list[Row]) -> list[str]:
    reference = reference_of(runs)
    if reference is None:
        return [
            "## Comparisons\n",
            "No run was compared with a reference (the base model with greedy, or `eval.reference`): "
            "the sweep has no reference run, or no other run.",
            "",
        ]
    lines = [
        f"## Comparisons against {reference}\n",
        "Each run against the reference on the same questions: the paired table, Δ pass@1 in points with "
        "Newcombe's paired 95% interval (method 10), the exact McNemar p on the discordant pairs, and the failure "
        "labels of the regressions alone.\n",
        "| run | n | both right | regressions | fixes | both wrong | Δ pass@1 [95% CI] | McNemar p "
        "| regressions by failure label |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in runs:
        vs = row.vs_base
        if vs is None:
            continue
        if vs["n"] is None:
            lines.append(f"| {row.run} | {row.n} | {vs['note']} | | | | | | |")
            continue
        cells = [vs[key] for key in ("n", "both_right", "regressions", "fixes", "both_wrong")]
        lines.append(
            f"| {row.run} | "
            + " | ".join(str(c) for c in cells)
            + f" | {delta_cell(vs)} | {p_cell(vs)} | {shares(vs['regression_taxonomy'])} |"
        )
    return [*lines, ""]


def taxonomy_tables(runs: list[Row]) -> list[str]:
    labelled = [row for row in runs if row.taxonomy]
    if not labelled:
        return ["## Failure taxonomy\n", "No run's wrong answers are classified yet (`orchestrator classify`).", ""]
    lines = ["## Failure taxonomy\n", "Wrong answers by failure label (count and share of the run's wrong answers).\n"]
    lines += _label_table([(row.run, row.taxonomy or {}) for row in labelled], "wrong")
    regressions = [(row.run, row.vs_base["regression_taxonomy"]) for row in runs if row.vs_base]
    regressions = [(run, counts) for run, counts in regressions if counts]
    if regressions:
        lines += [
            "",
            "### Regressions by failure label\n",
            "The questions the reference got right and the run got wrong.\n",
        ]
        lines += _label_table(regressions, "regressions")
    return [*lines, ""]


def _label_table(counted: list[tuple[str, dict[str, int]]], total_header: str) -> list[str]:
    labels = list(ordered(_sum(counts for _, counts in counted)))
    if UNLABELLED in labels:  # last: it is not a cause
        labels = [label for label in labels if label != UNLABELLED] + [UNLABELLED]
    lines = [f"| run | {total_header} | " + " | ".join(labels) + " |", "|---|---:|" + "---:|" * len(labels)]
    for run, counts in counted:
        total = sum(counts.values())
        cells = [
            f"{counts[label]} ({100 * counts[label] / total:.0f}%)" if counts.get(label) else "–" for label in labels
        ]
        lines.append(f"| {run} | {total} | " + " | ".join(cells) + " |")
    return lines


def _sum(many: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in many:
        for label, count in counts.items():
            total[label] = total.get(label, 0) + count
    return total


def flag_lines(runs: list[Row], t: Thresholds) -> list[str]:
    lines = ["## Flags\n"]
    for row in runs:
        for flag in row.flags:
            lines.append(f"- **{row.run}**: `{flag}`: {_why(row, flag, t)}")
    checks = [check for row in runs for check in row.mirage_checks]
    if checks:
        lines += [
            "",
            "### The same runs on nested question sets\n",
            "| run | subset | larger set | |",
            "|---|---|---|---|",
        ]
        seen = set()
        for check in checks:
            small, big = check["subset"], check["larger"]
            if (small["job_id"], big["job_id"]) in seen:
                continue
            seen.add((small["job_id"], big["job_id"]))
            verdict = f"`{MIRAGE}`" if check["mirage"] else "confirmed"
            lines.append(f"| {small['run']} | {_figures(small, interval=True)} | {_figures(big)} | {verdict} |")
    if len(lines) == 1:
        lines.append("No run is flagged.")
    return [*lines, ""]


def _why(row: Row, flag: str, t: Thresholds) -> str:
    if flag == QUICK_EVAL:
        half = 100 * (row.ci_high - row.ci_low) / 2
        limit = 100 * t.quick_eval_half_width
        return f"n {row.n} (threshold {t.quick_eval_n}), 95% interval ±{half:.1f} points (threshold ±{limit:g})"
    if flag == NOT_SIGNIFICANT and row.vs_base:
        return f"McNemar p {p_cell(row.vs_base)} against {row.vs_base['reference']} (threshold {t.significance:g})"
    if flag == MIRAGE:
        larger = [c["larger"] for c in row.mirage_checks if c["mirage"] and c["subset"]["job_id"] == row.job_id]
        return "; ".join(
            f"on {big['n']} questions ({big['sweep']}) it scored {100 * big['pass_at_1']:.1f}%, outside "
            f"[{100 * row.ci_low:.1f}, {100 * row.ci_high:.1f}]"
            for big in larger
        )
    return ""


def _figures(f: Mapping[str, Any], *, interval: bool = False) -> str:
    text = f"n {f['n']} ({f['sweep']}): {100 * f['pass_at_1']:.1f}%"
    if interval:
        text += f" [{100 * f['ci_low']:.1f}, {100 * f['ci_high']:.1f}]"
    return text


def audit_table(runs: list[Row]) -> list[str]:
    audited = {row.adapter: row.audit for row in runs if row.adapter and row.audit}
    if not audited:
        return []
    lines = [
        "## Memorisation audits\n",
        "Each adapter on its own training examples: teacher-forced NLL and greedy pass@1 (95% Wilson).\n",
        "| adapter | n | mean NLL | pass@1 [95% CI] |",
        "|---|---:|---:|---:|",
    ]
    for adapter, a in audited.items():
        lines.append(
            f"| {adapter} | {a['n']} | {a['mean_nll']:.3f} | {100 * a['pass_at_1']:.1f}% "
            f"[{100 * a['ci_low']:.1f}, {100 * a['ci_high']:.1f}] |"
        )
    return [*lines, ""]
