"""parse: the message to a Request (rules, or the LLM with the rules as fallback)."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agent.context import AgentContext
from agent.parsing import rules
from agent.parsing.llm import parse_with_llm
from agent.state import AgentState
from common.vocabulary import Intent

Route = Literal[
    "plan",
    "show_status",
    "show_logs",
    "show_cost",
    "cancel_job",
    "list_jobs",
    "compare_runs",
    "register_model",
    "diagnose_job",
    "report",
]
ROUTES: dict[Intent, Route] = {
    "train": "plan",
    "status": "show_status",
    "logs": "show_logs",
    "cost": "show_cost",
    "cancel": "cancel_job",
    "list": "list_jobs",
    "compare": "compare_runs",
    "register": "register_model",
    "diagnose": "diagnose_job",
}
"""Where each intent goes; the rest (unknown, and sweeps, not available yet) to the report."""


async def parse(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    warnings: list[str] = []
    if preset := state.get("preset"):
        request = preset
    elif runtime.context.llm is not None:
        request, warning = parse_with_llm(state.get("text", ""), runtime.context.llm)
        warnings += [warning] if warning else []
    else:
        request = rules.parse(state.get("text", ""))
    # A new turn: forget the last turn's answer, keep the thread's memory (last_job_id).
    return {
        "request": request,
        "preset": None,
        "turn": state.get("turn", 0) + 1,
        "plan": None,
        "decision": "",
        "job_id": "",
        "job": None,
        "detached": False,
        "utilization": None,
        "cost": None,
        "answer": "",
        "facts": {},
        "warnings": Overwrite(warnings),
    }


def route_request(state: AgentState) -> Route:
    return ROUTES.get(state["request"].intent, "report")
