"""A train job that yields the GPU to its owner checkpoints at that step, so its retry loses nothing.

CPU only, the tiny random model; the yield is what the worker's heartbeat raises
(workers.runner.YieldToOwner, a RetryableError) from the progress callback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fsspec.core import url_to_fs

from jobs.training import checkpoint, train
from tests.test_train import train_spec
from workers.runner import YieldToOwner


def stored_steps(root: str, key: str) -> list[str]:
    fs, path = url_to_fs(checkpoint.checkpoints_uri(train.job_uri(root, key)))
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)) if fs.exists(path) else []


def test_a_yield_checkpoints_its_step_and_the_retry_resumes_there(tiny_model, tmp_path: Path) -> None:
    spec = train_spec(tiny_model.path, checkpoint_every=50, epochs=2)  # 8 steps, no periodic checkpoint
    root = str(tmp_path / "store")

    def owner_back_after_3(step: int, total: int) -> None:
        if step == 3:
            raise YieldToOwner("yielded the GPU to its owner: GPU in use by game.exe")

    with pytest.raises(YieldToOwner):
        train.run(spec, artifacts_root=root, job_key="yielded", progress=owner_back_after_3)
    assert stored_steps(root, "yielded") == ["step-00000003"]
    resumed = train.run(spec, artifacts_root=root, job_key="yielded")
    whole = train.run(spec, artifacts_root=root, job_key="whole")
    assert resumed.resumed_from_step == 3 and resumed.steps == 8
    assert resumed.loss_curve == pytest.approx(whole.loss_curve, rel=1e-4)


def test_any_other_stop_keeps_only_the_periodic_checkpoints(tiny_model, tmp_path: Path) -> None:
    spec = train_spec(tiny_model.path, checkpoint_every=2, epochs=2)
    root = str(tmp_path / "store")

    def crash_after_3(step: int, total: int) -> None:
        if step == 3:
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        train.run(spec, artifacts_root=root, job_key="crashed", progress=crash_after_3)
    assert stored_steps(root, "crashed") == ["step-00000002"]
