"""Loaded by every Python process started with tests/rewording on PYTHONPATH: the trainops MCP
servers among them reword their messages when REWORD_SERVER_MESSAGES=1 (see rewording.py)."""

import os
import sys

SERVERS = {"mcp_servers.kubernetes", "mcp_servers.mlflow", "mcp_servers.prometheus"}

if os.environ.get("REWORD_SERVER_MESSAGES") == "1" and SERVERS & set(sys.orig_argv):
    import rewording

    rewording.install()
