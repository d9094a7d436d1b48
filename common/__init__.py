"""What every part of trainops agrees on: the vocabulary, error kinds, the telemetry schema, the
settings file, and the few helpers they all need.

The parser, the plan, the MCP servers and the training job import their names, defaults and rules
from here rather than each writing them down. Everything but `common.settings` uses the standard
library alone, so the training image (torch and nothing else guaranteed) can import it.
"""
