"""Resumable training state in the artifact store.

A checkpoint holds what an interrupted run needs to continue as if never stopped:
adapter weights, optimiser and scheduler state, RNG states and the position in the
(deterministic) batch order. Each goes to `<job>/checkpoints/step-NNNNNNNN`, marked
complete last; older ones are removed only after a newer one is complete.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from fsspec.core import url_to_fs

from jobs.resources import artifacts


@dataclass
class Progress:
    step: int = 0  # optimiser steps done; also the position in the batch order
    tokens_seen: int = 0
    loss_curve: list[float] = field(default_factory=list)
    resumed_from: int | None = None


def checkpoints_uri(job_uri: str) -> str:
    return artifacts.join(job_uri, "checkpoints")


def _steps(job_uri: str) -> list[int]:
    with artifacts.store_errors(job_uri):  # a store that is away makes the job retryable, not failed
        fs, path = url_to_fs(checkpoints_uri(job_uri))
        if not fs.exists(path):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    return sorted(int(n[5:]) for n in names if n.startswith("step-") and n[5:].isdigit())


def _step_uri(job_uri: str, step: int) -> str:
    return artifacts.join(checkpoints_uri(job_uri), f"step-{step:08d}")


def save(job_uri: str, *, model: Any, optimizer: Any, scheduler: Any, progress: Progress) -> None:
    from peft import get_peft_model_state_dict

    state = {
        "adapter": {k: v.detach().cpu() for k, v in get_peft_model_state_dict(model).items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "step": progress.step,
        "tokens_seen": progress.tokens_seen,
        "loss_curve": list(progress.loss_curve),
    }
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(state, Path(tmp) / "state.pt")
        artifacts.upload_dir(Path(tmp), _step_uri(job_uri, progress.step))
    for older in _steps(job_uri)[:-1]:
        with artifacts.store_errors(job_uri):
            fs, path = url_to_fs(_step_uri(job_uri, older))
            fs.rm(path, recursive=True)


def load_latest(job_uri: str, *, model: Any, optimizer: Any, scheduler: Any) -> Progress | None:
    """Restore the newest complete checkpoint into model, optimiser, scheduler and RNGs."""
    from peft import set_peft_model_state_dict

    complete = [s for s in _steps(job_uri) if artifacts.is_complete(_step_uri(job_uri, s))]
    if not complete:
        return None
    with tempfile.TemporaryDirectory() as cache:
        local = artifacts.fetch_dir(_step_uri(job_uri, complete[-1]), cache)
        # weights_only: never unpickle code from a shared store.
        state = torch.load(local / "state.pt", map_location="cpu", weights_only=True)
    set_peft_model_state_dict(model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return Progress(
        step=state["step"], tokens_seen=state["tokens_seen"], loss_curve=state["loss_curve"], resumed_from=state["step"]
    )


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
