"""One micro-batch's forward and backward pass, eagerly or replayed from a CUDA graph.

At the seeds' sizes a QLoRA step is bound by the host, not the GPU: at Qwen3-4B, batch 4 × 512, a step launched
~12,000 kernels and took 536 ms of CPU against 192 ms of GPU (bench/results/2026-12-03-session7/train-4b-profile.log).
`GraphedMicroSteps` captures the whole forward and backward once per input shape and then replays it: one launch
a micro-batch, whatever the model's depth.

What a graph needs, and what it costs:
- Static shapes. Rows are right-padded to a multiple of `PAD_MULTIPLE` tokens and a short micro-batch is filled
  with rows of padding, so a run needs a handful of graphs. Pads carry no label, and attention is causal, so they
  change no loss or gradient; they cost their compute.
- No data-dependent shapes: the loss is taken at every position (`all_positions_lm_loss`), not only the labelled
  ones, which costs the output projection of the prompt's positions too.
- Gradients accumulate in place into buffers that exist before capture: every trainable weight's `.grad` is a view
  of its flat parameter's (train._flatten), never None.
- torch >= 2.10, where activation checkpointing may save and restore the RNG state while a graph is captured
  (pytorch/pytorch#162505): LoRA dropout replays the same mask in the recomputed forward.
A shape's first micro-batch runs eagerly on a side stream (the warm-up capture needs, and a real step); the graph
is captured right after and serves every later micro-batch of that shape. All graphs share one memory pool: they
replay one at a time, and the only output read after a replay (the loss) is copied before the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from jobs.training.chunked_ce import all_positions_lm_loss, chunked_lm_loss
from jobs.training.data import IGNORE_INDEX

PAD_MULTIPLE = 64
MIN_TORCH = "2.10"

log = logging.getLogger(__name__)


class MicroStep(Protocol):
    def __call__(self, ids: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
        """Run forward and backward on CPU `ids`/`labels` [B, T], accumulate the gradients of loss × `scale`, and
        return the micro-batch's summed token loss (a detached 0-dim tensor on the model's device)."""
        ...


def graphs_supported() -> bool:
    """Whether this torch can capture checkpointed training (pytorch/pytorch#162505)."""
    return torch.torch_version.TorchVersion(torch.__version__) >= MIN_TORCH


class EagerMicroStep:
    """Forward and backward as plain PyTorch calls; the loss is projected at the labelled positions only."""

    def __init__(self, decoder: Any, head: Any, *, chunk: int, device: str) -> None:
        self.decoder, self.head, self.chunk, self.device = decoder, head, chunk, device

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
        return forward_backward(
            self.decoder, self.head, ids.to(self.device), labels.to(self.device), scale, chunk=self.chunk,
            every_position=False,
        )


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    ids: torch.Tensor
    labels: torch.Tensor
    scale: torch.Tensor
    loss: torch.Tensor


class GraphedMicroSteps:
    """Forward and backward captured as one CUDA graph per padded shape, replayed for each micro-batch of it."""

    def __init__(self, decoder: Any, head: Any, *, chunk: int, rows: int, pad_id: int) -> None:
        self.decoder, self.head, self.chunk, self.rows, self.pad_id = decoder, head, chunk, rows, pad_id
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self.side = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # untyped in torch
        self.failed: str | None = None  # why capture was given up; shapes without a graph then run eagerly

    def __call__(self, ids: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
        ids, labels = pad_micro_batch(ids, labels, rows=self.rows, pad_id=self.pad_id)
        graph = self.graphs.get((ids.shape[0], ids.shape[1]))
        if graph is None:
            return self._first_of_shape(ids, labels, scale)
        # Pinned, so the copies queue behind the previous replay instead of waiting for it.
        graph.ids.copy_(ids.pin_memory(), non_blocking=True)
        graph.labels.copy_(labels.pin_memory(), non_blocking=True)
        graph.scale.fill_(scale)
        graph.graph.replay()
        return graph.loss.clone()  # the pool's next replay may overwrite it

    def _forward_backward(self, ids: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return forward_backward(self.decoder, self.head, ids, labels, scale, chunk=self.chunk, every_position=True)

    def _first_of_shape(self, ids: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
        static_ids, static_labels = ids.cuda(), labels.cuda()
        static_scale = torch.full((), scale, device=static_ids.device)
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side):  # warm-up off the default stream, as capture needs
            loss = self._forward_backward(static_ids, static_labels, static_scale)
        torch.cuda.current_stream().wait_stream(self.side)
        if self.failed is None:
            self._capture(static_ids, static_labels, static_scale)
        return loss

    def _capture(self, ids: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor) -> None:
        torch.cuda.synchronize()
        # The warm-up's freed blocks sit in the default pool, which the graph's pool cannot use: hand them back.
        torch.cuda.empty_cache()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                loss = self._forward_backward(ids, labels, scale)
        except RuntimeError as error:  # an op that cannot be captured (a host sync, an old library)
            self.failed = str(error).splitlines()[0][:300]
            log.warning("CUDA graph capture failed, training on eagerly: %s", self.failed)
            return
        self.graphs[(ids.shape[0], ids.shape[1])] = _Graph(graph, ids, labels, scale, loss)


def forward_backward(
    decoder: Any, head: Any, ids: torch.Tensor, labels: torch.Tensor, scale: float | torch.Tensor, *, chunk: int,
    every_position: bool,
) -> torch.Tensor:
    """Forward, the summed token loss, backward of loss × `scale`; returns the detached loss sum.

    `every_position`: project the loss at every position (what a graph captures: every shape follows from `ids`
    alone, and `scale` is a tensor a replay reads) rather than at the labelled ones only (eager: less work).
    Rows are right-padded and attention is causal, so no real token can see a pad and pads carry no label: a mask
    would change nothing but cost a mask build per layer and keep SDPA off its fused causal kernels.
    """
    hidden = decoder(input_ids=ids).last_hidden_state
    if every_position:
        loss_sum = all_positions_lm_loss(hidden, head.weight, labels, chunk=chunk)
    else:
        loss_sum, _ = chunked_lm_loss(hidden, head.weight, labels, chunk=chunk)
    if loss_sum.requires_grad:  # a micro-batch truncated to its prompt has nothing to learn
        torch.autograd.backward(loss_sum * scale)  # Tensor.backward, typed
    return loss_sum.detach()


def pad_micro_batch(
    ids: torch.Tensor, labels: torch.Tensor, *, rows: int, pad_id: int, multiple: int = PAD_MULTIPLE
) -> tuple[torch.Tensor, torch.Tensor]:
    """`ids`/`labels` [b, t] right-padded to [max(b, rows), t rounded up to `multiple`]: pad ids, no labels."""
    width = -(-ids.shape[1] // multiple) * multiple
    height = max(ids.shape[0], rows)
    if (height, width) == tuple(ids.shape):
        return ids, labels
    padded_ids = ids.new_full((height, width), pad_id)
    padded_labels = labels.new_full((height, width), IGNORE_INDEX)
    padded_ids[: ids.shape[0], : ids.shape[1]] = ids
    padded_labels[: ids.shape[0], : ids.shape[1]] = labels
    return padded_ids, padded_labels


def micro_step(decoder: Any, head: Any, *, chunk: int, device: str, graphs: bool, rows: int, pad_id: int) -> MicroStep:
    """Graph-replayed micro-steps on CUDA when asked for and supported, eager ones otherwise."""
    if device == "cuda" and graphs and graphs_supported():
        return GraphedMicroSteps(decoder, head, chunk=chunk, rows=rows, pad_id=pad_id)
    return EagerMicroStep(decoder, head, chunk=chunk, device=device)
