"""Training jobs: chunked loss, label mask, data sources, artifact store, resume after a kill,
bad input, and a train job on a real Celery worker whose adapter changes the eval.

All on CPU with the tiny random model; CI has no GPU, so the NF4/CUDA path is proven by
the device run recorded with bench/train_throughput.py, not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from jobs.errors import FatalJobError, SweepError
from jobs.resources import artifacts
from jobs.specs import DatasetSpec, ModelSpec, TrainJobSpec, TrainParams
from jobs.training import train
from jobs.training.chunked_ce import LOGITS_BUDGET_BYTES, chunk_tokens, chunked_lm_loss
from jobs.training.data import IGNORE_INDEX, TrainExample, load_examples, tokenize
from orchestrator.sweep import load_sweep


def train_spec(model_dir: Path, **params: object) -> TrainJobSpec:
    base = {"batch_size": 2, "grad_accum": 1, "learning_rate": 5e-3, "max_length": 256, "lora_dropout": 0.1}
    merged = TrainParams(**{**base, **params}).model_dump(mode="json")  # type: ignore[arg-type]
    return TrainJobSpec(
        model=ModelSpec(id=str(model_dir)), method="lora", lora_rank=4, traces=8,
        source=DatasetSpec(name="synthetic", n=20), params=merged, seed=7,
    )


# --------------------------------------------------------------------------- loss


def test_a_chunk_is_capped_by_the_logits_budget() -> None:
    assert chunk_tokens(1024, 151_936) == 276  # Qwen's vocabulary: fp32 logits of 276 tokens fit 160 MiB
    assert chunk_tokens(1024, 151_936) * 4 * 151_936 <= LOGITS_BUDGET_BYTES
    assert chunk_tokens(1024, 49_152) == 853 and chunk_tokens(100, 49_152) == 100  # SmolLM2; asked below the cap
    assert chunk_tokens(1024, 10**7) == 64  # a floor, however large the vocabulary


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_chunked_cross_entropy_equals_the_plain_loss_and_gradients(chunk: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 9, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(17, 8, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 17, (3, 9))
    labels[0, :4] = IGNORE_INDEX  # a masked prompt
    labels[2, 6:] = IGNORE_INDEX  # padding

    total, count = chunked_lm_loss(hidden, weight, labels, chunk=chunk)
    (total / count).backward()
    ours = (hidden.grad.clone(), weight.grad.clone())
    hidden.grad = weight.grad = None
    logits = hidden @ weight.t()
    plain = F.cross_entropy(logits[:, :-1].reshape(-1, 17), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    plain.backward()

    assert count == int((labels[:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(total / count, plain)
    torch.testing.assert_close(ours[0], hidden.grad)
    torch.testing.assert_close(ours[1], weight.grad)


def test_right_padded_rows_need_no_attention_mask(tiny_model) -> None:
    """The train step runs the decoder without an attention mask: with right padding and
    causal attention, the loss and its gradients are those of the masked forward."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model.path), dtype=torch.float64)
    torch.manual_seed(0)
    ids = torch.randint(5, 300, (3, 12))
    labels = ids.clone()
    labels[:, :3] = IGNORE_INDEX  # a prompt
    lengths = [12, 7, 4]
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):  # right padding, as train._Loop._collate builds it
        ids[row, n:] = 0
        labels[row, n:] = IGNORE_INDEX
        mask[row, :n] = 1

    def loss_and_grads(**inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        hidden = model.get_decoder()(input_ids=ids, **inputs).last_hidden_state
        total, _ = chunked_lm_loss(hidden, model.lm_head.weight, labels)
        total.backward()
        return total.detach(), [p.grad.clone() for p in model.parameters()]

    masked, masked_grads = loss_and_grads(attention_mask=mask)
    unmasked, unmasked_grads = loss_and_grads()
    torch.testing.assert_close(unmasked, masked)
    for ours, reference in zip(unmasked_grads, masked_grads, strict=True):
        torch.testing.assert_close(ours, reference)


# --------------------------------------------------------------------------- data


def test_label_mask_covers_exactly_the_assistant_turn(tiny_model) -> None:
    from jobs.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model.path), {})
    example = TrainExample(id="x", question="Tom has 3 apples and buys 2. How many?", response="3 + 2 = 5\n#### 5", answer="5")
    item = tokenize(example, tokenizer, max_length=4096)
    learned = [i for i, label in zip(item.input_ids, item.labels) if label != IGNORE_INDEX]
    masked = [i for i, label in zip(item.input_ids, item.labels) if label == IGNORE_INDEX]
    # Given the chat formatted for generation, the loss is on the answer and its end-of-turn only.
    assert tokenizer.decode(learned) == "3 + 2 = 5\n#### 5<|im_end|>\n"
    assert tokenizer.decode(masked).endswith("<|im_start|>assistant\n")
    assert "Tom has 3 apples" in tokenizer.decode(masked)
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(item.input_ids, item.labels))
    # The mask is a prefix: nothing after the first learned token is masked.
    first = item.labels.index(learned[0]) if learned else len(item.labels)
    assert IGNORE_INDEX not in item.labels[first:]
    assert len(tokenize(example, tokenizer, max_length=10).input_ids) == 10


def test_traces_are_a_seeded_shuffle_of_the_source(tmp_path: Path) -> None:
    spec = train_spec(tmp_path)
    params = TrainParams.model_validate(spec.params)
    first, again = load_examples(spec, params), load_examples(spec, params)
    other = load_examples(spec.model_copy(update={"seed": 8}), params)
    assert [e.id for e in first] == [e.id for e in again] and len(first) == 8
    assert [e.id for e in first] != [e.id for e in other]
    assert all(e.response.rstrip().endswith(f"#### {e.answer}") and "<<" not in e.response for e in first)
    with pytest.raises(FatalJobError, match="train.traces: 30 requested but the source has only 20"):
        load_examples(spec.model_copy(update={"traces": 30}), params)


def test_distill_reads_question_response_traces(tmp_path: Path) -> None:
    traces = tmp_path / "teacher.jsonl"
    rows = [{"question": f"What is {i} + 1?", "response": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(5)]
    traces.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = train_spec(tmp_path, trace_file=str(traces)).model_copy(update={"method": "distill", "traces": 5})
    examples = load_examples(spec, TrainParams.model_validate(spec.params))
    assert sorted(e.answer for e in examples) == ["1", "2", "3", "4", "5"]
    assert {e.question for e in examples} == {r["question"] for r in rows}

    traces.write_text('{"question": "no response"}\n')
    with pytest.raises(FatalJobError, match=r"train.trace_file: .*teacher.jsonl:1: malformed trace"):
        load_examples(spec.model_copy(update={"traces": 1}), TrainParams.model_validate(spec.params))
    missing = train_spec(tmp_path, trace_file=str(tmp_path / "none.jsonl")).model_copy(update={"method": "distill"})
    with pytest.raises(FatalJobError, match="train.trace_file: file not found"):
        load_examples(missing, TrainParams.model_validate(missing.params))


def test_batch_plan_is_deterministic_and_covers_every_example() -> None:
    lengths = [5, 50, 7, 30, 12, 9, 40, 3, 22, 18]
    plan = train.plan_batches(lengths, batch_size=3, seed=1, epochs=2)
    assert plan == train.plan_batches(lengths, batch_size=3, seed=1, epochs=2)
    assert len(plan) == 8 and sorted(i for b in plan[:4] for i in b) == list(range(10))
    assert len(train.plan_batches(lengths, batch_size=3, seed=1, epochs=0.5)) == 2


# --------------------------------------------------------------------------- artifact store


@pytest.mark.parametrize("root", ["memory://rf-test-store", "local"])
def test_artifact_store_round_trip(root: str, tmp_path: Path) -> None:
    source = tmp_path / "adapter"
    (source / "sub").mkdir(parents=True)
    (source / "adapter_model.safetensors").write_bytes(b"\x00weights")
    (source / "sub" / "config.json").write_text("{}")
    base = artifacts.normalise_root(str(tmp_path / "store") if root == "local" else root)
    stored = artifacts.upload_dir(source, artifacts.join(base, "train", "job", "adapter"))
    assert stored.size_bytes == 10 and stored.sha256 == artifacts.directory_digest(source)[1]
    assert artifacts.is_complete(stored.uri)
    local = artifacts.fetch_dir(stored.uri, tmp_path / "cache")
    assert (local / "adapter_model.safetensors").read_bytes() == b"\x00weights"
    assert (local / "sub" / "config.json").read_text() == "{}"
    assert artifacts.directory_digest(local)[1] == stored.sha256
    if root == "local":
        assert local == Path(stored.uri)  # a local store needs no copy


# --------------------------------------------------------------------------- training


def adapter_tensors(uri: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(artifacts.fetch_dir(uri) / "adapter_model.safetensors"))


def test_train_job_lands_an_adapter_and_resumes_after_a_kill(tiny_model, tmp_path: Path) -> None:
    """Same seed, same data: a run stopped after step 4 and run again ends with the adapter of an uninterrupted run."""
    spec = train_spec(tiny_model.path, checkpoint_every=2, epochs=2)  # 8 traces, batch 2, 2 epochs: 8 steps
    whole = train.run(spec, artifacts_root=str(tmp_path / "a"), job_key="whole")
    assert whole.mode == "lora-cpu" and whole.steps == 8 and whole.examples == 8
    assert whole.tokens_seen > 0 and whole.tokens_per_s > 0 and whole.adapter_bytes > 0
    assert len(whole.loss_curve) == 8 and whole.resumed_from_step is None
    files = sorted(p.name for p in Path(whole.adapter_uri).iterdir())
    assert "adapter_model.safetensors" in files and "adapter_config.json" in files
    assert not any("model.safetensors" == f for f in files)  # the adapter, never the base

    class Killed(Exception):
        pass

    def kill_after_4(step: int, total: int) -> None:
        if step == 4:
            raise Killed

    root = "memory://rf-resume-test"
    with pytest.raises(Killed):
        train.run(spec, artifacts_root=root, job_key="killed", progress=kill_after_4)
    resumed = train.run(spec, artifacts_root=root, job_key="killed")
    assert resumed.resumed_from_step == 4 and resumed.steps == 8
    assert resumed.loss_curve == pytest.approx(whole.loss_curve, rel=1e-4)
    assert resumed.tokens_seen == whole.tokens_seen
    expected, got = adapter_tensors(whole.adapter_uri), adapter_tensors(resumed.adapter_uri)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6)
    # LoRA B starts at zero: training really moved the adapter.
    assert any(t.abs().sum() > 0 for n, t in expected.items() if "lora_B" in n)


def test_target_modules_absent_from_the_model_are_refused(tiny_model, tmp_path: Path) -> None:
    spec = train_spec(tiny_model.path, target_modules=["q_proj", "query_key_value"])
    with pytest.raises(FatalJobError, match=r"train.target_modules: \['query_key_value'\] not in the model"):
        train.run(spec, artifacts_root=str(tmp_path), job_key="bad")


def test_nf4_without_cuda_and_without_fallback_is_refused(tiny_model, tmp_path: Path) -> None:
    from tests.model_fixtures import require

    require(not torch.cuda.is_available(), "needs a machine without CUDA")
    spec = train_spec(tiny_model.path, quantization="nf4", allow_cpu_fallback=False).model_copy(update={"method": "qlora"})
    with pytest.raises(FatalJobError, match="train.allow_cpu_fallback: false, and quantization nf4 needs CUDA"):
        train.run(spec, artifacts_root=str(tmp_path), job_key="nf4")
    allowed = train_spec(tiny_model.path, quantization="nf4", epochs=0.25).model_copy(update={"method": "qlora"})
    assert train.run(allowed, artifacts_root=str(tmp_path), job_key="fallback").mode == "lora-cpu"


@pytest.mark.slow
def test_a_gguf_loaded_model_trains_and_saves_its_adapter(tmp_path: Path) -> None:
    """SmolLM2 comes as GGUF, which cannot be save_pretrained as is; its peft adapter alone can."""
    from tests.model_fixtures import SMOLLM2_PACKAGE, require_smollm2

    require_smollm2()
    params = TrainParams(batch_size=2, max_length=384, target_modules=["q_proj", "v_proj"]).model_dump(mode="json")
    spec = TrainJobSpec(model=ModelSpec(package=SMOLLM2_PACKAGE), method="qlora", lora_rank=4, traces=2,
                        source=DatasetSpec(name="synthetic", n=10), params=params)
    outcome = train.run(spec, artifacts_root=str(tmp_path), job_key="smollm2")
    assert outcome.mode == "lora-cpu" and outcome.steps == 1 and 0 < outcome.loss_curve[0] < 5
    tensors = adapter_tensors(outcome.adapter_uri)
    assert len(tensors) == 30 * 2 * 2  # 30 layers x (q_proj, v_proj) x (lora_A, lora_B)
    assert outcome.adapter_bytes < 2_000_000  # the adapter, not the 135M-parameter base
    config = json.loads((Path(outcome.adapter_uri) / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8 and sorted(config["target_modules"]) == ["q_proj", "v_proj"]


# --------------------------------------------------------------------------- audit


@pytest.fixture(scope="module")
def memorising_model(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a 25x larger output layer. The random one's logits stay within about
    ±1.3 (small lm_head, normalised hidden state), so no adapter could drive its NLL near 0."""
    import shutil

    from transformers import AutoModelForCausalLM

    directory = tmp_path_factory.mktemp("memorising")
    model = AutoModelForCausalLM.from_pretrained(tiny_model.path)
    with torch.no_grad():
        model.lm_head.weight.mul_(25)
    model.save_pretrained(directory)
    for file in tiny_model.path.iterdir():
        if file.name.startswith(("tokenizer", "special", "chat_template")):
            shutil.copy(file, directory / file.name)
    return directory


def test_audit_of_a_memorised_toy_set(memorising_model: Path, tmp_path: Path) -> None:
    """Trained to memorise 4 traces: teacher-forced NLL near 0, and pass@1 measured on the same 4 by generation."""
    from jobs.specs import AuditJobSpec
    from jobs.training import audit

    spec = train_spec(memorising_model, learning_rate=1e-2, epochs=100, batch_size=4, lora_dropout=0.0)
    spec = spec.model_copy(update={"traces": 4, "lora_rank": 16, "source": DatasetSpec(name="synthetic", n=4, complexity=(1, 1))})
    trained = train.run(spec, artifacts_root=str(tmp_path), job_key="memorise")
    assert trained.loss_curve[0] > 5 and trained.loss_curve[-1] < 0.05

    outcome = audit.run(AuditJobSpec(train=spec, train_job="h", max_new_tokens=60, batch_size=4), adapter_path=trained.adapter_uri)
    assert outcome.n == 4 and outcome.mean_nll < 0.05
    assert outcome.mean_nll == pytest.approx(trained.loss_curve[-1], abs=0.02)  # the same loss, measured apart
    assert outcome.correct == sum(r["correct"] for r in outcome.per_example) and outcome.correct >= 1
    assert outcome.ci_low <= outcome.pass_at_1 == outcome.correct / 4 <= outcome.ci_high
    assert {r["id"] for r in outcome.per_example} == {e.id for e in load_examples(spec, TrainParams.model_validate(spec.params))}


# --------------------------------------------------------------------------- submit-time checks

SWEEP = """
name: t
model: {{id: Qwen/Qwen2.5-0.5B-Instruct}}
dataset: {{name: synthetic, n: 5}}
train:
  lora_rank: 4
{train}
"""


@pytest.mark.parametrize(
    ("train_keys", "message"),
    [
        ("  traces: 50\n  source: {name: synthetic, n: 10}", "train.traces: [50] larger than the 10 examples in train.source"),
        ("  traces: 5\n  method: distill", "train.trace_file: method distill needs a teacher-trace JSONL"),
        ("  traces: 5\n  method: distill\n  trace_file: nowhere.jsonl", "train.trace_file: file not found"),
        ("  traces: 5\n  target_modules: []", "train.target_modules: give module names"),
        ("  traces: 5\n  target_modules: ['q proj']", "train.target_modules: give module names"),
        ("  traces: 5\n  lora_alpha: twice", "train.lora_alpha"),
    ],
)
def test_bad_train_input_is_refused_at_submit(tmp_path: Path, train_keys: str, message: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(train=train_keys))
    with pytest.raises(SweepError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_sweep(path)


def test_distill_trace_count_is_checked_at_submit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "teacher.jsonl").write_text('{"question": "q", "response": "#### 1"}\n' * 3)
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP.format(train="  traces: [3, 4]\n  method: distill\n  trace_file: teacher.jsonl"))
    with pytest.raises(SweepError, match=r"train.traces: \[4\] larger than the 3 examples in train.trace_file"):
        load_sweep(path)
    path.write_text(SWEEP.format(train="  traces: 3\n  method: distill\n  trace_file: teacher.jsonl"))
    assert load_sweep(path).train.trace_file == str(tmp_path / "teacher.jsonl")  # type: ignore[union-attr]


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_train_job_on_a_real_worker_feeds_its_adapter_to_the_eval(tmp_path: Path, tiny_model, start_worker, service_env) -> None:
    """CLI → Postgres → Redis → Celery worker: the train job stores an adapter and a TrainResult,
    the dependent eval loads base + adapter (fetched from the store) and answers differently."""
    from sqlmodel import select

    from db.models import Job, Prediction, TrainResult
    from db.session import session_scope
    from tests.test_queue_integration import cli, sweep_file, wait_for_sweep

    store = tmp_path / "store"
    worker = start_worker({"REASONFLEET_ARTIFACTS": str(store), "REASONFLEET_ARTIFACT_CACHE": str(tmp_path / "cache")})
    grid = {
        "method": "lora", "lora_rank": [8], "traces": [4], "source": {"name": "synthetic", "n": 4, "seed": 5},
        "learning_rate": 0.02, "epochs": 6, "batch_size": 2, "max_length": 256, "audit": True,
    }
    path = sweep_file(tmp_path, tiny_model.path, name="train-e2e", train=grid)
    submitted = cli("submit", str(path), env=service_env)
    assert submitted.returncode == 0, submitted.stderr
    jobs = {job.kind + (":adapter" if job.spec.get("adapter") else ""): job for job in wait_for_sweep(submitted.stdout.split()[-1])}
    assert set(jobs) == {"eval", "train", "eval:adapter", "audit"}
    assert all(job.state == "succeeded" for job in jobs.values()), f"{[(j.label, j.error) for j in jobs.values()]}\n{worker.output()[-3000:]}"

    train_job = jobs["train"]
    assert train_job.artifact_uri and train_job.artifact_uri.startswith(str(store))
    with session_scope() as session:
        result = session.exec(select(TrainResult).where(TrainResult.job_id == train_job.id)).one()
        base = session.exec(select(Prediction).where(Prediction.job_id == jobs["eval"].id)).all()
        tuned = session.exec(select(Prediction).where(Prediction.job_id == jobs["eval:adapter"].id)).all()
        assert session.get(Job, train_job.id).attempts == 1
    assert result.adapter_uri == train_job.artifact_uri and result.mode == "lora-cpu" and result.steps == 12
    assert len(result.loss_curve) == 12 and result.loss_curve[-1] < result.loss_curve[0]
    assert result.adapter_sha256 == artifacts.directory_digest(Path(result.adapter_uri))[1]
    by_question = {p.question_id: p.raw_output for p in base}
    assert len(tuned) == len(base) == 6
    assert any(by_question[p.question_id] != p.raw_output for p in tuned)

    board = cli("leaderboard", "--sweep", submitted.stdout.split()[-1], "--format", "json", env=service_env)
    assert board.returncode == 0, board.stderr
    runs = {run["adapter"]: run for run in json.loads(board.stdout)}
    assert runs[None]["audit"] is None  # the base model has no training set
    assert runs["lora-r8-t4"]["audit"]["n"] == 4 and runs["lora-r8-t4"]["audit"]["mean_nll"] > 0


def test_trainable_weights_become_views_of_one_flat_parameter_per_dtype() -> None:
    """The optimiser steps one flat parameter per dtype (jobs.training.train._flatten): each weight keeps its
    values and shape, shares the flat storage (an update of the flat one is the weight's), and its own gradient
    still comes from autograd."""
    from jobs.training.train import _flatten

    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(3, 4)), torch.nn.Parameter(torch.randn(5)),
               torch.nn.Parameter(torch.randn(2, 2, dtype=torch.float64))]
    before = [w.detach().clone() for w in weights]
    flats = _flatten(weights)
    assert sorted(f.numel() for f in flats) == [4, 17]
    for weight, value in zip(weights, before, strict=True):
        torch.testing.assert_close(weight.detach(), value)
    (flat32,) = [f for f in flats if f.dtype == torch.float32]
    assert flats[flat32] == weights[:2]
    with torch.no_grad():
        flat32.add_(1.0)
    torch.testing.assert_close(weights[1].detach(), before[1] + 1.0)
    (weights[0].sum() * 2).backward()
    assert weights[0].grad is not None and torch.equal(weights[0].grad, torch.full((3, 4), 2.0))
