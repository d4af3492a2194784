"""The micro-batch step a CUDA graph captures (jobs.training.micro_step), run eagerly on CPU.

CI has no GPU, so capture and replay themselves are proven on the device by bench/train_graph_check.py (graphed and
eager training agree; bench/results). Here: what the graph computes — padded rows and columns, the loss at every
position, gradients accumulated into the flat parameter's buffer — is the eager step's loss and gradient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jobs.specs import DatasetSpec, ModelSpec, TrainJobSpec, TrainParams
from jobs.training import micro_step
from jobs.training.chunked_ce import all_positions_lm_loss, chunked_lm_loss
from jobs.training.data import IGNORE_INDEX
from jobs.training.model import add_lora, load_base
from jobs.training.train import _flatten


def test_padding_rounds_columns_up_and_fills_rows_without_labels() -> None:
    ids = torch.arange(1, 11).reshape(2, 5)
    labels = ids.clone()
    labels[:, :2] = IGNORE_INDEX
    padded_ids, padded_labels = micro_step.pad_micro_batch(ids, labels, rows=3, pad_id=0, multiple=4)
    assert padded_ids.shape == padded_labels.shape == (3, 8)
    assert torch.equal(padded_ids[:2, :5], ids) and torch.equal(padded_labels[:2, :5], labels)
    assert int(padded_ids[:, 5:].abs().sum()) == 0 and int(padded_ids[2].abs().sum()) == 0
    assert bool((padded_labels[:, 5:] == IGNORE_INDEX).all()) and bool((padded_labels[2] == IGNORE_INDEX).all())
    same_ids, _ = micro_step.pad_micro_batch(ids[:, :4], labels[:, :4], rows=2, pad_id=0, multiple=4)
    assert same_ids.shape == (2, 4)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_the_loss_at_every_position_equals_the_labelled_positions_loss(chunk: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 9, 8, requires_grad=True)
    weight = torch.randn(50, 8, requires_grad=True)
    labels = torch.randint(0, 50, (3, 9))
    labels[0, :4] = IGNORE_INDEX
    labels[2, :] = IGNORE_INDEX
    selected, count = chunked_lm_loss(hidden, weight, labels, chunk=chunk)
    grads = torch.autograd.grad(selected, [hidden, weight])
    every = all_positions_lm_loss(hidden, weight, labels, chunk=chunk)
    every_grads = torch.autograd.grad(every, [hidden, weight])
    assert count == int((labels[:, 1:] != IGNORE_INDEX).sum())
    torch.testing.assert_close(every, selected)
    for got, expected in zip(every_grads, grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_the_graphed_step_computes_the_eager_steps_loss_and_gradients(tiny_model, tmp_path: Path) -> None:
    """Padded to 3 rows and a multiple of 64 tokens, the loss taken at every position, accumulated into the flat
    gradient: the loss and every LoRA gradient are the eager step's (which projects the labelled tokens only)."""
    params = TrainParams(lora_dropout=0.0, batch_size=2, max_length=64)
    spec = TrainJobSpec(model=ModelSpec(id=str(tiny_model.path)), method="lora", lora_rank=4, traces=4,
                        source=DatasetSpec(name="synthetic", n=4), params=params.model_dump(mode="json"), seed=1)
    model, _ = load_base(spec, "lora-cpu")
    model = add_lora(model, spec, params)
    base = model.get_base_model()
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    flats = _flatten([p for p in model.parameters() if p.requires_grad])
    (flat,) = flats
    torch.manual_seed(2)
    ids = torch.randint(3, 300, (2, 21))
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX
    labels[1, 17:] = IGNORE_INDEX
    scale = 1.0 / int((labels[:, 1:] != IGNORE_INDEX).sum())

    eager = micro_step.EagerMicroStep(decoder, head, chunk=5, device="cpu")
    eager_loss = eager(ids, labels, scale)
    assert flat.grad is not None
    eager_grad = flat.grad.clone()
    assert eager_grad.abs().sum() > 0
    flat.grad.zero_()

    padded_ids, padded_labels = micro_step.pad_micro_batch(ids, labels, rows=3, pad_id=0)
    assert padded_ids.shape == (3, 64)
    loss = micro_step.forward_backward(
        decoder, head, padded_ids, padded_labels, torch.tensor(scale), chunk=5, every_position=True
    )
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(flat.grad, eager_grad, rtol=1e-4, atol=1e-6)
    # Accumulated in place: each weight's gradient is still a view of the flat one.
    weight = flats[flat][0]
    assert weight.grad is not None and weight.grad.data_ptr() == flat.grad.data_ptr()


def test_cpu_training_never_asks_for_graphs() -> None:
    step = micro_step.micro_step(object(), object(), chunk=8, device="cpu", graphs=True, rows=2, pad_id=0)
    assert isinstance(step, micro_step.EagerMicroStep)
