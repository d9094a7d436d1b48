"""parse: the message to a Request (rules, or the LLM checked against the rules and the text).

Whatever parses it, the same refusals apply: a part that can't be honoured is never dropped. A
request may build on the thread: "the same again but with 2 epochs" takes the previous train
request, and the answer to a question the agent asked ("which dataset?") completes the request
that asked it.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from agent.context import AgentContext
from agent.parsing import refusals, rules
from agent.parsing.llm import parse_checked
from agent.request import Request
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
    "sweep": "plan",
    "status": "show_status",
    "logs": "show_logs",
    "cost": "show_cost",
    "cancel": "cancel_job",
    "list": "list_jobs",
    "compare": "compare_runs",
    "register": "register_model",
    "diagnose": "diagnose_job",
}
"""Where each intent goes; the rest (unknown) to the report."""
BUILDS_ON = ("train", "sweep")
"""Requests a later turn may repeat or complete."""


async def parse(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    warnings: list[str] = []
    text = state.get("text", "")
    if preset := state.get("preset"):
        request = preset
    else:
        request, warnings = parse_checked(text, ctx.llm)
    request = _in_thread(request, state)
    request = _allowed_namespace(request, ctx)
    # A new turn: forget the last turn's answer, keep the thread's memory (last_job_id and the
    # request a later turn may build on).
    update: dict[str, Any] = {
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
        "pending": None,
    }
    if request.intent in BUILDS_ON:
        update["last_request"] = request
    return update


def _in_thread(request: Request, state: AgentState) -> Request:
    """A request completed by the thread: a repeat of the previous train request with changes,
    or the answer to the question the last turn asked."""
    if request.same_as_previous:
        previous = state.get("last_request")
        if previous is None:
            return Request(
                intent="unknown",
                reply="There is no earlier training request in this thread to repeat; say what "
                'to train, e.g. "Train a CNN on MNIST for 3 epochs".',
            )
        changes = request.slots()
        changes.pop("same_as_previous")
        return previous.model_copy(update={**changes, "intent": previous.intent})
    pending = state.get("pending")
    if pending is not None and request.intent in ("unknown", pending.intent):
        answer = rules.parse_answer(state.get("text", ""), pending.intent)
        if answer.intent == pending.intent and answer.slots():
            # "mnist", "the cnn please": fills what the question asked for
            filled = answer.slots()
            open_choices = {
                slot: named for slot, named in (pending.choices or {}).items() if slot not in filled
            }
            return pending.model_copy(update={**filled, "choices": open_choices or None})
    return request


def _allowed_namespace(request: Request, ctx: AgentContext) -> Request:
    allowed = ctx.settings.kubernetes.allowed_namespaces
    if request.namespace is None or request.namespace in allowed:
        return request
    refusal = refusals.Refusal("namespace", request.namespace)
    return Request(
        intent="unknown",
        refused=["namespace"],
        reply=f"{refusals.reply([refusal])} The namespaces jobs may use: {', '.join(allowed)}.",
    )


def route_request(state: AgentState) -> Route:
    return ROUTES.get(state["request"].intent, "report")
