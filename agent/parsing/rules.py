"""The deterministic parser: offline, always available, the contract's reference implementation.

Refusals come first (destructive or out-of-scope asks are never mapped onto a nearby action,
and a part that can't be honoured is never dropped). The intent is then decided by the evidence
in the whole message: each intent's cues, wherever they occur, weighed against each other, with
the words a slot took (a budget's "$5", a job id) no longer counting as cues. Slots are found
wherever they occur, in any order and notation.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import ValidationError

from agent.parsing import lexicon, refusals
from agent.parsing.lexicon import (
    DATASET_WORDS,
    GPU_TYPE_PATTERN,
    GPU_TYPE_WORDS,
    METRIC_WORDS,
    METRICS,
    MODEL_WORDS,
    PARAM_NAMES,
    PARAM_WORDS,
    first,
)
from agent.parsing.numbers import (
    NUMBER,
    SIGNED_NUMBER,
    NotAWholeNumber,
    as_int,
    normalize_numbers,
)
from agent.request import CAPABILITIES, ParamChoice, ParamRange, RefusedPart, Request
from common.telemetry import higher_is_better
from common.vocabulary import JOB_INTENTS, Intent, Scheduler, is_label

MAX_TEXT = 2000

# -- cues ------------------------------------------------------------------------------------

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
    r"\b(?:train|training|trains|trained|retrain|fit|finetune|fine-tune|launch|kick off|start|run|spin up"
    r"|get (?:a|an|the)?\s*[\w-]+ going|set up a (?:run|job))\b"
)
SWEEP = re.compile(
    r"\b(?:find (?:the )?best (?:learning rate|lr|batch size|dropout|weight decay|momentum|"
    r"hyper-?param\w*)|(?:what|which) (?:learning rate|lr|batch size|dropout|weight decay|"
    r"momentum)\b.{0,30}\b(?:best|optimal|works)|sweeps?|hyper-?param(?:eter)?s?|hparams?|(?<!fine-)(?<!fine )tune|(?<!fine-)(?<!fine )"
    r"tuning|grid search|random search|search over|search space|bayesian optimi[sz]ation|asha|"
    r"hyperband|pbt|trials)\b"
)
# Repeating the thread's previous train request, with changes.
SAME = re.compile(
    r"\b(?:(?:do|run|try|launch|start|kick off|train)\s+(?:it|that|this|the same(?: thing| job|"
    r" run| training)?|the last (?:one|job|run|training)|the previous (?:one|job|run|training))"
    r"\s+again|same (?:thing|job|run|training|again|as before|as last time|setup|config"
    r"(?:uration)?)|(?:repeat|rerun|re-run|redo)\b(?:\s+(?:it|that|the last|the previous|the "
    r"same|the job|the run|the training|last))?|once more|one more time)\b"
    r"|\bagain\b.{0,40}\b(?:but|with|this time|using|on)\b"
)
CANCEL = re.compile(
    r"\b(?:cancel|abort|kill|terminate|stop|halt)\b(?!\s+(?:early|when|if|after|at|once))"
    r"(?<!early stop)"
)
LOGS = re.compile(
    r"\b(?:logs?|stdout|stderr|tail|print(?:ed|s|ing)?|console output|output of|output for|"
    r"show (?:me )?(?:the )?output|\d+\s+(?:log\s+|output\s+)?lines|lines of (?:output|log))\b"
)
DIAGNOSE_STRONG = re.compile(
    r"\b(?:why|diagnos\w*|what went wrong|what happened|debug|troubleshoot|root cause|"
    r"(?:anything|something|what(?:'s| is)) (?:wrong|off|broken|up with)|what(?:'s| is) up)\b"
)
DIAGNOSE = re.compile(
    r"\b(?:fail|failed|failing|fails|crash(?:ed|es|ing)?|broke|broken|oom|out of memory|nan|"
    r"diverg\w*|stuck|hung|hang(?:s|ing)?|died|dies|dying|dead|errors?|exception|killed|"
    r"problems?|issues?|explod\w*|blew up|blowing up|spik\w*|pending forever|never starts?)\b"
)
COST = re.compile(
    r"\b(?:cost|costs|costing|spend|spent|spending|price|pricing|price out|bill|billing|billed|"
    r"how much|expense|expenses|expensive|dollars|money|charge[sd]?|burn(?:ed|t)?|paid|pay|"
    r"damage|set (?:me|us) back|gpu[- ]hours?|cpu[- ]hours?)\b"
)
COMPARE = re.compile(
    r"\b(?:compare|comparison|versus|vs\.?|difference between|side by side|next to each other|diff|"
    r"which (?:one |run |"
    r"job )?(?:is|was|did) better|stack(?:s|ed)? up|best (?:of|among)\b.{0,20}\b(?:runs|jobs)|"
    r"which (?:one |run |job )?(?:was|is|did|had|has)\b.{0,20}\b(?:better|worse|more|less|higher|"
    r"lower|faster|cheaper)|(?:best|top) (?:run|job|model)s? (?:so far |yet )?(?:by|on|for)\b|"
    r"rank(?:ed|ing)?\b.{0,30}\b(?:runs|jobs|models)|which (?:of "
    r"(?:my|the|our|these) )?(?:runs?|jobs?|models?|ones?)\b.{0,30}\b(?:best|better|highest|"
    r"lowest|top))\b"
)
SWEEP_REFERENCE = re.compile(
    r"\b(?:the|that|this|my|our|last|latest|newest|previous|its)\s+(?:\w+\s+)?sweep\b"
)
"""A sweep that exists, named as the object of another verb."""
REGISTER = re.compile(r"\b(?:register|registry|promote|publish|alias|tag (?:it|the model) as)\b")
LIST = re.compile(
    r"\b(?:list|show|see|what|which|any|all|my|recent|running|active|pending|failed|finished|"
    r"history|overview|summary)\b.{0,25}\b(?:jobs|runs|trainings)\b"
    r"|\bwhat (?:ran|was run|did (?:i|we) run|have (?:i|we) run|has run)\b|\bjobs? (?:list|running)\b|\bwhat(?:'s| is) running\b"
    r"|\b(?:what|which|all|list)\b[\w' ]{0,25}\b(?:running|pending|active|queued)\b"
    r"|^\W*(?:my\s+|all\s+|the\s+)?(?:jobs|runs|trainings)\b"
)
LIST_STRONG = re.compile(
    r"\b(?:everything|anything|any jobs?|any runs?)\b[\w' ]{0,20}\b(?:running|pending|active|"
    r"queued|going on)\b"
)
STATUS_STRONG = re.compile(
    r"\b(?:status|progress|eta|how far|still (?:running|going|alive|up)|where are we|"
    r"how(?:'s| is) (?:it|the job|the run|training|the training|that|my job|my run)|"
    r"where(?:'s| is) (?:it|that|my job|the job|my run|the run|the training|my training)|"
    r"how(?:'s| is)\b.{0,30}\b(?:looking|going|doing|coming along|progressing)|"
    r"did (?:it|that|the|my|this)\b.{0,25}\b(?:finish|complete|succeed|end|work)|"
    r"(?:has|have) (?:it|that|the|my|this)\b.{0,25}\b(?:finished|completed|succeeded|ended|"
    r"trained|converged)|"
    r"is (?:it|that|this|the|my)(?:\s+[\w-]+){0,3}\s+(?:done|finished|complete|over|alive|"
    r"running|still running)|(?:done|finished|over) yet|"
    r"how many epochs (?:has|have|did|are)|accuracy so far|loss so far|what epoch|which epoch|"
    r"any news|news on|(?:current|latest) (?:loss|accuracy|epoch|val[ _]loss|val[ _]accuracy))\b"
)
STATUS = re.compile(
    r"\b(?:going|doing|done|finished|complete|completed|state|update|alive|running)\b"
)
ESTIMATE = re.compile(r"\b(?:would|will|estimate|estimated|expect|projected|predict)\b")
LATEST = re.compile(
    r"\b(?:it|its|it's|latest|newest|(?:the )?last (?:job|run|training|one|model)|"
    r"(?:the )?most recent(?: job| run| one| training)?|previous (?:job|run)|current (?:job|run|one)|"
    r"that(?: job| run| one| training)?|this (?:job|run|training)|the (?:job|run|training|model)|"
    r"my (?:job|run|training|last|latest))\b"
)
MIXED_SCRIPT = re.compile(r"\b(?=\w*[a-z])(?=\w*[\u0370-\u03ff\u0400-\u04ff])\w+\b")
NEGATIVE_COUNT = re.compile(
    r"(?<![\w.])-\s*\d+(?:\.\d+)?\s*(?:x\s*)?(?:gpus?|nodes?|machines?|epochs?|trials?|lines?|"
    r"replicas?)\b"
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
# What a person typed as a job id, as typed: checked to be one before anything acts on it.
JOB_REFERENCE = re.compile(r"\b(?:job|run)\s+(?:id\s+)?[\"'`]?([^\s\"'`]+)")
# A job named right after the verb: "cancel baseline-run", "logs of mnist-sweep-2".
JOB_AFTER_VERB = re.compile(
    r"\b(?:cancel|abort|kill|terminate|stop|halt|logs? (?:of|for)|status of|cost of|diagnose|"
    r"tail|output of)\s+[\"'`]?([a-z0-9]+(?:-[a-z0-9]+)+)\b"
)
# cancel acts on one training job: "stop the mlflow server" or "kill all processes" is not one.
CANCEL_OBJECT = re.compile(
    r"\b(?:cancel|abort|kill|terminate|stop|halt)\b[\s:]+(?:it|this|that|latest|last|current|newest|"
    r"(?:[\w-]+\s+){0,3}(?:jobs?|runs?|training|trainings|one|sweeps?)|[a-z0-9]+(?:-[a-z0-9]+)+)\b"
)
BULK = re.compile(r"\b(?:all|every|everything|each|any)\b")
DELETE = re.compile(r"\b(?:delete|remove|destroy|wipe|nuke|purge|erase|rm)\b")
BEST = re.compile(
    r"\b(?:best|top|highest|lowest|winning|strongest|most accurate|least loss)\b"
    r"(?:\s+(?:performing|scoring))?\s+(?:\w+\s+){0,2}?(?:model|run|job|one|checkpoint|trial)\b"
)
NOUN_RUN = re.compile(
    r"\b(?:the|my|that|this|last|latest|previous|a|which|each|every|our)\s+(?:[\w-]+\s+)?runs?\b"
)
"""'the resnet run' is a run that exists, not a request to run something."""
COUNT = re.compile(
    r"\b(?:last|latest|recent|previous|past|top|newest)\s+"
    + NUMBER
    + r"\s+(?:\w+\s+)?(?:runs?|jobs?|trainings?|experiments?|ones)\b"
    r"|\b" + NUMBER + r"\s+(?:most recent|latest|last|newest)\s+(?:runs|jobs|trainings)\b"
)
FALLBACK = re.compile(
    r"\b(?:fall ?back(?: to| on)?|fallback(?: to| on| dataset)?|failing that,?|otherwise|or else|"
    r"else)\s+(?:use |try |train on |go with |switch to )?(?:the )?(?P<after>[\w -]{2,30})"
    r"|(?P<before>[\w -]{2,30}?)\s+as (?:an? |the )?(?:fallback|backup|plan b)\b"
    r"|\bif\b[^,;.]{0,60}?\b(?:missing|unavailable|not available|not there|isn't there|absent|"
    r"down|gone|fails|failing|not found|(?:can't|cannot|couldn't) be (?:had|found|downloaded|"
    r"loaded|used|read))\s*[,;]?\s*(?:then\s+)?(?:use|try|train on|go with|switch to|"
    r"fall back to)\s+(?:the\s+)?(?P<then>[\w -]{2,30})"
)
TIME_LIMIT = re.compile(
    r"\b(?:within|in under|under|at most|no (?:more|longer) than|max(?:imum)?|time[ -]?limit(?: of| is)?"
    r"|deadline(?: of| is)?|timeout(?: of| is)?|cap(?:ped)? at|stop (?:it )?after|kill (?:it )?after|"
    r"give up after|for at most)\s*[:=]?\s*"
    + NUMBER
    + r"\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)\b"
)
TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXPERIMENT = re.compile(r"\bexperiment\s+[\"'`]?([\w.-]+)")
CPUS = re.compile(
    r"\b" + NUMBER + r"\s*(?:v?cpus?|cpu cores?|cores?|vcores?)\b"
    r"|\b(?:cpus?|cores)\s*[=:]\s*" + NUMBER
)
MEMORY = re.compile(
    r"\b" + NUMBER + r"\s*(gib|gb|gi|g|gigs?|mib|mb|mi|tib|tb|ti)\s*(?:of\s+)?(?:ram|memory|mem)\b"
    r"|\b(?:ram|memory|mem)\s*(?:of|=|:)?\s*" + NUMBER + r"\s*(gib|gb|gi|g|gigs?|mib|mb|mi|tib|"
    r"tb|ti)\b"
)
MEMORY_UNITS = {"g": "Gi", "m": "Mi", "t": "Ti"}
NAMESPACE = [
    r"\bnamespace\s*[\"'`:=]?\s*([a-z0-9][\w.-]*)",
    r"\bin (?:the )?([a-z0-9][\w.-]*) (?:namespace|ns)\b",
    r"\bns\s*[=:]?\s*[\"'`]?([a-z0-9][\w.-]*)",
]

SCHEDULER_WORDS: list[tuple[Scheduler, str]] = [
    ("asha", r"\basha\b|\b(?:async(?:hronous)? )?successive halving\b|\bsha\b"),
    ("hyperband", r"\bhyper-?band\b|\bbohb\b"),
    ("median", r"\bmedian(?: stopping)?(?: rule)?\b"),
    ("pbt", r"\bpbt\b|\bpopulation[- ]based(?: training)?\b"),
    (
        "fifo",
        r"\bfifo\b|\bno early stopping\b|\bwithout early stopping\b|\brun (?:them|all) to the end\b",
    ),
]
SEARCH_WORDS: list[tuple[str, str]] = [
    ("grid", r"\bgrid(?:[- ]search(?:ed)?)?\b|\b(?:every|all|each) (?:combination|point)s?\b"),
    ("optuna", r"\boptuna\b|\btpe\b|\bbayesian(?: optimi[sz]ation| search)?\b|\bmodel-based\b"),
    ("random", r"\brandom(?:ly)?(?: search| sampl\w*)?\b"),
]
"""How the trials' configurations are chosen (the Request's `search`)."""
CUES: dict[Intent, list[tuple[re.Pattern[str], float]]] = {
    "sweep": [(SWEEP, 5)],
    "register": [(REGISTER, 5)],
    "compare": [(COMPARE, 5)],
    "cancel": [(CANCEL, 5)],
    "cost": [(COST, 4)],
    "logs": [(LOGS, 4)],
    "diagnose": [(DIAGNOSE_STRONG, 4), (DIAGNOSE, 2)],
    "status": [(STATUS_STRONG, 4), (STATUS, 1.5)],
    "list": [(LIST, 3), (LIST_STRONG, 6)],
}
"""Evidence for each intent, found anywhere in the message; the verbs that act on jobs weigh
most. Train's evidence is its verb with something to train, and the slots only it takes."""
PRIORITY: tuple[Intent, ...] = (
    "sweep",
    "register",
    "compare",
    "cancel",
    "cost",
    "train",
    "logs",
    "list",
    "diagnose",
    "status",
)
"""Who wins a tie: the intent whose words are least ambiguous."""

CURRENCY = r"(?:\$|usd|dollars?|bucks)"
BUDGET = [
    re.compile(
        r"\b(?:under|below|less than|at most|max(?:imum)?|no more than|not more than|capped? at|cap it at|"
        r"within|up to|limit(?:ed)? to|budget(?: is| of|:)?|spend(?:ing)? (?:at most|up to|no more than)?|"
        r"keep (?:it|the cost|costs?) (?:under|below|to|at|within))\s*\$\s*" + NUMBER
    ),
    re.compile(
        r"\b(?:under|below|less than|at most|max(?:imum)?|no more than|within|up to|"
        r"budget(?: of| is|:)?|cap(?:ped)? at)\s*" + NUMBER + r"\s*(?:usd|dollars?|bucks)\b"
    ),
    re.compile(r"\$\s*" + NUMBER + r"\s*(?:budget|max|maximum|cap|limit|or less|tops)\b"),
    re.compile(
        r"\b(?:do not|don't|never|shouldn't|must not) (?:spend|go over|go past|go above|go beyond|"
        r"exceed|pass|cost)(?: more than)?\s*\$?\s*" + NUMBER + r"\s*(?:\$|usd|dollars?|bucks)?"
    ),
    re.compile(r"(?:<=|=<|≤|<)\s*\$\s*" + NUMBER),
    re.compile(r"\bbudget\s*(?:of|is|=|:)?\s*" + NUMBER + r"\b"),
]


def parse(text: str) -> Request:
    """The Request for a message; anything it cannot map, or must refuse, is `unknown` with a
    reply that says why."""
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
    if re.match(r"\s*(?:[\[{]\s*[\"'{\[]|<\s*[a-z/!])", t):  # JSON or markup, not "{model=cnn}"
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
    intent = _intent(t)
    # Even when the rest is not understood, a part that must be refused is named.
    found = refusals.find(clean, t, training=intent in ("train", "sweep"), sweep=intent == "sweep")
    if intent in JOB_INTENTS or intent == "compare":
        found += _bad_job_references(clean)
    if intent in ("train", "sweep") and (problem := _namespace_problem(t)):
        found.append(refusals.Refusal("namespace", problem))
    if found:
        return _refused(found)
    if intent == "unknown":
        return _unknown()
    if intent == "cancel" and (BULK.search(t) or not CANCEL_OBJECT.search(t)):
        return _unknown(
            'I cancel one training job at a time; say which, e.g. "cancel cnn-mnist-3f2a" '
            'or "cancel the latest job".'
        )
    if intent == "cancel" and (replica := _replica(t)) is not None:
        return _unknown(
            f"I cancel whole jobs and sweeps, not one part ({replica}): a sweep's scheduler "
            'stops its trials; say "cancel the sweep" to stop all of it.'
        )
    if NEGATIVE_COUNT.search(t):
        return _out_of_range("Counts (epochs, GPUs, nodes, trials, lines) can't be negative.")
    if NEGATIVE_MONEY.search(t):
        return _out_of_range('A budget can\'t be negative; say e.g. "under $5".')
    if intent == "train" and _sweep_params(t):
        intent = "sweep"  # "train ... with batch sizes 32, 64 and 128" is one run per value
    try:
        slots = _slots(t, clean, intent)
    except NotAWholeNumber as e:
        return _out_of_range(
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
        error = e.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        return _out_of_range(
            f"I understood a {intent} request but {field} is out of range ({error['msg'].lower()})."
        )


def parse_answer(text: str, intent: Intent) -> Request:
    """The slots of a reply to a question about an `intent` request ("mnist", "the resnet,
    4 GPUs"); unknown when it holds none or something that must be refused."""
    request = parse(text)
    if request.refused or request.intent not in ("unknown", intent):
        return request
    t = normalize(" ".join(text.replace("\x00", " ").split()))
    if out_of_scope(text) or len(t) > MAX_TEXT:
        return request
    try:
        return Request(intent=intent, **_slots(t, text, intent))
    except (NotAWholeNumber, ValidationError):
        return request


def out_of_scope(text: str) -> bool:
    """Whether the message asks for commands, deletion or cluster administration."""
    t = normalize(" ".join(text.split()))
    return bool(REFUSE.search(t) or DELETE.search(t))


def normalize(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()  # fullwidth and other compatibility forms
    for dash in ("–", "—", "−"):
        t = t.replace(dash, "-")
    t = t.replace("×", " x ").replace("’", "'").replace("→", " -> ").replace("⇒", " -> ")
    t = normalize_numbers(t)
    return re.sub(r"\b(\d+)\s*x\s*(?=[a-z])", r"\1 x ", t)  # "2xa100": 2 x a100


def _unknown(why: str | None = None) -> Request:
    return Request(intent="unknown", reply=f"{why} {CAPABILITIES}" if why else CAPABILITIES)


def _refused(found: list[refusals.Refusal]) -> Request:
    parts: list[RefusedPart] = list(dict.fromkeys(r.part for r in found))
    return Request(intent="unknown", refused=parts, reply=refusals.reply(found))


def _out_of_range(why: str) -> Request:
    return Request(
        intent="unknown",
        refused=["range"],
        reply=f"Not launched, nothing changed: {why} {refusals.INSTEAD['range'].capitalize()}.",
    )


def _bad_job_references(original: str) -> list[refusals.Refusal]:
    """A job id the message names that no job can have: said so, never read as the latest."""
    found = []
    for match in JOB_REFERENCE.finditer(original):
        typed = match.group(1).rstrip("?.,!;:)")
        lowered = typed.lower()
        if lowered.isalpha() or not typed:  # "job crashed", "run is": words, not ids
            continue
        if not is_label(lowered):
            found.append(refusals.Refusal("name", typed))
    return found


REPLICA = re.compile(
    r"\b(?P<kind>trial|master|worker|node|trainer)\s*(?:-|#|no\.?|number)?\s*(?P<index>\d{1,5})\b"
    r"|\b(?P<driver>driver)\b"
)


def _replica(t: str) -> str | None:
    """Whose logs: "trial 3", "trial-3", "worker #1", "the driver"."""
    match = REPLICA.search(t)
    if match is None:
        return None
    if match.group("driver"):
        return "driver"
    return f"{match.group('kind')}-{int(match.group('index'))}"


def _namespace_problem(t: str) -> str | None:
    """A namespace asked for that is not a namespace name at all (the policy decides on the
    rest)."""
    name = _match(t, *NAMESPACE)
    if name is None:
        return None
    name = name.rstrip(".,;:!?")
    return None if is_label(name) else name


def _intent(t: str) -> Intent:
    """The intent with the most evidence in the message (ties: PRIORITY)."""
    original = t
    t = JOB_ID.sub(" ", t)  # "cnn-mnist-3f2a" is a job, not a model and a dataset
    cues = _cue_words(t)  # "keep it under $5" is a train request's budget, not a question
    has_model = first(MODEL_WORDS, t) is not None
    has_dataset = first(DATASET_WORDS, t) is not None
    has_subject = has_model or has_dataset
    score: dict[Intent, float] = dict.fromkeys(PRIORITY, 0.0)
    for intent, patterns in CUES.items():
        score[intent] = sum(weight for pattern, weight in patterns if pattern.search(cues))
    if score["sweep"] and not (has_subject or re.search(r"\b(?:sweep|tune|trials|search)\b", t)):
        score["sweep"] = 0.0
    if (
        score["sweep"]
        and SWEEP_REFERENCE.search(t)
        and not _sweep_params(t)
        and any(score[i] for i in ("register", "compare", "cancel", "cost", "logs", "diagnose"))
    ):
        score["sweep"] = 0.0  # "register the best model from the sweep": a sweep that ran
    if score["sweep"] == 0 and _sweep_params(t) and has_subject:
        score["sweep"] = 5.0
    epochs = re.search(r"\b\d+\s*(?:epochs?|eps?)\b|\bepochs?\s*[=:]", t) is not None
    repeat = SAME.search(t) is not None
    if TRAIN_VERB.search(NOUN_RUN.sub(" ", t)) and (has_subject or epochs):
        score["train"] += 3
    if repeat and not score["sweep"]:
        score["train"] += 4
    score["train"] += 0.5 * has_model + 0.5 * has_dataset + 0.5 * epochs
    if score["cost"] and score["compare"] and not has_subject and not JOB_ID.search(original):
        score["compare"] = 0.0  # "spend this week vs last week": money over time, not runs
    if score["cost"] and has_subject and ESTIMATE.search(t):
        score["cost"] += 2  # "how much would it cost to train ...": an estimate
    if re.search(r"\b(?:lines?|tail\s+-n)\b", t):
        score["logs"] += 0.5
    best = max(PRIORITY, key=lambda intent: (score[intent], -PRIORITY.index(intent)))
    return best if score[best] >= 1 else "unknown"


def _cue_words(t: str) -> str:
    """The words left for cues once slots took theirs: a budget, an experiment's name."""
    for pattern in BUDGET:
        t = pattern.sub(" ", t)
    return EXPERIMENT.sub(" ", t)


def _slots(t: str, original: str, intent: Intent) -> dict[str, Any]:
    slots: dict[str, Any] = {}
    job = _job(t)
    # "cnn-mnist-3f2a" names a job, not a model and a dataset.
    words = JOB_ID.sub(" ", t)
    if job not in (None, "latest"):
        words = re.sub(rf"\b{re.escape(job)}\b", " ", words)
    fallback, words = _fallback(words) if intent in ("train", "sweep") else (None, words)
    if intent in ("train", "sweep", "cost", "compare", "list"):
        subject = EXPERIMENT.sub(" ", words)  # "experiment mnist-tuning" names no dataset
        if intent in ("train", "sweep"):  # "on mnist or cifar10": ask, don't pick one
            readings: dict[str, list[str]] = {
                "model": list(lexicon.distinct(MODEL_WORDS, subject)),
                "dataset": list(lexicon.distinct(DATASET_WORDS, subject)),
            }
            for slot, named in readings.items():
                slots[slot] = named[0] if len(named) == 1 else None
            slots["choices"] = {slot: n for slot, n in readings.items() if len(n) > 1} or None
        else:
            slots["model"] = first(MODEL_WORDS, subject)
            slots["dataset"] = first(DATASET_WORDS, subject)
    if intent in ("train", "sweep", "cost"):
        t = words
        slots["epochs"] = _int(
            t,
            r"(?<![\w.])"
            + SIGNED_NUMBER
            + r"\s*(?:full\s+)?(?:epochs?|passes|eps?)\b(?!\s*[=:]\s*\d)",
            r"\bx\s*" + SIGNED_NUMBER + r"\s*(?:epochs?|eps?)\b",
            r"\bepochs?\s*(?:=|:|of|to)?\s*" + SIGNED_NUMBER + r"(?![\w.])",
            r"\beps?\s*[=:]\s*" + SIGNED_NUMBER + r"(?![\w.])",
        )
        slots.update(_resources(t))
        slots["gpu_type"] = first(GPU_TYPE_WORDS, t)
        slots["budget_usd"] = _budget(t)
        if intent in ("train", "sweep") and (limit := TIME_LIMIT.search(t)):
            slots["max_seconds"] = round(float(limit.group(1)) * TIME_UNITS[limit.group(2)[0]])
        slots["lr"] = _float(t, r"(?:learning[- ]rate|\blr)\s*(?:of|=|:|at|to|is)?\s*" + NUMBER)
        slots["batch_size"] = _int(
            t,
            r"batch[- _]?size\s*(?:of|=|:|to|is)?\s*" + NUMBER + r"\b(?!\s*(?:,|and|or)\s*\d)",
            r"\b(?:bs|bsz)\s*[=:]?\s*" + NUMBER + r"\b",
            r"\bbatch(?:es)?\s*(?:of|[=:])\s*" + NUMBER + r"\b",
            r"\b" + NUMBER + r"\s*(?:samples |images )?per batch\b",
            r"\b" + NUMBER + r"\s*(?:batch(?: size)?|bs)\b(?!\s*(?:of|=|:))",
            r"\b(?:global\s+|mini-?)?batch(?:[- _]?size)?\s+(?:of\s+)?"
            + NUMBER
            + r"\b(?!\s*(?:,|/|and|or)\s*\d)",
        )
        slots["cpus"] = _cpus(t)
        slots["memory"] = _memory(t)
        slots["name"] = _match(
            t,
            r"\b(?:called|named|name it|call it|with the name|name:)\s*[\"'`]?([a-z0-9][a-z0-9-]{0,50}[a-z0-9])",
        )
        slots["namespace"] = _match(t, *NAMESPACE)
        slots["fallback_dataset"] = fallback
    if intent in ("train", "sweep") and SAME.search(t):
        slots["same_as_previous"] = True
    if intent == "sweep":
        slots.update(_sweep(t))
        for swept in slots.get("params") or {}:
            if swept in ("batch_size", "lr", "epochs"):
                slots[swept] = None  # a searched parameter is not also a fixed one
    if intent in JOB_INTENTS:
        about_many = intent == "cost" and (
            slots.get("model")
            or slots.get("dataset")
            or _period(t)
            or re.search(r"\bexperiments?\b|\b(?:in )?total\b|\boverall\b|\baltogether\b", t)
        )
        if (
            intent == "register"
            and job in (None, "latest")
            and BEST.search(t)
            and not SWEEP_REFERENCE.search(t)  # "the best model from the sweep": its best trial
        ):
            job = "best"
        if about_many and job == "latest":
            job = None  # "how much would it cost to train ..." asks for an estimate
        elif job is None and not about_many:
            job = "latest"
        slots["job"] = job
    if intent == "compare":
        ids = list(dict.fromkeys(JOB_ID.findall(t)))
        named = [m.group(1) for m in JOB_NAMED.finditer(t) if m.group(1) not in ids]
        slots["jobs"] = [*ids, *named] or None
        counted = COUNT.search(t) if not slots["jobs"] else None
        slots["count"] = as_int(counted.group(1) or counted.group(2)) if counted else None
    if intent == "logs":
        slots["replica"] = _replica(t)
        slots["lines"] = _int(
            t,
            r"\b(?:last|tail|final|first)\s*" + NUMBER + r"\s*(?:log\s+)?lines?\b",
            r"\btail\s+-n\s*" + NUMBER + r"\b",
            r"\b" + NUMBER + r"\s*lines?\b",
        )
    if intent in ("cost", "list", "compare"):
        slots["period"] = _period(t)
        slots["experiment"] = _match(t, EXPERIMENT.pattern)
    if intent in ("compare", "register"):
        metric, mode = _objective(t)
        slots["metric"], slots["mode"] = metric, mode
    if intent == "register":
        slots["name"] = _match(
            t,
            r"\b(?:as|named|called|call it|name it|to|under)\s+[\"'`]?"
            r"(?!(?:the|a|an|my|our|registry|it)\b)"
            r"([a-z0-9][a-z0-9_.-]{0,60}[a-z0-9])\b",
        )
    return {k: v for k, v in slots.items() if v is not None}


def _fallback(t: str) -> tuple[str | None, str]:
    """The dataset to fall back to, and the text without the words that said so."""
    for match in FALLBACK.finditer(t):
        start = match.start()
        if match.group("before"):  # "... with synthetic data as a fallback": the last named
            named = lexicon.named(DATASET_WORDS, match.group("before"))
            dataset = named[-1] if named else None
            if dataset is not None:
                pattern = dict(DATASET_WORDS)[dataset]
                spans = list(re.finditer(pattern, match.group("before")))
                start = match.start("before") + spans[-1].start()
        else:
            dataset = first(DATASET_WORDS, match.group("after") or match.group("then"))
        if dataset is not None:
            return dataset, t[:start] + " " + t[match.end() :]
    return None, t


def _cpus(t: str) -> float | None:
    if (match := CPUS.search(t)) is None:
        return None
    return float(match.group(1) or match.group(2))


def _memory(t: str) -> str | None:
    if (match := MEMORY.search(t)) is None:
        return None
    amount = match.group(1) or match.group(3)
    unit = MEMORY_UNITS[(match.group(2) or match.group(4))[0]]
    value = float(amount)
    return f"{int(value) if value.is_integer() else value}{unit}"


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
    gpu = rf"(?:gpus?|{GPU_TYPE_PATTERN}|cards|accelerators|devices)(?:\s+gpus?)?"
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
        if (
            (m := re.search(rf"\b{NUMBER}\s*(?:x\s*)?{gpu}", t))
            or (m := re.search(rf"{gpu}\s*(?:x|\*)\s*{NUMBER}\b", t))
            or (m := re.search(rf"\bgpus?\s*[=:]\s*{NUMBER}\b", t))  # "gpus=2"
        ):
            out["gpus"] = as_int(m.group(1))
        if (m := re.search(rf"\b{NUMBER}\s*{node}\b", t)) or (
            m := re.search(rf"\bnodes?\s*[=:]\s*{NUMBER}\b", t)
        ):
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
    if (
        (m := JOB_AFTER_VERB.search(t))
        and not _names_a_model_or_dataset(m.group(1))
        and not REPLICA.fullmatch(m.group(1))  # "logs of trial-2": a replica of the job
    ):
        return m.group(1)
    if LATEST.search(t):
        return "latest"
    return None


def _names_a_model_or_dataset(words: str) -> bool:
    return first(MODEL_WORDS, words) is not None or first(DATASET_WORDS, words) is not None


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
        r"by|on|most|least|more|less)\s+(?:the\s+)?(" + METRIC_WORDS + r")\b",
        t,
    )
    if not m:
        return None, None
    metric = METRICS[m.group(2)]
    verb = m.group(1)
    if verb.startswith(("minimi", "minimum", "lowest", "least", "less")):
        return metric, "min"
    if verb.startswith(("maximi", "maximum", "highest", "top", "most", "more")):
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
        + r"\s*(?:trials?\s+)?(?:at a time|at once|concurrently|in parallel|parallel|concurrent(?: trials)?)\b",
        r"\bmax(?:imum)?\s*(?:concurrency|concurrent(?: trials)?|parallelism)\s*(?:of|=|:)?\s*"
        + NUMBER
        + r"\b",
    )
    out["scheduler"] = first(SCHEDULER_WORDS, t)
    out["search"] = first(SEARCH_WORDS, t)
    metric, mode = _objective(t)
    out["metric"], out["mode"] = metric, mode
    out["params"] = _sweep_params(t) or None
    return out


def _sweep_params(t: str) -> dict[str, ParamRange | ParamChoice]:
    """Searched parameters: ranges ("lr from 1e-4 to 1e-1") and lists ("32, 64 and 128")."""
    params: dict[str, ParamRange | ParamChoice] = {}
    value = (  # a list member: not a count of something else ("10 trials")
        NUMBER
        + r"(?![\d.]|\s*(?:trials?|epochs?|gpus?|nodes?|in parallel|parallel|at a time|concurrent|runs|"
        + r"x\b|"
        + GPU_TYPE_PATTERN
        + r"))"
    )
    not_a_list = r"(?!\s*(?:,|and|or)\s*" + value + ")"
    # Up to a few words between a parameter and its values, none of them another parameter
    # ("the learning rate for the mlp on digits between ...", "lr works best ... try ...").
    gap = r"\b(?:\s+(?!(?:" + PARAM_WORDS + r")\b)(?=[\w'?-]*[a-z])[\w'?-]+){0,8}?"
    scale = r"(?:(?:log-?uniform|log-?scale|log|uniform|linear(?:ly)?)\s*)?"
    ranges = [
        r"\b("
        + PARAM_WORDS
        + r")"
        + gap
        + r"\s*(?:from|in the range(?: of)?|range|in|within|over|across|:|=)?\s*"
        + scale
        + r"(?:from\s+)?[\[(]?\s*"
        + NUMBER
        + r"\s*(?:to|up to|->|-|\.\.|…)\s*"
        + NUMBER
        + r"\b\s*[\])]?"
        + not_a_list,
        r"\b("
        + PARAM_WORDS
        + r")"
        + gap
        + r"\s*between\s*"
        + NUMBER
        + r"\s*and\s*"
        + NUMBER
        + r"\b",
        r"\b("
        + PARAM_WORDS
        + r")"
        + gap
        + r"\s*(?:in|within|over|across|from|:|=)?\s*[\[(]\s*"
        + NUMBER
        + r"\s*,\s*"
        + NUMBER
        + r"\s*[\])]",
    ]
    for pattern in ranges:
        for m in re.finditer(pattern, t):
            name = PARAM_NAMES[m.group(1)]
            low, high = sorted((float(m.group(2)), float(m.group(3))))
            if name in params:
                continue  # an empty range (low == high) is kept: the plan refuses it, says why
            said = m.group(0)
            if re.search(r"\blog", said):  # the scale as said, else by the parameter and span
                log = low > 0
            elif re.search(r"\b(?:uniform|linear)", said):
                log = False
            else:
                log = low > 0 and (name in ("lr", "weight_decay") or high / low >= 100)
            params[name] = ParamRange(low=low, high=high, scale="log" if log else "linear")
    for m in re.finditer(
        r"\b("
        + PARAM_WORDS
        # "which batch size is best for the mlp: 16, 32 or 64", "bs 32/64/128"
        + r")\b(?:\s+(?!(?:and|or|"
        + PARAM_WORDS
        + r")\b)[a-z-]+){0,8}?\s*(?:of|in|among|over|across|through|:|=|"
        + r"from|values|either)?\s*[\[{(]?\s*("
        + value
        + r"(?:\s*(?:,|/|\||and|or|,\s*and|,\s*or)\s*"
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
