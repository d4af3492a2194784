"""Expansion is pure: the cartesian product, train→eval dependencies and stable content hashes."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.expand import content_hash, expand, sweep_hash
from orchestrator.sweep import SweepSpec, load_sweep

BASE = {
    "name": "grid",
    "seed": 7,
    "model": {"id": "Qwen/Qwen2.5-0.5B-Instruct"},
    "dataset": {"name": "synthetic", "n": 10},
    "train": {"method": "qlora", "lora_rank": [8, 16, 32], "traces": [500, 2000]},
    "eval": {"strategies": ["greedy"]},
}


def sweep(**changes: object) -> SweepSpec:
    return SweepSpec.model_validate({**BASE, **changes})


def test_cartesian_product_with_dependencies() -> None:
    drafts = expand(sweep())
    trains = [d for d in drafts if d.kind == "train"]
    evals = [d for d in drafts if d.kind == "eval"]
    assert len(trains) == 3 * 2
    assert len(evals) == 1 + 3 * 2  # the base model plus one per adapter
    assert {(d.spec["lora_rank"], d.spec["traces"]) for d in trains} == {(r, t) for r in (8, 16, 32) for t in (500, 2000)}
    train_hashes = {d.spec_hash for d in trains}
    for draft in evals:
        if draft.spec["adapter"] is None:
            assert draft.depends_on == ()
        else:
            (dependency,) = draft.depends_on
            assert dependency in train_hashes and draft.spec["adapter"]["train_job"] == dependency
    positions = {d.spec_hash: i for i, d in enumerate(drafts)}
    assert all(positions[dep] < positions[d.spec_hash] for d in drafts for dep in d.depends_on)


def test_hashes_are_unique_and_stable() -> None:
    first, second = expand(sweep()), expand(sweep())
    assert [d.spec_hash for d in first] == [d.spec_hash for d in second]
    assert len({d.spec_hash for d in first}) == len(first)
    assert all(d.spec_hash == content_hash(d.spec) for d in first)


def test_key_order_and_spelled_out_defaults_do_not_change_hashes(tmp_path: Path) -> None:
    reordered = dict(reversed(list(BASE.items())))
    explicit = {**BASE, "eval": {"strategies": [{"self_consistency": {"n": 5}}]}}
    implicit = {**BASE, "eval": {"strategies": ["self_consistency"]}}
    assert sweep_hash(SweepSpec.model_validate(reordered)) == sweep_hash(sweep())
    assert [d.spec_hash for d in expand(SweepSpec.model_validate(explicit))] == [
        d.spec_hash for d in expand(SweepSpec.model_validate(implicit))
    ]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "train": None}))
    assert sweep_hash(load_sweep(path)) == sweep_hash(sweep(train=None))


def test_what_changes_a_job_changes_its_hash() -> None:
    base_eval = expand(sweep(train=None))[0].spec_hash
    assert expand(sweep(train=None, seed=8))[0].spec_hash != base_eval
    assert expand(sweep(train=None, eval={"strategies": ["greedy"], "max_new_tokens": 100}))[0].spec_hash != base_eval
    assert expand(sweep(train=None, dataset={"name": "synthetic", "n": 11}))[0].spec_hash != base_eval
    assert expand(sweep(train=None))[0].spec["engine"] == "refill"  # the default, spelled out in the spec
    batched = expand(sweep(train=None, eval={"strategies": ["greedy"], "engine": "batched"}))[0]
    assert batched.spec["engine"] == "batched" and batched.spec_hash != base_eval


def test_shared_jobs_across_sweeps_hash_the_same() -> None:
    """Two sweeps that differ only in their train grid share the base eval: it must not run twice."""
    one = {d.spec_hash for d in expand(sweep(name="a"))}
    other = {d.spec_hash for d in expand(sweep(name="b", train={"lora_rank": [8], "traces": [500]}))}
    assert len(one & other) == 1 + 1 + 1  # base eval, train r8/t500, its eval


def test_no_train_means_base_evals_only() -> None:
    drafts = expand(sweep(train=None, eval={"strategies": ["greedy", "reflection"]}))
    assert [d.kind for d in drafts] == ["eval", "eval"]
    assert [d.label for d in drafts] == [
        "Qwen2.5-0.5B-Instruct + base · greedy",
        "Qwen2.5-0.5B-Instruct + base · reflection",
    ]
