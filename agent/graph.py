"""The agent graph: parse -> plan -> (approve) -> trigger -> monitor (loop) -> cost -> report,
with status/logs/cost/cancel/list/compare/register/diagnose handled directly.

`graph` (uncompiled wiring, compiled without a checkpointer) is what langgraph.json points at;
the CLI compiles `builder()` with a SQLite checkpointer so threads survive the process.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agent.context import AgentContext
from agent.nodes.diagnose import diagnose
from agent.nodes.handlers import cancel, compare, cost, list_jobs, logs, register, status
from agent.nodes.parse import parse, route_request
from agent.nodes.plan import approve, plan, route_approval, route_plan
from agent.nodes.report import report
from agent.nodes.run import cost as price_job
from agent.nodes.run import monitor, route_monitor, route_trigger, trigger
from agent.state import AgentState

HANDLERS = {
    "status": status,
    "logs": logs,
    "cost": cost,
    "cancel": cancel,
    "list": list_jobs,
    "compare": compare,
    "register": register,
    "diagnose": diagnose,
}


def builder() -> StateGraph:
    graph = StateGraph(AgentState, context_schema=AgentContext)
    graph.add_node("parse", parse)
    graph.add_node("plan", plan)
    graph.add_node("approve", approve)
    graph.add_node("trigger", trigger)
    graph.add_node("monitor", monitor)
    graph.add_node("price", price_job)
    graph.add_node("report", report)
    for name, node in HANDLERS.items():
        graph.add_node(name, node)
        graph.add_edge(name, END)

    graph.add_edge(START, "parse")
    graph.add_conditional_edges("parse", route_request)
    graph.add_conditional_edges("plan", route_plan)
    graph.add_conditional_edges("approve", route_approval)
    graph.add_conditional_edges("trigger", route_trigger)
    graph.add_conditional_edges("monitor", route_monitor, {"cost": "price", "monitor": "monitor"})
    graph.add_edge("price", "report")
    graph.add_edge("report", END)
    return graph


graph = builder().compile()
