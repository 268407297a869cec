"""Prompts as users give them: one string, or a list for a batch (shared by the families'
prompt encoders and input checks)."""

from __future__ import annotations

from typing import Any

__all__ = ["as_prompt_list", "is_prompt"]


def as_prompt_list(prompt: str | list[str] | None, name: str, batch: int | None = None) -> list[str]:
    """A prompt (or list) as a list; a single string is repeated to ``batch`` when given."""
    if prompt is None:
        raise ValueError(f"{name} is missing: pass a string or a list of strings")
    if isinstance(prompt, str):
        return [prompt] * (batch or 1)
    prompts = list(prompt)
    if batch is not None and len(prompts) != batch:
        raise ValueError(f"{name} has {len(prompts)} entries but prompt has {batch}; give one per prompt")
    return prompts


def is_prompt(prompt: Any) -> bool:
    """A string, or a non-empty list / tuple of strings."""
    if isinstance(prompt, str):
        return True
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(isinstance(p, str) for p in prompt)
