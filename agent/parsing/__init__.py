"""Turning a message into a Request: deterministic rules (always there) or an LLM."""
