"""Is a Request the message's own? A language model's slots are checked against the text: a
value the message does not hold (an invented number, a model the user never named) is not
trusted, and the rules' reading is used instead."""

from __future__ import annotations

import re
from typing import Any

from agent.parsing import lexicon
from agent.parsing.numbers import NUMBER
from agent.request import Request

# Slots whose value is a reading of the words, not a copy of them: checked as words.
_WORD_SLOTS: dict[str, list[tuple[Any, str]]] = {
    "model": lexicon.MODEL_WORDS,
    "dataset": lexicon.DATASET_WORDS,
    "fallback_dataset": lexicon.DATASET_WORDS,
}
_NUMBER_SLOTS = (
    "epochs",
    "batch_size",
    "lr",
    "nodes",
    "gpus_per_node",
    "budget_usd",
    "lines",
    "trials",
    "max_concurrent",
    "cpus",
)
_LITERAL_SLOTS = ("name", "namespace", "experiment")
_INDEXED_SLOTS = ("replica",)
"""Said as a word and a number, in any spelling ("trial 3" for trial-3)."""


def ungrounded(request: Request, normalized: str) -> list[str]:
    """The slots of `request` whose values `normalized` (the parser's text) does not hold."""
    numbers = {float(n) for n in re.findall(NUMBER, normalized)}
    missing: list[str] = []
    for slot, value in request.slots().items():
        if slot in _WORD_SLOTS:
            if value not in _named(_WORD_SLOTS[slot], normalized):
                missing.append(slot)
        elif slot in _NUMBER_SLOTS:
            if not _holds_number(value, numbers):
                missing.append(slot)
        elif slot == "gpus":
            # 0 is said in words ("on cpu"); a total may be nodes x GPUs per node.
            if value and not _holds_number(value, numbers) and not _product_of(value, numbers):
                missing.append(slot)
        elif slot == "max_seconds":  # said in seconds, minutes, hours or days
            if not any(_holds_number(value / unit, numbers) for unit in (1, 60, 3600, 86400)):
                missing.append(slot)
        elif slot == "gpu_type":
            if value not in _named(lexicon.GPU_TYPE_WORDS, normalized):
                missing.append(slot)
        elif slot in _INDEXED_SLOTS:
            kind, _, index = str(value).partition("-")
            if kind not in normalized or (index and not _holds_number(int(index), numbers)):
                missing.append(slot)
        elif slot in _LITERAL_SLOTS:
            if str(value).lower() not in normalized:
                missing.append(slot)
        elif slot == "jobs":
            if any(str(job).lower() not in normalized for job in value):
                missing.append(slot)
        elif (
            slot == "job"
            and value not in ("latest", "best")
            and str(value).lower() not in normalized
        ):
            missing.append(slot)
    return missing


def _named(vocabulary: list[tuple[Any, str]], t: str) -> set[Any]:
    return {name for name, pattern in vocabulary if re.search(pattern, t)}


def _holds_number(value: Any, numbers: set[float]) -> bool:
    try:
        target = float(value)
    except (TypeError, ValueError):
        return False
    return any(abs(target - n) <= 1e-9 * max(1.0, abs(target)) for n in numbers)


def _product_of(value: Any, numbers: set[float]) -> bool:
    return any(a * b == float(value) for a in numbers for b in numbers)
