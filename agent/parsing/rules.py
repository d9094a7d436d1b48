"""The deterministic parser: offline, always available, the contract's reference implementation.

Order matters and is deliberate: refusals first (destructive or out-of-scope asks are never
mapped onto a nearby action), then the intents whose words are least ambiguous.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, TypeVar

from pydantic import ValidationError

from agent.parsing.numbers import (
    NUMBER,
    SIGNED_NUMBER,
    NotAWholeNumber,
    as_int,
    normalize_numbers,
)
from agent.request import CAPABILITIES, ParamChoice, ParamRange, Request
from common.telemetry import MlflowMetric, higher_is_better
from common.vocabulary import JOB_INTENTS, DatasetName, Intent, ModelName

MAX_TEXT = 2000
T = TypeVar("T", bound=str)

# -- vocabulary -------------------------------------------------------------------------------

MODEL_WORDS: list[tuple[ModelName, str]] = [
    ("resnet18", r"\bres-?net(?:[- ]?18)?\b|\bresidual (?:net(?:work)?|cnn)\b"),
    (
        "gpt",
        r"\b(?:nano-?)?gpt(?:-?\d)?\b|\btransformers?\b|\blanguage models?\b|\bllm\b|\bdecoder(?:-only)?\b",
    ),
    (
        "mlp",
        r"\bmlps?\b|\bmulti-?layer perceptron\b|\bperceptron\b|\bfeed-?forward(?: net(?:work)?)?\b"
        r"|\bfully[- ]connected(?: net(?:work)?)?\b|\bdense (?:net(?:work)?|model)\b",
    ),
    (
        "cnn",
        r"\bcnns?\b|\bconv-?nets?\b|\bconv nets?\b|\bconvolutional(?: neural)?(?: net(?:work)?)?\b"
        r"|\blenet\b",
    ),
]
DATASET_WORDS: list[tuple[DatasetName, str]] = [
    ("fashion-mnist", r"\bfashion[- ]?mnist\b|\bf-?mnist\b|\bzalando\b|\bfashion\b"),
    ("mnist", r"\bmnist\b|\bhandwritten digits?\b"),
    ("cifar10", r"\bcifar[- ]?10\b|\bcifar\b"),
    ("digits", r"\b(?:sklearn|scikit-learn|bundled|8x8) digits\b|\bdigits(?: dataset)?\b"),
    (
        "synthetic",
        r"\bsynthetic\b|\b(?:random|fake|dummy|toy|generated) (?:data|dataset|tokens|images)\b",
    ),
]
REFUSE = re.compile(
    r"\bkubectl\b|\bhelm\b|\brm\s+-rf\b|\bsudo\b|\bssh\b|\bexec\b|\bshell\b|\bbash\b|\bdrop table\b"
    r"|\$\(|\bcurl\b|\bwget\b|\|\s*(?:sh|bash|zsh)\b|&&|\bkill\s+-\d|\breboot\b"
    r"|`[^`]*\b(?:rm|sudo|curl|wget|sh|reboot|kill|kubectl|python)\b[^`]*`"
    r"|\b(?:delete|remove|destroy|wipe|nuke|purge|erase)\b.{0,30}\b(?:namespace|cluster|nodes?|pvcs?|"
    r"volumes?|database|everything|all (?:jobs|runs|experiments|data|models)|experiments?|bucket|"
    r"secrets?|deployments?)\b"
    r"|\b(?:scale|cordon|drain|taint|reboot|shut ?down)\b.{0,20}\b(?:cluster|nodes?)\b"
    r"|\bignore (?:all |any |the |your )?(?:previous|prior|above) instructions\b|\bsystem prompt\b"
    r"|\b(?:mine|mining)\b.{0,20}\b(?:crypto|bitcoin|monero)\b|\bbitcoin\b|\bcrypto ?mining\b"
    r"|\b(?:password|credentials?|api key|token)s?\b.{0,20}\b(?:show|print|give|reveal|leak|dump)\b"
    r"|\b(?:show|print|give|reveal|leak|dump)\b.{0,20}\b(?:password|credentials?|api keys?|secrets?)\b"
)
TRAIN_VERB = re.compile(
    r"\b(?:train|training|trains|retrain|fit|finetune|fine-tune|launch|kick off|start|run|spin up)\b"
)
SWEEP = re.compile(
    r"\b(?:sweeps?|hyper-?param(?:eter)?s?|hparams?|(?<!fine-)(?<!fine )tune|(?<!fine-)(?<!fine )tuning|grid search|random search|"
    r"search over|search space|bayesian optimi[sz]ation|asha|hyperband|pbt|trials)\b"
)
CANCEL = re.compile(r"\b(?:cancel|abort|kill|terminate|stop|halt)\b")
LOGS = re.compile(r"\b(?:logs?|stdout|stderr|tail|printed|console output|output of)\b")
DIAGNOSE = re.compile(
    r"\b(?:why|diagnos\w*|what went wrong|what happened|debug|troubleshoot|root cause|"
    r"failed|failing|crash(?:ed|ing)?|broke|broken|oom|out of memory|nan|diverg\w*|stuck)\b"
)
COST = re.compile(
    r"\b(?:cost|costs|costing|spend|spent|spending|price|pricing|bill|billing|how much|expense|"
    r"expenses|dollars|money|charge[sd]?)\b"
)
COMPARE = re.compile(r"\b(?:compare|comparison|versus|vs\.?|difference between|side by side)\b")
REGISTER = re.compile(r"\b(?:register|registry|promote|publish|alias|tag (?:it|the model) as)\b")
LIST = re.compile(
    r"\b(?:list|show|see|what|which|any|all|my|recent|running|active|pending|failed|finished)\b"
    r".{0,25}\b(?:jobs|runs|trainings)\b|\bjobs? (?:list|running)\b|\bwhat(?:'s| is) running\b"
)
STATUS = re.compile(
    r"\b(?:status|progress|going|doing|done|finished|complete|completed|eta|how far|state|"
    r"update|still running|accuracy so far|loss so far|where are we|how(?:'s| is) (?:it|the job|training))\b"
)
ESTIMATE = re.compile(r"\b(?:would|will|estimate|estimated|expect|projected|predict)\b")
LATEST = re.compile(
    r"\b(?:it|its|it's|latest|(?:the )?last (?:job|run|training|one|model)|previous (?:job|run)|"
    r"that(?: job| run| one| training)?|this (?:job|run|training)|the (?:job|run|training|model)|"
    r"my (?:job|run|training|last|latest))\b"
)
MIXED_SCRIPT = re.compile(r"\b(?=\w*[a-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])\w+\b")
NEGATIVE_COUNT = re.compile(
    r"(?<![\w.])-\s*\d+(?:\.\d+)?\s*(?:x\s*)?(?:gpus?|nodes?|machines?|epochs?|trials?|lines?|replicas?)\b"
)
NEGATIVE_MONEY = re.compile(
    r"\$\s*-\s*\d|(?<![\w.])-\s*\$\s*\d|-\s*\d+(?:\.\d+)?\s*(?:usd|dollars?|bucks)\b"
)
JOB_ID = re.compile(r"\b([a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{4})\b")
JOB_NAMED = re.compile(  # a name with a digit or a dash: "job mnist-baseline", not "job crashed"
    r"\bjob\s+(?:id\s+)?[\"'`]?([a-z0-9]*[-0-9][a-z0-9-]*[a-z0-9])\b"
)
NOT_JOB_NAMES = frozenset(
    {"is", "id", "status", "logs", "cost", "list", "that", "this", "the", "and"}
)
# A job named right after the verb: "cancel baseline-run", "logs of mnist-sweep-2".
JOB_AFTER_VERB = re.compile(
    r"\b(?:cancel|abort|kill|terminate|stop|halt|logs? (?:of|for)|status of|cost of|diagnose|"
    r"tail)\s+[\"'`]?([a-z0-9]+(?:-[a-z0-9]+)+)\b"
)
# cancel acts on one training job: "stop the mlflow server" or "kill all processes" is not one.
CANCEL_OBJECT = re.compile(
    r"\b(?:cancel|abort|kill|terminate|stop|halt)\b\s+(?:it|this|that|latest|last|current|"
    r"(?:[\w-]+\s+){0,3}(?:jobs?|runs?|training|trainings)|[a-z0-9]+(?:-[a-z0-9]+)+)\b"
)
BULK = re.compile(r"\b(?:all|every|everything|each|any)\b")
DELETE = re.compile(r"\b(?:delete|remove|destroy|wipe|nuke|purge|erase|rm)\b")

CURRENCY = r"(?:\$|usd|dollars?|bucks)"
BUDGET = [
    re.compile(
        r"\b(?:under|below|less than|at most|max(?:imum)?|no more than|not more than|capped? at|cap it at|"
        r"within|up to|limit(?:ed)? to|budget(?: is| of|:)?|spend(?:ing)? (?:at most|up to|no more than)?|"
        r"keep (?:it|the cost|costs?) (?:under|below|to|at|within))\s*\$\s*" + NUMBER
    ),
    re.compile(
        r"\b(?:under|below|less than|at most|no more than|within|up to|budget(?: of| is)?|cap(?:ped)? at)\s*"
        + NUMBER
        + r"\s*(?:usd|dollars?|bucks)\b"
    ),
    re.compile(r"\$\s*" + NUMBER + r"\s*(?:budget|max|maximum|cap|limit|or less|tops)\b"),
    re.compile(
        r"\b(?:do not|don't|never) (?:spend|go over|exceed)(?: more than)?\s*\$?\s*"
        + NUMBER
        + r"\s*(?:\$|usd|dollars?|bucks)?"
    ),
    re.compile(r"\bbudget\s*(?:of|is|=|:)?\s*" + NUMBER + r"\b"),
]
METRICS = {
    "val accuracy": MlflowMetric.VAL_ACCURACY,
    "validation accuracy": MlflowMetric.VAL_ACCURACY,
    "val_accuracy": MlflowMetric.VAL_ACCURACY,
    "val acc": MlflowMetric.VAL_ACCURACY,
    "accuracy": MlflowMetric.VAL_ACCURACY,
    "test accuracy": MlflowMetric.TEST_ACCURACY,
    "val loss": MlflowMetric.VAL_LOSS,
    "validation loss": MlflowMetric.VAL_LOSS,
    "val_loss": MlflowMetric.VAL_LOSS,
    "loss": MlflowMetric.VAL_LOSS,
    "perplexity": MlflowMetric.VAL_PERPLEXITY,
    "val perplexity": MlflowMetric.VAL_PERPLEXITY,
    "throughput": MlflowMetric.SAMPLES_PER_SEC,
    "samples per second": MlflowMetric.SAMPLES_PER_SEC,
}
METRIC_WORDS = "|".join(sorted(map(re.escape, METRICS), key=len, reverse=True))
PARAM_NAMES = {
    "lr": "lr",
    "learning rate": "lr",
    "learning rates": "lr",
    "batch size": "batch_size",
    "batch sizes": "batch_size",
    "dropout": "dropout",
    "weight decay": "weight_decay",
    "momentum": "momentum",
    "epochs": "epochs",
    "warmup": "warmup_fraction",
}
PARAM_WORDS = "|".join(sorted(map(re.escape, PARAM_NAMES), key=len, reverse=True))


def parse(text: str) -> Request:
    """The Request for a message; anything it cannot map is `unknown` with a reply."""
    if not isinstance(text, str):
        return _unknown("I only understand text.")
    clean = " ".join(text.replace("\x00", " ").split())
    if not clean:
        return _unknown("The message was empty.")
    if len(clean) > MAX_TEXT:
        return _unknown(f"That message is too long ({len(clean)} characters; {MAX_TEXT} at most).")
    t = normalize(clean)
    if MIXED_SCRIPT.search(t):
        return _unknown("A word mixes alphabets (e.g. Latin and Cyrillic look-alikes); retype it.")
    if re.match(r"\s*[\[{<]", t):
        return _unknown("That looks like code or data, not a request; say it in a sentence.")
    if REFUSE.search(t):
        return _unknown(
            "That is outside what trainops does: it never runs commands or deletes "
            "anything but its own training jobs."
        )
    if DELETE.search(t):
        return _unknown(
            'trainops deletes nothing; to stop a job say "cancel <job id>" or "cancel it".'
        )
    intent = _intent(JOB_ID.sub(" ", t))  # "cnn-mnist-3f2a" is a job, not a model and dataset
    if intent == "unknown":
        return _unknown()
    if intent == "cancel" and (BULK.search(t) or not CANCEL_OBJECT.search(t)):
        return _unknown(
            'I cancel one training job at a time; say which, e.g. "cancel cnn-mnist-3f2a" '
            'or "cancel the latest job".'
        )
    if NEGATIVE_COUNT.search(t):
        return _unknown("Counts (epochs, GPUs, nodes, trials, lines) can't be negative.")
    if NEGATIVE_MONEY.search(t):
        return _unknown('A budget can\'t be negative; say e.g. "under $5".')
    if intent == "train" and _sweep_params(t):
        intent = "sweep"  # "train ... with batch sizes 32, 64 and 128" is one run per value
    try:
        slots = _slots(t, clean, intent)
    except NotAWholeNumber as e:
        return _unknown(
            f"{e} is not a whole number; epochs, GPUs, nodes, batch size, trials and lines are."
        )
    if intent == "register" and "name" not in slots and re.search(r"\b(?:as|named|called)\s+\S", t):
        return _unknown(
            "A model name holds letters, digits, '-', '_' and '.'; "
            'e.g. "register it as mnist-cnn".'
        )
    try:
        return Request(intent=intent, **slots)
    except ValidationError as e:
        problem = e.errors()[0]
        field = ".".join(str(p) for p in problem["loc"])
        return _unknown(
            f"I understood a {intent} request but {field} is out of range "
            f"({problem['msg'].lower()})."
        )


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()  # fullwidth and other compatibility forms
    t = t.replace("–", "-").replace("—", "-").replace("×", "x").replace("’", "'").replace("−", "-")
    return normalize_numbers(t)


def _unknown(why: str | None = None) -> Request:
    return Request(intent="unknown", reply=f"{why} {CAPABILITIES}" if why else CAPABILITIES)


def _first(vocabulary: list[tuple[T, str]], t: str) -> T | None:
    best: tuple[int, T] | None = None
    for name, pattern in vocabulary:
        match = re.search(pattern, t)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), name)
    return best[1] if best else None


def _intent(t: str) -> Intent:
    has_model = _first(MODEL_WORDS, t) is not None
    has_dataset = _first(DATASET_WORDS, t) is not None
    has_subject = has_model or has_dataset
    if SWEEP.search(t) and (has_subject or re.search(r"\b(?:sweep|tune|trials|search)\b", t)):
        return "sweep"
    if REGISTER.search(t):
        return "register"
    if COMPARE.search(t):
        return "compare"
    if CANCEL.search(t) and not re.search(r"\bearly stop", t):
        return "cancel"
    # Money words ask about cost, unless they are a train request's budget ("keep it under $5").
    asks_cost = not TRAIN_VERB.search(t) or ESTIMATE.search(t) or not has_subject
    if COST.search(t) and asks_cost and (not _budget(t) or not has_subject):
        return "cost"
    if TRAIN_VERB.search(t) and (has_subject or re.search(r"\bepochs?\b", t)):
        return "train"
    if LOGS.search(t):
        return "logs"
    if LIST.search(t):
        return "list"
    if DIAGNOSE.search(t):
        return "diagnose"
    if STATUS.search(t):
        return "status"
    if has_model and has_dataset:
        return "train"  # "resnet18 on cifar10, 5 epochs"
    return "unknown"


def _slots(t: str, original: str, intent: Intent) -> dict[str, Any]:
    slots: dict[str, Any] = {}
    job = _job(t)
    # "cnn-mnist-3f2a" names a job, not a model and a dataset.
    words = JOB_ID.sub(" ", t)
    if job not in (None, "latest"):
        words = re.sub(rf"\b{re.escape(job)}\b", " ", words)
    if intent in ("train", "sweep", "cost", "compare", "list"):
        slots["model"] = _first(MODEL_WORDS, words)
        slots["dataset"] = _first(DATASET_WORDS, words)
    if intent in ("train", "sweep", "cost"):
        t = words
        slots["epochs"] = _int(
            t,
            r"(?<![\w.])" + SIGNED_NUMBER + r"\s*(?:full\s+)?(?:epochs?|passes|eps)\b",
            r"\bepochs?\s*(?:=|:|of|to)?\s*" + SIGNED_NUMBER + r"(?![\w.])",
        )
        slots.update(_resources(t))
        slots["budget_usd"] = _budget(t)
        slots["lr"] = _float(t, r"(?:learning[- ]rate|\blr)\s*(?:of|=|:|at|to|is)?\s*" + NUMBER)
        slots["batch_size"] = _int(
            t,
            r"batch[- ]?size\s*(?:of|=|:|to|is)?\s*" + NUMBER + r"\b(?!\s*(?:,|and|or)\s*\d)",
            r"\bbs\s*=?\s*" + NUMBER + r"\b",
            r"\bbatch(?:es)? of\s*" + NUMBER + r"\b",
            r"\b" + NUMBER + r"\s*(?:samples |images )?per batch\b",
        )
        slots["name"] = _match(
            t,
            r"\b(?:called|named|name it|call it|with the name|name:)\s*[\"'`]?([a-z0-9][a-z0-9-]{0,50}[a-z0-9])",
        )
        slots["namespace"] = _match(
            t,
            r"\bnamespace\s*[\"'`:=]?\s*([a-z0-9][a-z0-9-]{0,61}[a-z0-9])",
            r"\bin (?:the )?([a-z0-9][a-z0-9-]{0,61}[a-z0-9]) namespace\b",
            r"\bns\s*[=:]\s*([a-z0-9][a-z0-9-]{0,61}[a-z0-9])",
        )
    if intent == "sweep":
        slots.update(_sweep(t))
        for swept in slots.get("params") or {}:
            if swept in ("batch_size", "lr", "epochs"):
                slots[swept] = None  # a searched parameter is not also a fixed one
    if intent in JOB_INTENTS or intent == "compare":
        about_many = intent == "cost" and (
            slots.get("model")
            or slots.get("dataset")
            or _period(t)
            or re.search(r"\bexperiment\b", t)
        )
        if about_many and job == "latest":
            job = None  # "how much would it cost to train ..." asks for an estimate
        elif job is None and intent in JOB_INTENTS and not about_many:
            job = "latest"
        slots["job"] = job
    if intent == "logs":
        slots["lines"] = _int(
            t,
            r"\b(?:last|tail|final|first)\s*" + NUMBER + r"\s*(?:log\s+)?lines?\b",
            r"\b" + NUMBER + r"\s*lines?\b",
        )
    if intent in ("cost", "list", "compare"):
        slots["period"] = _period(t)
        slots["experiment"] = _match(t, r"\bexperiment\s+[\"'`]?([\w.-]+)")
    if intent in ("compare", "register"):
        metric, mode = _objective(t)
        slots["metric"], slots["mode"] = metric, mode
    if intent == "register":
        slots["name"] = _match(
            t,
            r"\b(?:as|named|called|to|under)\s+[\"'`]?(?!(?:the|a|an|my|our|registry|it)\b)"
            r"([a-z0-9][a-z0-9_.-]{0,60}[a-z0-9])\b",
        )
    return {k: v for k, v in slots.items() if v is not None}


def _match(t: str, *patterns: str) -> str | None:
    for pattern in patterns:
        if match := re.search(pattern, t):
            return match.group(1)
    return None


def _int(t: str, *patterns: str) -> int | None:
    value = _match(t, *patterns)
    return as_int(value.replace(" ", "")) if value is not None else None


def _float(t: str, *patterns: str) -> float | None:
    value = _match(t, *patterns)
    return float(value) if value is not None else None


def _budget(t: str) -> float | None:
    for pattern in BUDGET:
        if match := pattern.search(t):
            if pattern is BUDGET[-1] and not re.search(CURRENCY, t):
                continue
            return float(match.group(1))
    return None


def _resources(t: str) -> dict[str, int]:
    out: dict[str, int] = {}
    gpu = r"(?:gpus?|h100s?|a100s?|v100s?|l4s?|t4s?|cards|accelerators)"
    node = r"(?:nodes?|machines?|hosts?|workers?|replicas?|pods?|servers?)"
    if m := re.search(
        rf"\b{NUMBER}\s*{node}\s*(?:x|\*|with|of|each with|having|by)\s*{NUMBER}\s*{gpu}", t
    ):
        out["nodes"], out["gpus_per_node"] = as_int(m.group(1)), as_int(m.group(2))
    elif m := re.search(rf"\b{NUMBER}\s*{gpu}\s*(?:per|each|on each|/)\s*{node}", t):
        out["gpus_per_node"] = as_int(m.group(1))
        if n := re.search(rf"\b{NUMBER}\s*{node}\b", t):
            out["nodes"] = as_int(n.group(1))
    elif m := re.search(
        rf"\b{NUMBER}\s*{gpu}\s*(?:on|across|over|spread over)\s*{NUMBER}\s*{node}", t
    ):
        out["gpus"], out["nodes"] = as_int(m.group(1)), as_int(m.group(2))
    else:
        if m := re.search(rf"\b{NUMBER}\s*(?:x\s*)?{gpu}\b", t):
            out["gpus"] = as_int(m.group(1))
        if m := re.search(rf"\b{NUMBER}\s*{node}\b", t):
            out["nodes"] = as_int(m.group(1))
    if (
        "gpus" not in out
        and "gpus_per_node" not in out
        and re.search(r"\b(?:on|using|with|use) (?:the|my|a) gpu\b|\bon gpu\b", t)
    ):
        out["gpus"] = 1
    if re.search(
        r"\b(?:on|using|with|use) (?:the |a |my )?cpus?\b|\bcpu[- ]only\b|\bno gpus?\b|"
        r"\bwithout (?:a |any )?gpus?\b|\bon (?:my )?laptop\b|\blocally on cpu\b",
        t,
    ):
        out["gpus"] = 0
        out.pop("gpus_per_node", None)
    if (
        "nodes" in out
        and "gpus_per_node" in out
        and out["nodes"]
        and out["gpus_per_node"] is not None
    ):
        out["gpus"] = out["nodes"] * out["gpus_per_node"]
    elif "nodes" in out and "gpus" in out and out["nodes"] and out["gpus"] % out["nodes"] == 0:
        out["gpus_per_node"] = out["gpus"] // out["nodes"]
    return {k: v for k, v in out.items() if v is not None}


def _job(t: str) -> str | None:
    if m := JOB_ID.search(t):
        return m.group(1)
    if (m := JOB_NAMED.search(t)) and m.group(1) not in NOT_JOB_NAMES:
        return m.group(1)
    if (m := JOB_AFTER_VERB.search(t)) and not _names_a_model_or_dataset(m.group(1)):
        return m.group(1)
    if LATEST.search(t):
        return "latest"
    return None


def _names_a_model_or_dataset(words: str) -> bool:
    return _first(MODEL_WORDS, words) is not None or _first(DATASET_WORDS, words) is not None


def _period(t: str) -> str | None:
    if m := re.search(
        r"\b(?:last|past|previous)\s*" + NUMBER + r"\s*(hours?|h|days?|d|weeks?|w|months?)\b", t
    ):
        hours = float(m.group(1)) * {"h": 1, "d": 24, "w": 24 * 7, "m": 24 * 30}[m.group(2)[0]]
        hours = max(round(hours), 1)  # "the last 1.5 days" is 36h
        in_days = m.group(2)[0] != "h" and hours % 24 == 0
        return f"{hours // 24}d" if in_days else f"{hours}h"
    if re.search(r"\btoday\b|\blast day\b|\bpast day\b", t):
        return "24h"
    if re.search(r"\byesterday\b", t):
        return "48h"
    if re.search(r"\b(?:this|last|past|previous) week\b|\bweekly\b", t):
        return "7d"
    if re.search(r"\b(?:this|last|past|previous) month\b|\bmonthly\b", t):
        return "30d"
    if re.search(r"\b(?:this|last|past|previous) year\b", t):
        return "365d"
    return None


def _objective(t: str) -> tuple[str | None, str | None]:
    m = re.search(
        r"\b(maximi[sz]e|maximum|minimi[sz]e|minimum|optimi[sz]e(?: for)?|best|highest|lowest|top|"
        r"by|on)\s+(?:the\s+)?(" + METRIC_WORDS + r")\b",
        t,
    )
    if not m:
        return None, None
    metric = METRICS[m.group(2)]
    verb = m.group(1)
    if verb.startswith(("minimi", "minimum", "lowest")):
        return metric, "min"
    if verb.startswith(("maximi", "maximum", "highest", "top")):
        return metric, "max"
    return metric, ("max" if higher_is_better(metric) else "min")


def _sweep(t: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["trials"] = _int(
        t,
        r"\b" + NUMBER + r"\s*(?:trials?|samples|configs|configurations|runs|combinations)\b",
        r"\btrials?\s*(?:=|:|of)?\s*" + NUMBER + r"\b",
    )
    out["max_concurrent"] = _int(
        t,
        r"\b"
        + NUMBER
        + r"\s*(?:trials?\s+)?(?:at a time|at once|concurrently|in parallel|concurrent(?: trials)?)\b",
        r"\bmax(?:imum)?\s*(?:concurrency|concurrent(?: trials)?|parallelism)\s*(?:of|=|:)?\s*"
        + NUMBER
        + r"\b",
    )
    if m := re.search(r"\b(asha|hyperband|median(?: stopping)?|pbt|population[- ]based|fifo)\b", t):
        word = m.group(1)
        out["scheduler"] = (
            "median"
            if word.startswith("median")
            else "pbt"
            if word.startswith(("pbt", "population"))
            else word
        )
    metric, mode = _objective(t)
    out["metric"], out["mode"] = metric, mode
    out["params"] = _sweep_params(t) or None
    return out


def _sweep_params(t: str) -> dict[str, ParamRange | ParamChoice]:
    """Searched parameters: ranges ("lr from 1e-4 to 1e-1") and lists ("32, 64 and 128")."""
    params: dict[str, ParamRange | ParamChoice] = {}
    value = (  # a list member: not a count of something else ("10 trials")
        NUMBER
        + r"(?![\d.]|\s*(?:trials?|epochs?|gpus?|nodes?|in parallel|at a time|concurrent|runs))"
    )
    not_a_list = r"(?!\s*(?:,|and|or)\s*" + value + ")"
    ranges = [
        r"\b("
        + PARAM_WORDS
        + r")\s*(?:from|in the range(?: of)?|range|in|within|:)?\s*"
        + NUMBER
        + r"\s*(?:to|-|\.\.|…)\s*"
        + NUMBER
        + r"\b"
        + not_a_list,
        r"\b(" + PARAM_WORDS + r")\s*between\s*" + NUMBER + r"\s*and\s*" + NUMBER + r"\b",
        r"\b("
        + PARAM_WORDS
        + r")\s*(?:in|within|:|=)?\s*[\[(]\s*"
        + NUMBER
        + r"\s*,\s*"
        + NUMBER
        + r"\s*[\])]",
    ]
    for pattern in ranges:
        for m in re.finditer(pattern, t):
            name = PARAM_NAMES[m.group(1)]
            low, high = sorted((float(m.group(2)), float(m.group(3))))
            if low == high or name in params:
                continue
            log = low > 0 and (name in ("lr", "weight_decay") or high / low >= 100)
            params[name] = ParamRange(low=low, high=high, scale="log" if log else "linear")
    for m in re.finditer(
        r"\b("
        + PARAM_WORDS
        + r")\s*(?:of|in|among|over|across|through|:|=|from|values|either)?\s*[\[{(]?\s*("
        + value
        + r"(?:\s*(?:,|and|or|,\s*and|,\s*or)\s*"
        + value
        + r")+)",
        t,
    ):
        name = PARAM_NAMES[m.group(1)]
        if name in params:
            continue
        numbers = [float(x) for x in re.findall(NUMBER, m.group(2))]
        values = [int(v) if v.is_integer() else v for v in numbers]
        if len(values) >= 2:
            params[name] = ParamChoice(values=values)
    return params
