"""The agent graph: parse -> plan -> (approve) -> trigger -> monitor (loop) -> analyze_cost ->
report, with status/logs/cost/cancel/list/compare/register/diagnose answered by their handlers.

`graph` (compiled without a checkpointer) is what langgraph.json points at; the CLI compiles
`builder()` with a SQLite checkpointer so threads survive the process.
"""

from __future__ import annotations

from typing import Any, cast

from langgraph.graph import END, START, StateGraph

from agent.context import AgentContext
from agent.nodes.diagnose import diagnose_job
from agent.nodes.handlers import (
    cancel_job,
    compare_runs,
    list_jobs,
    register_model,
    show_cost,
    show_logs,
    show_status,
)
from agent.nodes.parse import parse, route_request
from agent.nodes.plan import approve, plan, route_approval, route_plan
from agent.nodes.report import report
from agent.nodes.run import analyze_cost, monitor, route_monitor, route_trigger, trigger
from agent.state import AgentState

HANDLERS = (
    show_status,
    show_logs,
    show_cost,
    cancel_job,
    list_jobs,
    compare_runs,
    register_model,
    diagnose_job,
)


def builder() -> StateGraph[AgentState, AgentContext, AgentState, AgentState]:
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("parse", parse)
    graph.add_node("plan", plan)
    graph.add_node("approve", approve)
    graph.add_node("trigger", trigger)
    graph.add_node("monitor", monitor)
    graph.add_node("analyze_cost", analyze_cost)
    graph.add_node("report", report)
    for handler in HANDLERS:
        graph.add_node(handler.__name__, cast(Any, handler))  # a node built by @handler
        graph.add_edge(handler.__name__, END)

    graph.add_edge(START, "parse")
    graph.add_conditional_edges("parse", route_request)
    graph.add_conditional_edges("plan", route_plan)
    graph.add_conditional_edges("approve", route_approval)
    graph.add_conditional_edges("trigger", route_trigger)
    graph.add_conditional_edges("monitor", route_monitor)
    graph.add_edge("analyze_cost", "report")
    graph.add_edge("report", END)
    return graph


graph = builder().compile()
