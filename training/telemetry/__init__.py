"""What a job tells the world: JSON progress lines, MLflow runs, Prometheus metrics."""
