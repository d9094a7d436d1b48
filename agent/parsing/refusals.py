"""Parts of a request trainops must not or cannot honour: found in the text whatever the parser
made of the rest, so that a job is never launched without them.

Each part names what it found and what can be asked instead. The rules and a language model
both answer to this check: a model that leaves a constraint out of its Request is not trusted
to have understood it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.request import RefusedPart
from common.vocabulary import MAX_JOB_NAME_LENGTH, is_label


@dataclass(frozen=True)
class Refusal:
    part: RefusedPart
    found: str
    """The words of the message that asked for it."""

    @property
    def line(self) -> str:
        return f"{_WHAT[self.part]} ({self.found!r}): {INSTEAD[self.part]}"


_WHAT: dict[RefusedPart, str] = {
    "image": "a container image",
    "node": "a particular node",
    "namespace": "that namespace",
    "env": "environment variables",
    "host_path": "a path on a host",
    "privileges": "elevated privileges",
    "network": "an outside destination",
    "flags": "raw command-line flags",
    "name": "that job name",
    "range": "a value out of range",
    "setting": "a training setting I can't set",
}
INSTEAD: dict[RefusedPart, str] = {
    "image": "jobs run the configured training image; ask for a model, dataset and resources",
    "node": 'the scheduler places jobs; ask for a GPU type or count instead (e.g. "on 2 A100s")',
    "namespace": "ask for one of the namespaces trainops may use, or leave it out",
    "env": "an operator sets job environments (kubernetes.job_env; secrets by reference)",
    "host_path": "jobs read datasets from trainops' dataset volume; name a dataset instead",
    "privileges": "jobs run unprivileged (the restricted Pod Security Standard)",
    "network": "jobs report only to the configured MLflow and Prometheus",
    "flags": "ask in words for epochs, batch size, learning rate, GPUs, CPUs or memory",
    "name": "a job name is lowercase letters, digits and '-', e.g. mnist-baseline",
    "range": "ask for a positive, in-range value",
    "setting": (
        "from chat I set model, dataset, epochs, batch size, learning rate, GPUs (count and "
        "type), nodes, CPUs, memory, budget, name and a fallback dataset"
    ),
}

_IMAGE = [
    re.compile(r"\b(?:docker|container|base|custom|own|oci)\s+images?\b"),
    re.compile(r"\bimage\s*(?:[:=]|\bref(?:erence)?\b)\s*\S+"),
    re.compile(
        r"\b(?:image|from)\s+[a-z0-9][\w.-]*(?:\.[a-z]{2,}(?::\d+)?)?/[\w./-]+(?::[\w.-]+)?"
    ),
    re.compile(r"\bdockerfile\b|\bdocker ?hub\b"),
    # a registry reference anywhere: ghcr.io/x/y:1, nvcr.io/nvidia/pytorch:24.01, a/b:2.3
    re.compile(
        r"(?<![\w/:.])(?:[a-z0-9-]+\.)+[a-z]{2,}(?::\d+)?/[\w.-]+(?:/[\w.-]+)*(?::[\w.-]+)?"
    ),
    re.compile(r"(?<![\w/:.])[a-z0-9][\w.-]*/[a-z0-9][\w.-]*:[\w.-]+(?![\w/])"),
]
_NODE = [
    re.compile(
        r"\b(?:on|to|onto|at|using)\s+(?:the\s+)?(?:node|host|machine|server|box|instance)\s+"
        r"[\"'`]?(?!(?:with|of|each|and|or|for|per|that|which|pool|group)\b)"
        r"(?:[a-z]+[\w.]*-[\w.-]+|[a-z][\w.-]*\d[\w.-]*)"
    ),
    re.compile(r"\b(?:node|host)\s*[:=]\s*\S+"),
    re.compile(r"\bnode[- _]?(?:name|selector|affinity)\b|\baffinity\b|\btolerations?\b"),
    re.compile(r"\bpin(?:ned|ning)?\b.{0,30}\b(?:node|host|machine)\b"),
    re.compile(r"\bip-\d+-\d+-\d+-\d+\b"),
    # a host name: gpu-node-3, worker3, dgx02
    re.compile(r"\b(?:[a-z]+-)*(?:node|host|worker|dgx|server|machine|box)-?\d+[\w.-]*\b"),
    re.compile(r"\b(?:node|host|machine|server|box|instance)\s+(?:named|called)\s+\S+"),
]
_SLOT_KEYS = r"(?!(?:LR|BS|BSZ|EPOCHS?|EPS?|GPUS?|NODES?|BATCH(?:_SIZE)?|CPUS?|MEMORY|MEM)\s*=)"
_ENV_ORIGINAL = [  # upper case as typed; LR=3e-4 or EPOCHS=3 are slots, not variables
    re.compile(r"(?<![\w-])" + _SLOT_KEYS + r"[A-Z][A-Z0-9_]*_[A-Z0-9_]+\s*=\s*\S*"),
    re.compile(r"(?<![\w-])" + _SLOT_KEYS + r"[A-Z]{2,}[A-Z0-9]*=\S+"),  # FOO=bar
]
_ENV = [
    re.compile(r"\benv(?:ironment)?[ _-]?var(?:iable)?s?\b"),
    re.compile(r"\benv\s*[:=]|\b(?:with|set|add|pass|using)\s+(?:an?\s+)?env\b"),
    re.compile(r"\bexport\s+[a-z_][\w]*"),
    re.compile(r"\b(?:set|setting|define)\s+(?:the\s+)?environment\b"),
]
_HOST_PATH = [
    # an absolute or home-relative path ("/etc/x", "~/data", "../x"; not the "/64" of a list)
    re.compile(
        r"(?:^|(?<=[\s(\[=:\"'`,]))(/(?![\d.]+\b)(?:[\w.@+-]+/?)+|~/[\w./-]*|\.\./[\w./-]*)"
    ),
    re.compile(r"\bhost[ _-]?path\b|\bhostpath\b"),
    re.compile(
        r"\bmount(?:ing|ed|s)?\b.{0,40}\b(?:dir(?:ectory)?|folder|path|volume|disk|drive|share|nfs)\b"
    ),
    re.compile(r"\b(?:nfs|smb|cifs)\b"),
]
_PRIVILEGES = [
    re.compile(r"\bprivileged\b|\bprivilege escalation\b|\bescalat\w+ privileges?\b"),
    re.compile(r"\bas root\b|\bwith root\b|\broot (?:user|access|privileges?|rights)\b"),
    re.compile(r"\brun ?as ?(?:user|uid|root|admin|group)\b|\buid\s*[=:]?\s*0\b"),
    re.compile(r"\bhost ?(?:network|pid|ipc)\b|\bhostnetwork\b|\bhostpid\b"),
    re.compile(
        r"\bcap_[a-z_]+\b|\bsys_admin\b|\bnet_admin\b|\b(?:linux|kernel|extra|added|add|more|"
        r"elevated) capabilit(?:y|ies)\b"
    ),
    re.compile(r"\bsecurity ?context\b|\bseccomp\b|\bapparmor\b|\bunconfined\b"),
    re.compile(r"\b(?:admin|administrator|superuser) (?:rights|access|privileges?)\b"),
    re.compile(r"\bcluster-?admin\b|\bsuperuser\b"),
]
_NETWORK = [
    re.compile(
        r"\b(?:https?|s3|gs|gcs|ftp|sftp|tcp|udp|grpc|wss?|file|hdfs|abfss?|az|rsync|ssh)://\S+"
    ),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"),
    re.compile(
        r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|ai|dev|xyz|ru|cn|co|me|info|biz|"
        r"cloud|app|sh|internal|local|lan|corp)(?::\d{1,5})?\b(?![./][a-z])"
    ),
    re.compile(r"\bwebhooks?\b|\bslack\b|\bdiscord\b|\btelegram\b|\bpagerduty\b|\be-?mail\b"),
    re.compile(
        r"\bwandb\b|\bweights (?:and|&) biases\b|\bcomet(?:\.ml)?\b|\bneptune\b|\bdatadog\b"
        r"|\bsplunk\b|\bhugging ?face hub\b|\bpush to (?:the )?hub\b"
    ),
    re.compile(
        r"\b(?:send|ship|stream|upload|post|forward|push|mirror|sync|exfiltrate)\b.{0,30}"
        r"\b(?:to|into)\s+(?:my|our|an?|the)?\s*(?:server|bucket|endpoint|collector|"
        r"splunk|datadog|elastic\w*|wandb|weights (?:and|&) biases|s3|gcs|remote)\b"
    ),
]
_FLAGS = [
    re.compile(r"(?:^|(?<=[\s(\[\"'`]))--[a-z][\w-]*(?:[= ]\S+)?"),
    re.compile(r"(?:^|(?<=[\s(\[\"'`]))-(?!n\b)[a-z]{1,2}\b(?![-\w])"),
]
_SETTING = re.compile(
    r"\b(?:optimi[sz]er|adamw?|sgd|rmsprop|adagrad|lion|momentum|weight[ _-]?decay|dropout|"
    r"warm-?up|lr schedul\w*|cosine|label[ _-]smoothing|gradient (?:clipping|accumulation)|"
    r"grad(?:ient)?[ _-]?clip\w*|mixed[ _-]precision|fp16|bf16|fp8|amp|half[ _-]precision|"
    r"(?:random )?seed|early[ _-]stopping|patience|augment\w*|pre-?trained|freeze|quantiz\w+|"
    r"distill\w*|checkpoint(?:s|ing)? every|save (?:a checkpoint )?every|data ?loader workers|"
    r"num[ _]workers|spot|preemptible|priority(?:[ _]class)?|torch\.?compile|compiled?)\b"
)
_SWEEPABLE = re.compile(r"\b(?:momentum|weight[ _-]?decay|dropout|warm-?up|early[ _-]stopping)\b")
NAME_ASKED = re.compile(
    r"\b(?:called|named|name it|call it|with the name|name(?: it)?\s*[:=]|job name\s*[:=]?)\s*"
    r"(?:[\"'`“”‘’]([^\"'`“”‘’]{1,80})[\"'`“”‘’]|(\S+))"
)


def find(original: str, normalized: str, *, training: bool, sweep: bool = False) -> list[Refusal]:
    """Every unhonourable part of a message (`normalized` is the parser's lowercased text).
    `training`: the message asks for a job, so names and settings are checked too."""
    found: list[Refusal] = []
    taken: list[tuple[int, int]] = []

    def scan(part: RefusedPart, patterns: list[re.Pattern[str]], text: str) -> None:
        for pattern in patterns:
            for match in pattern.finditer(text):
                span = match.span()
                if any(start < span[1] and span[0] < end for start, end in taken):
                    continue  # one part of the message is one refusal
                taken.append(span)
                found.append(Refusal(part, match.group(0).strip()))
                return

    scan("image", _IMAGE, normalized)
    scan("network", _NETWORK, normalized)
    scan("flags", _FLAGS, _without_log_tail(normalized))
    scan("env", _ENV_ORIGINAL, original)
    if not any(r.part == "env" for r in found):
        scan("env", _ENV, normalized)
    scan("host_path", _HOST_PATH, normalized)
    scan("node", _NODE, normalized)
    scan("privileges", _PRIVILEGES, normalized)
    if training:
        if (name := name_problem(original)) is not None:
            found.append(Refusal("name", name))
        settings = [m.group(0) for m in _SETTING.finditer(normalized)]
        if sweep:  # a sweep searches these; it does not set them
            settings = [s for s in settings if not _SWEEPABLE.fullmatch(s)]
        if settings:
            found.append(Refusal("setting", ", ".join(dict.fromkeys(settings))))
    return found


def name_problem(original: str) -> str | None:
    """The asked-for job name when it is not one a job can have (case as typed)."""
    match = NAME_ASKED.search(original)
    if match is None:
        return None
    name = (match.group(1) or match.group(2) or "").strip().rstrip(",.;:!?)")
    if not is_label(name, MAX_JOB_NAME_LENGTH):
        return name or match.group(0)
    return None


def _without_log_tail(t: str) -> str:
    """`tail -n 30` asks for log lines: not a flag."""
    return re.sub(r"\btail\s+-n\s*\d+", " ", t)


def reply(refusals: list[Refusal]) -> str:
    """One answer naming every refused part and what can be asked instead."""
    lines = "; ".join(r.line for r in refusals)
    return f"Not launched, nothing changed: I can't honour {lines}."
