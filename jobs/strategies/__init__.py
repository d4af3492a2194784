"""Decoding strategies, one file each, registered by name.

A strategy turns questions into prediction records with a loaded model. Names are
the ones jobs.specs.STRATEGY_PARAMS validates; a name listed there but not here is
accepted in a sweep and refused when its eval runs, until its file is written.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Protocol

from jobs.data.question import Question
from jobs.models.loading import LoadedModel
from jobs.scoring.records import PredictionRecord
from jobs.specs import STRATEGY_NAMES, EvalJobSpec, StrategyName


class Strategy(Protocol):
    def __call__(
        self,
        loaded: LoadedModel,
        questions: list[Question],
        spec: EvalJobSpec,
        progress: Callable[[int, int], None] | None,
    ) -> list[PredictionRecord]: ...


def _module(name: StrategyName) -> Callable[[], Strategy]:
    def load() -> Strategy:
        run: Strategy = importlib.import_module(f"jobs.strategies.{name}").run
        return run

    return load


# Loaders rather than functions, so importing the registry imports no strategy module.
# Each strategy's module is named after it (jobs/strategies/<name>.py).
REGISTRY: dict[str, Callable[[], Strategy]] = {name: _module(name) for name in sorted(STRATEGY_NAMES)}


def get_strategy(name: str) -> Strategy:
    """The strategy registered under `name`; the sweep schema admits no other, so a miss is a programming error."""
    if name not in REGISTRY:
        raise NotImplementedError(f"strategy {name!r} is not implemented yet")
    return REGISTRY[name]()
