"""Yield to the owner: the policy state machine, fed by an injected GPU probe.

The real probe reads NVML, which needs an NVIDIA driver this machine does not have; these
tests feed samples directly, and the worker test feeds them through the file probe.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from workers.yield_policy import (
    GpuSample,
    YieldConfig,
    YieldPolicy,
    file_probe,
    parse_hours,
)

T0 = datetime(2026, 11, 23, 2, 0, 0)
IDLE, GAME = GpuSample(5.0), GpuSample(97.0, ("eldenring.exe",))


def test_a_game_pauses_at_once_and_jobs_resume_after_the_idle_period() -> None:
    policy = YieldPolicy(YieldConfig(idle_resume_s=60))
    assert policy.decide(IDLE, T0).take_jobs
    paused = policy.decide(GAME, T0 + timedelta(seconds=1))
    assert not paused.take_jobs and paused.reason == "GPU in use by eldenring.exe"
    assert not policy.decide(IDLE, T0 + timedelta(seconds=2)).take_jobs  # idle for 0 s
    assert not policy.decide(IDLE, T0 + timedelta(seconds=50)).take_jobs  # idle for 48 s
    assert not policy.decide(GAME, T0 + timedelta(seconds=55)).take_jobs  # the game is back: the clock restarts
    assert not policy.decide(IDLE, T0 + timedelta(seconds=100)).take_jobs
    assert policy.decide(IDLE, T0 + timedelta(seconds=161)).take_jobs


def test_utilisation_above_the_threshold_counts_as_the_owner() -> None:
    policy = YieldPolicy(YieldConfig(busy_utilization_pct=40, idle_resume_s=0))
    assert policy.decide(GpuSample(39.0), T0).take_jobs
    assert policy.decide(GpuSample(41.0), T0).reason == "GPU utilisation 41% > 40%"
    assert policy.decide(GpuSample(0.0), T0 + timedelta(seconds=1)).take_jobs


def test_the_hours_window_wraps_midnight() -> None:
    policy = YieldPolicy(YieldConfig(hours=parse_hours("23:30-08:00"), idle_resume_s=600))
    assert policy.decide(IDLE, T0).take_jobs  # 02:00
    outside = policy.decide(IDLE, T0.replace(hour=12))
    assert not outside.take_jobs and outside.reason == "outside working hours 23:30-08:00"
    assert policy.decide(IDLE, T0.replace(hour=23, minute=45)).take_jobs  # no idle wait after the schedule opens


@pytest.mark.parametrize("text", ["1-8", "25:00-08:00", "01:00-01:00", "01:00 08:00"])
def test_bad_hours_are_refused_with_the_option_named(text: str) -> None:
    with pytest.raises(ValueError, match="--hours"):
        parse_hours(text)


def test_file_probe_reads_the_sample_and_a_missing_file_is_idle(tmp_path) -> None:
    path = tmp_path / "gpu.json"
    probe = file_probe(path)
    assert probe() == GpuSample()
    path.write_text('{"utilization_pct": 88, "foreign_processes": ["game"]}')
    assert probe() == GpuSample(88.0, ("game",))
