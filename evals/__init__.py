"""Evaluation suites for trainops (natural-language parsing, scripted scenarios)."""
