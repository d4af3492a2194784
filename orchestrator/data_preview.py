"""`orchestrator data preview synthetic`: the synthetic problems a dataset spec makes, with their wrong readings."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from jobs.data import relations, synthetic
from jobs.data.question import Question
from jobs.data.relations import Node, Problem, Ref
from jobs.errors import UsageError, one_line_errors
from jobs.specs import RELATION_NAMES, DatasetSpec

data_app = typer.Typer(help="Datasets: look at the questions a sweep would ask.", no_args_is_help=True)
# The option that sets each DatasetSpec field, so that a refused value is named as the user typed it.
OPTIONS = {"n": "-n", "complexity": "--complexity", "seed": "--seed", "relations": "--relations"}


@data_app.command("preview")
@one_line_errors()
def preview(
    dataset: str = typer.Argument(..., help="The dataset to generate: synthetic."),
    complexity: str = typer.Option("3", "--complexity", "-c", help="Calculations per problem: N or MIN-MAX (1..12)."),
    count: int = typer.Option(5, "-n", help="How many problems."),
    seed: int = typer.Option(0, "--seed", help="Generator seed."),
    relation_names: str = typer.Option(
        "all",
        "--relations",
        "-r",
        help=f"all, classic (the chains of dataset.relations unset) or some of: {', '.join(RELATION_NAMES)}.",
    ),
    graph: bool = typer.Option(False, "--graph", help="Also print each computation graph and its rewrites."),
) -> None:
    """Print synthetic problems: question, GSM8K-style solution, answer and wrong readings."""
    if dataset != "synthetic":
        raise UsageError(f"only `synthetic` can be previewed, not {dataset!r}")
    spec = dataset_spec(complexity, count, seed, relation_names)
    sys.stdout.write("\n\n".join(preview_blocks(spec, graph=graph)) + "\n")


def dataset_spec(complexity: str, count: int, seed: int, relation_names: str) -> DatasetSpec:
    """The options as the DatasetSpec a sweep file would give; a refused value names its option."""
    low, _, high = complexity.partition("-")
    if not (low.strip().isdigit() and (not high or high.strip().isdigit())):
        raise UsageError(f"--complexity: expected N or MIN-MAX, got {complexity!r}")
    chosen: str | list[str] | None = relation_names
    if relation_names == "classic":
        chosen = None
    elif relation_names != "all":
        chosen = [name.strip() for name in relation_names.split(",") if name.strip()]
    try:
        return DatasetSpec.model_validate(
            {"name": "synthetic", "n": count, "seed": seed, "relations": chosen, "complexity": (low, high or low)}
        )
    except ValidationError as error:
        first = error.errors()[0]
        # A check of the whole spec that can fail here is the complexity bounds'.
        option = OPTIONS.get(str(first["loc"][0]), "--complexity") if first["loc"] else "--complexity"
        message = first["msg"].removeprefix("Value error, ")
        got = f" (got {first['input']!r})" if first["type"] == "literal_error" else ""
        raise UsageError(f"{option}: {message}{got}") from None


def preview_blocks(spec: DatasetSpec, *, graph: bool = False) -> list[str]:
    """One text block per problem."""
    if spec.relations is None:
        return [question_block(q) for q in synthetic.generate(spec.n, complexity=spec.complexity, seed=spec.seed)]
    try:
        problems = relations.generate_problems(spec.n, spec.complexity, spec.seed, spec.relations)
    except ValueError as error:
        raise UsageError(f"--relations: {error}") from None
    return [question_block(p.question) + (graph_block(p) if graph else "") for p in problems]


def question_block(question: Question) -> str:
    lines = [f"── {question.id} · {question.complexity} steps", question.question, "", question.solution]
    lines.append(f"answer: {question.answer}")
    if question.wrong_readings:
        width = max(len(name) for name, _ in question.wrong_readings)
        lines.append("wrong readings:")
        lines += [f"  {name:<{width}}  {answer}" for name, answer in question.wrong_readings]
    return "\n".join(lines)


def graph_block(problem: Problem) -> str:
    lines = ["graph:"] + [f"  n{i} = {node_text(node)}" for i, node in enumerate(problem.nodes)]
    lines += [f"  {m.name}: n{m.node} := {node_text(m.replacement)}" for m in problem.misreadings]
    return "\n" + "\n".join(lines)


def node_text(node: Node) -> str:
    args = [f"n{a.node}" if isinstance(a, Ref) else str(a) for a in node.args]
    if node.op == "value":
        return args[0]
    if node.op == "pct":
        return f"{args[0]} * {args[1]} / 100"
    return f" {relations.SYMBOLS[node.op]} ".join(args)

