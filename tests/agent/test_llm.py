"""LLM mode with langchain-core's fake chat models (no network): parsing and a diagnose loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage

from agent.parsing import rules
from agent.parsing.llm import parse_checked, parse_with_llm
from agent.runner import Agent
from tests.agent.conftest import home_settings, jobs_in

pytestmark = pytest.mark.anyio


def test_the_model_fills_the_same_request() -> None:
    model = FakeListChatModel(
        responses=[
            'Here you go: {"intent": "train", "model": "resnet18", "dataset": "cifar10", '
            '"epochs": 7,'
            ' "gpus": 2}'
        ]
    )
    request, warning = parse_with_llm("a resnet on cifar please, seven passes, two cards", model)
    assert warning is None
    assert request.slots() == {"model": "resnet18", "dataset": "cifar10", "epochs": 7, "gpus": 2}


@pytest.mark.parametrize(
    "reply", ["not json at all", '{"intent": "train", "epochs": -4}', '{"intent": "explode"}']
)
def test_a_bad_model_reply_falls_back_to_the_rules(reply: str) -> None:
    request, warning = parse_with_llm(
        "Train a CNN on MNIST with 3 epochs", FakeListChatModel(responses=[reply])
    )
    assert "used the rules" in warning
    assert request.intent == "train" and request.slots() == {
        "model": "cnn",
        "dataset": "mnist",
        "epochs": 3,
    }


def test_destructive_asks_never_reach_the_model() -> None:
    model = FakeListChatModel(responses=['{"intent": "cancel", "job": "latest"}'])
    request, _ = parse_checked("delete the namespace and all jobs", model)
    assert request.intent == "unknown"
    assert model.i == 0  # the model was not asked


def test_a_constraint_the_model_leaves_out_is_still_refused() -> None:
    model = FakeListChatModel(
        responses=['{"intent": "train", "model": "cnn", "dataset": "mnist", "epochs": 3}']
    )
    request, _ = parse_checked("train a cnn on mnist for 3 epochs with HF_TOKEN=abc", model)
    assert request.intent == "unknown" and request.refused == ["env"]
    assert model.i == 0


@pytest.mark.parametrize(
    ("reply", "invented"),
    [
        ('{"intent": "train", "model": "cnn", "dataset": "mnist", "epochs": 7}', "epochs"),
        ('{"intent": "train", "model": "resnet18", "dataset": "mnist"}', "model"),
        ('{"intent": "train", "model": "cnn", "dataset": "mnist", "gpu_type": "H100"}', "gpu_type"),
        ('{"intent": "train", "model": "cnn", "dataset": "mnist", "budget_usd": 50}', "budget_usd"),
        ('{"intent": "logs", "job": "cnn-mnist-beef"}', "job"),
        (
            '{"intent": "train", "model": "cnn", "dataset": "mnist", "max_seconds": 3600}',
            "max_seconds",
        ),
    ],
)
def test_a_value_the_message_does_not_hold_is_rejected_for_the_rules(
    reply: str, invented: str
) -> None:
    text = "train a cnn on mnist, keep it under $5"
    request, warnings = parse_checked(text, FakeListChatModel(responses=[reply]))
    assert request == rules.parse(text)
    assert len(warnings) == 1 and invented in warnings[0] and "used the rules" in warnings[0]


def test_a_grounded_model_reading_is_kept() -> None:
    reply = '{"intent": "train", "model": "resnet18", "dataset": "cifar10", "epochs": 7, "gpus": 2}'
    request, warnings = parse_checked(
        "a resnet on cifar please, seven passes, two cards", FakeListChatModel(responses=[reply])
    )
    assert warnings == [] and request.epochs == 7 and request.gpus == 2


SEEN: list[list[Any]] = []
OFFERED: list[list[str]] = []


class ToolCallingFake(GenericFakeChatModel):
    """A scripted chat model that accepts tools, recording what it was offered and shown."""

    def bind_tools(self, tools, **kwargs):
        OFFERED.append(
            sorted(getattr(t, "name", None) or getattr(t, "__name__", str(t)) for t in tools)
        )
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        SEEN.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


async def test_diagnose_runs_a_read_only_tool_loop(agent_home: Path) -> None:
    async with Agent(home_settings(agent_home), detach=True) as agent:
        launched = await agent.ask("diag", "Train an MLP on digits for 1 epoch")
        job_id = launched.facts["job_id"]
    script = iter(
        [
            # The structured parse: a tool-calling model answers with_structured_output by a call.
            AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": "Request",
                        "args": {"intent": "diagnose", "job": "latest"},
                        "id": "parse-1",
                    }
                ],
            ),
            # The diagnose loop: look at the job, then answer.
            AIMessage(
                content="",
                tool_calls=[
                    {"name": "training_jobs_get", "args": {"job_id": job_id}, "id": "call-1"}
                ],
            ),
            AIMessage(content=f"{job_id} looks healthy: no failure to explain."),
        ]
    )
    model = ToolCallingFake(messages=script)
    async with Agent(home_settings(agent_home), llm=model) as agent:
        answer = await agent.ask("diag", "why did it fail?")
    assert answer.answer == f"{job_id} looks healthy: no failure to explain."
    assert answer.facts["by"] == "llm" and not answer.facts["warnings"]
    assert OFFERED[0] == ["Request"]
    diagnose_tools = set(OFFERED[-1])
    assert "training_jobs_get" in diagnose_tools and "runs_metric_history" in diagnose_tools
    assert not {"training_jobs_create", "training_jobs_delete", "runs_cost_log"} & diagnose_tools
    tool_results = [m for m in SEEN[-1] if isinstance(m, ToolMessage)]
    assert tool_results and job_id in str(tool_results[0].content)  # the tool really ran
    assert jobs_in(agent_home) == [job_id]
