"""Kubernetes MCP server: typed training-job tools over a cluster or the local backend."""
