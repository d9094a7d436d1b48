"""What every node gets at run time (LangGraph Runtime context): settings and open tool sessions.

Built once per agent run and passed down; nodes never read the environment themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.tools import Toolbox
from common.settings import Settings


@dataclass
class AgentContext:
    settings: Settings
    tools: Toolbox
    llm: Any | None = None
    """A LangChain chat model, when TRAINOPS_LLM names one (or a test passes one)."""
    fallback_dataset: str | None = None
    """Dataset a train request may fall back to (loudly) when its own can't be had."""
    thread_id: str = "default"
    detach: bool = False
    """Launch and return at once instead of watching the job to the end."""


def chat_model(spec: str | None) -> Any | None:
    """TRAINOPS_LLM=provider:model through langchain's init_chat_model (the `llm` extra)."""
    if not spec:
        return None
    provider, _, model = spec.partition(":")
    if not model:
        raise ValueError(f"TRAINOPS_LLM={spec!r}: use provider:model, e.g. openai:gpt-4o-mini")
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as e:
        raise ValueError("TRAINOPS_LLM needs the llm extra: pip install 'trainops[llm]'") from e
    return init_chat_model(model, model_provider=provider, temperature=0)
