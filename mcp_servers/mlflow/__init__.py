"""MLflow MCP server: runs as summaries an agent can use."""
