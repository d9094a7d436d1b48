"""What runs inside a training job: the torchrun entry point, models, data, checkpoints,
telemetry. Needs torch alone (MLflow and the Prometheus client are optional)."""
