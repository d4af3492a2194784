"""The web leaderboard's columns: what each cell shows and the value it sorts by, from a leaderboard JSON row.

Every column of the terminal and Markdown leaderboards is here; the texts come from the same helpers
(`orchestrator.leaderboard`), so the page reads like the CLI. Keys a newer leaderboard adds (the JSON is a
contract: keys are added, never renamed) show as extra columns, named by their key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from orchestrator import leaderboard as board
from orchestrator.analysis import top_label

JsonRow = dict[str, Any]


@dataclass(frozen=True)
class Column:
    header: str
    text: Callable[[JsonRow], str]
    sort: Callable[[JsonRow], float | str | None]
    title: str = ""  # the header's tooltip: what the column means
    numeric: bool = True
    optional: bool = False  # left out where no run of the sweep has a value (as the terminal table does)


def _opt(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _interval(r: JsonRow) -> str:
    return f"{_pct(r['pass_at_1'])}% [{_pct(r['ci_low'])}, {_pct(r['ci_high'])}]"


def _vs(r: JsonRow, key: str) -> Any:
    return (r.get("vs_base") or {}).get(key)


def _delta(r: JsonRow, reference: str | None) -> str:
    if reference is not None and r["run"] == reference and r.get("vs_base") is None:
        return "reference"
    return board.delta_cell(r.get("vs_base"))


def _memory(r: JsonRow) -> str:
    return f"{r['peak_memory_mb']:.0f} MB ({r['memory_kind']})"


def _audit(r: JsonRow) -> str:
    a = r.get("audit")
    return "–" if not a else f"NLL {a['mean_nll']:.2f}, pass@1 {a['correct']}/{a['n']}"


def _tokens(r: JsonRow) -> str:
    return f"{r['mean_output_tokens']:.0f}/{_opt(r.get('median_output_tokens'), '.0f')}"


def _think(r: JsonRow) -> str:
    if r.get("mean_thinking_tokens") is None:
        return "–"
    return f"{r['mean_thinking_tokens']:.0f}/{_opt(r.get('mean_answer_tokens'), '.0f')}"


def columns(reference: str | None) -> list[Column]:
    """Every column, in the CLI's order: figures, cost, then the comparison with the reference."""
    return [
        Column("run", lambda r: r["run"], lambda r: r["run"], "model + adapter · strategy", numeric=False),
        Column("n", lambda r: str(r["n"]), lambda r: r["n"], "questions answered"),
        Column("pass@1 [95% CI]", _interval, lambda r: r["pass_at_1"], "pass@1 with its 95% Wilson interval"),
        Column("Δ vs reference [95% CI]", lambda r: _delta(r, reference), lambda r: _vs(r, "delta"),
               "pass@1 difference in points, Newcombe's paired 95% interval"),
        Column("reg/fix", lambda r: board.transitions_cell(r.get("vs_base")), lambda r: _vs(r, "regressions"),
               "regressions (right → wrong) / fixes (wrong → right) against the reference"),
        Column("McNemar p", lambda r: board.p_cell(r.get("vs_base")), lambda r: _vs(r, "mcnemar_p"),
               "exact two-sided McNemar test on the discordant pairs"),
        Column("tokens mean/med", _tokens, lambda r: r["mean_output_tokens"],
               "output tokens per question (all samples and turns)"),
        Column("think/answer", _think, lambda r: r.get("mean_thinking_tokens"),
               "budget forcing: thinking/answer tokens", optional=True),
        Column("RES", lambda r: _opt(r.get("res"), ".4f"), lambda r: r.get("res"), "Reasoning Efficiency Score"),
        Column("tok/s", lambda r: f"{r['tokens_per_s']:.1f}", lambda r: r["tokens_per_s"],
               "generated tokens per second"),
        Column("latency s", lambda r: _opt(r.get("mean_latency_s"), ".2f"), lambda r: r.get("mean_latency_s"),
               "mean wall time per question"),
        Column("peak memory", _memory, lambda r: r["peak_memory_mb"], "peak memory of the eval (CUDA or RSS)"),
        Column("trunc/loops", lambda r: f"{_opt(r.get('truncated'), 'd')}/{_opt(r.get('repetition_loops'), 'd')}",
               lambda r: r.get("truncated"), "samples that hit the token cap / repetition loops"),
        Column("fix/break", lambda r: "–" if r.get("fixes") is None else f"{r['fixes']}/{r['breaks']}",
               lambda r: r.get("fixes"), "reflection: wrong → right / right → wrong", optional=True),
        Column("agree", lambda r: "–" if r.get("mean_agreement") is None else f"{100 * r['mean_agreement']:.0f}%",
               lambda r: r.get("mean_agreement"), "self-consistency: mean agreement", optional=True),
        Column("top failure", lambda r: top_label(r.get("taxonomy")) or "–", lambda r: top_label(r.get("taxonomy")),
               "most frequent failure label, share of the wrong answers", numeric=False),
        Column("flags", lambda r: ", ".join(r.get("flags") or []) or "–", lambda r: ", ".join(r.get("flags") or []),
               "quick-eval, not-significant, mirage", numeric=False),
        Column("train-set audit", _audit, lambda r: (r.get("audit") or {}).get("mean_nll"),
               "the adapter's memorisation audit", optional=True),
        Column("lm-eval strict/flex", _lm_eval,
               lambda r: r.get("strict_match"), "lm-eval's GSM8K strict-match / flexible-extract exact match, %",
               optional=True),
        Column("ppl", lambda r: _opt(r.get("perplexity"), ".2f"), lambda r: r.get("perplexity"),
               "perplexity on the reference solutions (eval.perplexity)", optional=True),
        Column("weights", _weights, lambda r: _weights(r) if _weights(r) != "–" else None,
               "quantized weights the run loaded (model.quantization, or a bitsandbytes checkpoint)",
               optional=True, numeric=False),
    ]


def _lm_eval(r: JsonRow) -> str:
    strict, flexible = r.get("strict_match"), r.get("flexible_extract")
    return "–" if strict is None or flexible is None else f"{100 * strict:.1f}/{100 * flexible:.1f}"


def _weights(r: JsonRow) -> str:
    quantization = (r.get("run_info") or {}).get("quantization")
    return quantization if quantization not in (None, "none") else "–"


def shown_columns(rows: list[JsonRow], reference: str | None) -> list[Column]:
    """The columns this sweep's page shows: the optional ones only where some run has a value, then extra keys."""
    kept = [c for c in columns(reference) if not c.optional or any(c.sort(row) is not None for row in rows)]
    return kept + extra_columns(rows)


KNOWN_KEYS = frozenset(f.name for f in fields(board.Row))


def extra_columns(rows: list[JsonRow]) -> list[Column]:
    """Scalar keys the Row of this version does not know (added by a newer leaderboard), one column each."""
    extra: list[str] = []
    for row in rows:
        extra += [k for k, v in row.items() if k not in KNOWN_KEYS and k not in extra and _scalar(v)]
    return [_extra_column(key) for key in extra]


def _extra_column(key: str) -> Column:
    def text(row: JsonRow) -> str:
        return _text(row.get(key))

    def sort(row: JsonRow) -> float | str | None:
        value = row.get(key)
        return value if isinstance(value, (int, float, str)) else None

    return Column(key, text, sort, f"{key} (a newer leaderboard key)")


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sort_key(value: float | str | None) -> str:
    """The `data-sort` attribute: numbers as they are, missing values empty (sorted last by the page's JS)."""
    return "" if value is None else str(value)
