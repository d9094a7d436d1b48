"""Prometheus MCP server: bounded PromQL and job utilisation."""
