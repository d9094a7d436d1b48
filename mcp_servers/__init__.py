"""trainops' MCP servers: kubernetes (training jobs), mlflow (runs), prometheus (utilisation)."""
