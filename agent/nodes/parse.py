"""parse: the message to a Request (rules, or the LLM with the rules as fallback)."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from agent.context import AgentContext
from agent.parsing import rules
from agent.parsing.llm import parse_with_llm
from agent.request import Request
from agent.state import AgentState

Route = Literal[
    "plan", "status", "logs", "cost", "cancel", "list", "compare", "register", "diagnose", "report"
]


async def parse(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    warnings: list[str] = []
    if state.get("preset"):
        request = Request.model_validate(state["preset"])
    elif runtime.context.llm is not None:
        request, warning = parse_with_llm(state.get("text", ""), runtime.context.llm)
        warnings += [warning] if warning else []
    else:
        request = rules.parse(state.get("text", ""))
    # A new turn: forget the last turn's answer, keep the thread's memory (last_job_id).
    return {
        "request": request.model_dump(mode="json", exclude_none=True),
        "preset": None,
        "turn": state.get("turn", 0) + 1,
        "plan": {},
        "decision": "",
        "job_id": "",
        "job": {},
        "detached": False,
        "utilization": None,
        "cost": None,
        "answer": "",
        "facts": {},
        "warnings": warnings,
    }


def route_request(state: AgentState) -> Route:
    intent = state["request"]["intent"]
    if intent == "train":
        return "plan"
    if intent in ("status", "logs", "cost", "cancel", "list", "compare", "register", "diagnose"):
        return intent
    return "report"  # unknown, and sweeps (not available yet): the report says so
