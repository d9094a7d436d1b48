"""The graph's nodes: parse, plan, run (trigger, monitor, analyze_cost), report, handlers."""
