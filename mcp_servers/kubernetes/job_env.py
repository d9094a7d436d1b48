"""What a job's environment may hold, and what the local backend gives a replica besides.

A spec's `env` may tune the job (NCCL_*, OMP_*, CUDA_* switches, its own settings). It may not
set what trainops sets itself (ranks, rendezvous, telemetry), change what code runs (loader and
interpreter paths), or redirect where the job reads or writes or whom it talks to (home, temp
and cache dirs, proxies, CA bundles, endpoints). Secrets go in `secret_env`, as references.
"""

from __future__ import annotations

import re
from typing import Final

from mcp_servers.redaction import is_secret_name

ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SET_BY_TRAINOPS: Final = re.compile(
    r"^(TRAINOPS_\w*|PET_\w*|TORCHELASTIC_\w*|MLFLOW_\w*|MASTER_ADDR|MASTER_PORT|RANK|"
    r"WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|GROUP_RANK|GROUP_WORLD_SIZE|ROLE_RANK|ROLE_NAME|"
    r"ROLE_WORLD_SIZE|NODE_RANK|CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES|OMP_NUM_THREADS)$"
)
_CHANGES_CODE: Final = re.compile(
    r"^(LD_\w*|DYLD_\w*|PYTHON\w*|PATH|BASH_ENV|ENV|PERL5LIB|NODE_OPTIONS|"
    r"TORCHINDUCTOR_CACHE_DIR|TRITON_\w*_DIR)$"
)
_REDIRECTS: Final = re.compile(
    r"(?i)^(HOME|TMPDIR|TEMP|TMP|XDG_\w*|\w*_CACHE_DIR|\w*_CACHE|\w*_HOME|HF_\w*|"
    r"TRANSFORMERS_\w*|\w*_PROXY|SSL_CERT_\w*|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|"
    r"\w*_CA_BUNDLE|\w*_CA_CERTS?|AWS_\w*ENDPOINT\w*|AWS_CONFIG_FILE|"
    r"AWS_SHARED_CREDENTIALS_FILE|KUBECONFIG|GIT_\w*|NETRC|NCCL_DEBUG_FILE|NCCL_TOPO_FILE)$"
)


def env_problem(name: str) -> str | None:
    """Why a spec's env may not set `name` (with what to do instead), or None if it may."""
    if not ENV_NAME.match(name):
        return f"{name!r} is not a valid environment variable name"
    if _SET_BY_TRAINOPS.match(name):
        return f"{name} is set by trainops itself and can't be overridden"
    if _CHANGES_CODE.match(name):
        return f"{name} would change what code the job runs; it is not allowed"
    if is_secret_name(name):
        return f"{name} looks like a secret; pass it in secret_env as a reference to a Secret"
    if _REDIRECTS.match(name):
        return (
            f"{name} would redirect where the job reads or writes or whom it talks to; the "
            "job's paths and endpoints come from its spec and the server's configuration"
        )
    return None


def operator_env_problem(name: str) -> str | None:
    """Why the server's own `kubernetes.job_env` may not set `name`: the operator may point
    jobs at endpoints, proxies and CA bundles, not override trainops or the code, nor put a
    secret in clear."""
    if not ENV_NAME.match(name):
        return f"{name!r} is not a valid environment variable name"
    if _SET_BY_TRAINOPS.match(name) or _CHANGES_CODE.match(name):
        return f"{name} is not for kubernetes.job_env: trainops sets it, or it changes the code"
    if is_secret_name(name):
        return f"{name} looks like a secret; jobs take secrets by reference (secret_env)"
    return None


BASE_ENV: Final = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
"""What a local replica inherits from this machine, as a container inherits its image's PATH and
locale; HOME and TMPDIR are the replica's own folders, and nothing else of the server's
environment (keys, tokens, its own settings) reaches the job."""
