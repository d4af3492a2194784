"""Prompt templates as data (jobs/data/prompt_templates/gsm8k.yaml) and the chat messages built from them."""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from jobs.data.question import Question

DEFAULT_TEMPLATE = "zero_shot"
# `review` (reflection's second user turn) and `answer_prefix` (budget forcing's forced
# answer) are read only by the strategies that need them.
TEMPLATE_FIELDS = {"system", "user", "examples", "review", "answer_prefix"}


# The templates `eval.prompt` may name (jobs.specs.PromptPreset); zero_shot is what every strategy asked before.
PRESETS = ("zero_shot", "gsm8k_5shot", "gsm8k_cot_8shot")


def _read(path: str) -> Any:
    return yaml.safe_load(resources.files("jobs.data").joinpath(path).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _packaged_templates() -> dict[str, dict[str, Any]]:
    templates: dict[str, dict[str, Any]] = _read("prompt_templates/gsm8k.yaml")
    for template in templates.values():
        if "exemplars" in template:
            template["examples"] = _exemplar_turns(template["user"], _read(template.pop("exemplars"))["examples"])
    return templates


def _exemplar_turns(user: str, exemplars: list[dict[str, str]]) -> list[dict[str, str]]:
    """Few-shot exemplars ({question, answer}) as the user/assistant turns of a template whose `user` asks them."""
    return [{"user": user.replace("{question}", e["question"]), "assistant": e["answer"]} for e in exemplars]


def question_template(preset: str, default: str) -> str:
    """The template a strategy asks its question with: the run's preset, or the strategy's own under zero_shot."""
    return default if preset == DEFAULT_TEMPLATE else preset


def load_templates(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """The packaged templates with `overrides` merged in, field by field per template.

    `{"zero_shot": {"system": ""}}` changes only zero_shot's system prompt; a new name adds
    a template. Unknown fields are refused here rather than silently ignored.
    """
    templates = copy.deepcopy(_packaged_templates())
    for name, fields in (overrides or {}).items():
        unknown = set(fields) - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"prompt template {name!r}: unknown fields {sorted(unknown)}")
        merged = {**templates.get(name, {}), **fields}
        if "user" not in merged or "{question}" not in merged["user"]:
            raise ValueError(f"prompt template {name!r}: `user` must contain {{question}}")
        templates[name] = merged
    return templates


def build_messages(
    question: Question | str,
    template_name: str = DEFAULT_TEMPLATE,
    templates: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, str]]:
    """Chat messages (system, worked examples, user) asking `question` with the named template."""
    templates = templates if templates is not None else _packaged_templates()
    if template_name not in templates:
        raise KeyError(f"unknown prompt template {template_name!r} (known: {', '.join(templates)})")
    template = templates[template_name]
    text = question.question if isinstance(question, Question) else question
    messages = [{"role": "system", "content": template["system"]}] if template.get("system") else []
    for example in template.get("examples") or []:
        messages.append({"role": "user", "content": example["user"]})
        messages.append({"role": "assistant", "content": example["assistant"]})
    # replace, not str.format: a question may contain braces.
    messages.append({"role": "user", "content": template["user"].replace("{question}", text)})
    return messages
