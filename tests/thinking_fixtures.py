"""A tiny random reasoning model: a Qwen3-architecture model with `<think>`/`</think>` tokens and a chat
template with Qwen3's `enable_thinking` switch, rigged so that its greedy answer to a probe opens a thinking
block, closes it and ends at known token positions.

Random weights never emit a delimiter by themselves. As in tests.model_fixtures, swapping two rows of the
output layer makes the model emit a chosen token exactly where it would have emitted another, and nowhere
earlier (argmax changes only where one of the two was the winner, and neither won before that position).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from tests.model_fixtures import EOS, PROBE, _greedy_ids, build_tiny_tokenizer

# Qwen3's own switch, reduced to what matters here: with thinking off the prompt carries an empty block.
QWEN3_LIKE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


@dataclass(frozen=True)
class ThinkingModel:
    path: Path
    probe: list[dict[str, str]]
    open_at: int  # generated token index of <think>
    close_at: int  # ... of </think>
    eos_at: int  # ... of EOS


def build_thinking_model(directory: Path, *, open_at: int = 0, close_at: int = 4, eos_at: int = 8) -> ThinkingModel:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tiny_tokenizer(directory)
    tokenizer.add_tokens(["<think>", "</think>"])  # type: ignore[attr-defined]  # plain added tokens, as Qwen3's
    tokenizer.chat_template = QWEN3_LIKE  # type: ignore[attr-defined]
    tokenizer.save_pretrained(directory)  # type: ignore[attr-defined]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<think>", "</think>", EOS)}  # type: ignore[attr-defined]
    config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,  # type: ignore[arg-type]
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=1024,
        tie_word_embeddings=False, eos_token_id=ids[EOS],
    )
    for seed in range(20):  # a random model may loop right after `</think>`: take one that answers a little
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config).eval()
        at: dict[str, int] = {}
        for token, wanted in (("<think>", open_at), ("</think>", close_at), (EOS, eos_at)):
            at[token] = _rig(model, tokenizer, ids[token], wanted, after=max(at.values(), default=-1))
        if at[EOS] - at["</think>"] >= 3:
            break
    model.generation_config.eos_token_id = ids[EOS]
    model.save_pretrained(directory)
    return ThinkingModel(directory, PROBE, at["<think>"], at["</think>"], at[EOS])


def _rig(model: object, tokenizer: object, target: int, wanted: int, *, after: int) -> int:
    """Make greedy decoding of PROBE emit `target` at the first usable index >= `wanted` (else the first one
    after `after`, a random model may loop); that index."""
    continuation = _greedy_ids(model, tokenizer, PROBE, steps=wanted + 8)
    candidates = [*range(wanted, len(continuation)), *range(after + 1, wanted)]
    for index in candidates:
        token = continuation[index]
        earlier = continuation[:index]
        if token != target and token not in earlier and target not in earlier:
            with torch.no_grad():
                rows = model.lm_head.weight  # type: ignore[attr-defined]
                rows[[target, token]] = rows[[token, target]].clone()
            return index
    raise AssertionError("no position to rig")
