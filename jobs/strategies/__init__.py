"""Decoding strategies, one file each, registered by name.

A strategy turns questions into prediction records with a loaded model. Names are
the ones jobs.specs.STRATEGY_PARAMS validates; a name listed there but not here is
accepted in a sweep and refused when its eval runs, until its file is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from jobs.data.question import Question
from jobs.models.loading import LoadedModel
from jobs.scoring.records import PredictionRecord
from jobs.specs import EvalJobSpec


class Strategy(Protocol):
    def __call__(
        self,
        loaded: LoadedModel,
        questions: list[Question],
        spec: EvalJobSpec,
        progress: Callable[[int, int], None] | None,
    ) -> list[PredictionRecord]: ...


def _greedy() -> Strategy:
    from jobs.strategies.greedy import run

    return run


def _module(name: str) -> Callable[[], Strategy]:
    def load() -> Strategy:
        import importlib

        run: Strategy = importlib.import_module(f"jobs.strategies.{name}").run
        return run

    return load


# Loaders rather than functions, so importing the registry imports no strategy module.
REGISTRY: dict[str, Callable[[], Strategy]] = {
    "greedy": _greedy,
    **{
        name: _module(name)
        for name in ("self_consistency", "reflection", "sc_reflect", "structured_sc", "budget_forcing")
    },
}


def get_strategy(name: str) -> Strategy:
    """The strategy registered under `name`; NotImplementedError for one not written yet."""
    if name not in REGISTRY:
        raise NotImplementedError(f"strategy {name!r} is not implemented yet")
    return REGISTRY[name]()
