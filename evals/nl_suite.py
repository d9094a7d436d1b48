"""The NL parse suite: every case in evals/nl/*.yaml through a parser, scored by intent and slot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from common.vocabulary import INTENTS

CASES_DIR = Path(__file__).parent / "nl"
"""The development cases: read and extended while writing the parser's rules."""
HELDOUT_DIR = CASES_DIR / "heldout"
"""The held-out cases: written apart from the rules, scored, never used to tune them."""


class Parsed(Protocol):
    """What a parser gives for a message: the agent's Request has this shape."""

    @property
    def intent(self) -> str: ...

    def slots(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Case:
    text: str
    intent: str
    slots: dict[str, Any]
    tags: tuple[str, ...]
    source: str


@dataclass
class Score:
    right: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 1.0


@dataclass
class SuiteResult:
    cases: int = 0
    exact: int = 0
    intents: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    slots: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    tags: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    failures: list[tuple[Case, dict[str, Any]]] = field(default_factory=list)

    @property
    def exact_accuracy(self) -> float:
        return self.exact / self.cases if self.cases else 1.0


def load_cases(directory: Path = CASES_DIR) -> list[Case]:
    cases = []
    for path in sorted(directory.glob("*.yaml")):
        for entry in yaml.safe_load(path.read_text()) or []:
            if entry.get("intent") not in INTENTS:
                raise ValueError(f"{path.name}: {entry.get('text')!r} expects an unknown intent")
            cases.append(
                Case(
                    text=str(entry["text"]),
                    intent=entry["intent"],
                    slots=entry.get("slots") or {},
                    tags=tuple(entry.get("tags", ())),
                    source=path.name,
                )
            )
    return cases


def run_suite(parse: Callable[[str], Parsed], cases: list[Case] | None = None) -> SuiteResult:
    result = SuiteResult()
    for case in cases if cases is not None else load_cases():
        got = parse(case.text)
        got_slots = got.slots()
        result.cases += 1
        intent_ok = got.intent == case.intent
        result.intents[case.intent].total += 1
        result.intents[case.intent].right += intent_ok
        slots_ok = True
        for name in sorted(set(case.slots) | set(got_slots)):
            ok = (
                name in case.slots
                and name in got_slots
                and _same(case.slots[name], got_slots[name])
            )
            result.slots[name].total += 1
            result.slots[name].right += ok
            slots_ok &= ok
        exact = intent_ok and slots_ok
        result.exact += exact
        for tag in case.tags:
            result.tags[tag].total += 1
            result.tags[tag].right += exact
        if not exact:
            result.failures.append((case, {"intent": got.intent, **got_slots}))
    return result


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(_same(expected[k], got[k]) for k in expected)
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(
            _same(a, b) for a, b in zip(expected, got, strict=True)
        )
    if isinstance(expected, int | float) and isinstance(got, int | float):
        return abs(float(expected) - float(got)) <= 1e-9 * max(1.0, abs(float(expected)))
    return expected == got
