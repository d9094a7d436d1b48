"""Numbers as people write them: "three", "twenty five", "a dozen", "3 x 10^-4", "1e-3", "5k"."""

from __future__ import annotations

import re

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000}
_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
_RUN = re.compile(rf"\b(?:(?:{_WORD})(?:[\s-]+(?:and[\s-]+)?)?)+\b")
_IDIOMS = [
    (re.compile(r"\bone of\b"), "among"),  # "batch size one of 64, 128": a list, not 1
    (re.compile(r"\bhalf a dozen\b"), "6"),
    (re.compile(r"\s+and a half\b"), ".5"),  # "one and a half epochs": 1.5, not 1
    (re.compile(r"\bhalf (?:a|an)\s+"), "0.5 "),  # "half a GPU": 0.5, not 1
    (re.compile(r"\ba dozen\b|\bdozen\b"), "12"),
    (re.compile(r"\ba (?:couple|pair) of\b"), "2"),
    (re.compile(r"\b(?:a|one) single\b|\bsingle\b"), "1"),
    (
        re.compile(
            r"\b(?:a|an)\s+(?=(?:epoch|gpu|node|machine|trial|hour|day|week|month|a100|a10g|b200|"
            r"h100|h200|l4|l40s|t4|v100)s?\b)"
        ),
        "1 ",
    ),
    (re.compile(r"\b(?:a|an)\s+(?=(?:hundred|thousand)\b)"), "one "),
]
_SCIENTIFIC = re.compile(r"(\d+(?:\.\d+)?)\s*(?:x|×|\*)\s*10\s*(?:\^|\*\*)\s*([-+−]?\s*\d+)")
_POWER_OF_TEN = re.compile(r"\b10\s*(?:\^|\*\*)\s*([-+−]?\s*\d+)")
_THOUSANDS = re.compile(r"\b(\d+(?:\.\d+)?)k\b")
# "1,024" is one number; "32,64,128" (no thousands groups of three) stays a list.
_GROUPED = re.compile(r"(?<!\d,)\b\d{1,3}(?:,\d{3})+\b(?!,\d)")
# "1/2" is a half; "32/64/128" is a list.
_FRACTION = re.compile(r"(?<![\d/])\b(\d+)\s*/\s*(\d+)\b(?!\s*/)")


def _words_value(words: str) -> int | None:
    total, current = 0, 0
    for word in re.split(r"[\s-]+", words.strip()):
        if word in ("", "and"):
            continue
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = max(current, 1) * 100
        elif word == "thousand":
            total += max(current, 1) * 1000
            current = 0
        else:
            return None
    return total + current


def normalize_numbers(text: str) -> str:
    """Rewrite spelled-out and scientific numbers as plain ones (text already lowercased)."""
    for pattern, replacement in _IDIOMS:
        text = pattern.sub(replacement, text)

    def spell(match: re.Match[str]) -> str:
        words = match.group(0)
        value = _words_value(words)
        trailing = " " if words.endswith((" ", "-")) else ""
        return f"{value}{trailing}" if value is not None else words

    text = _RUN.sub(spell, text)
    text = _GROUPED.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _FRACTION.sub(
        lambda m: repr(int(m.group(1)) / int(m.group(2))) if int(m.group(2)) else m.group(0), text
    )
    text = _SCIENTIFIC.sub(
        lambda m: f"{m.group(1)}e{m.group(2).replace(' ', '').replace('−', '-')}", text
    )
    text = _POWER_OF_TEN.sub(lambda m: f"1e{m.group(1).replace(' ', '').replace('−', '-')}", text)
    return _THOUSANDS.sub(lambda m: str(int(float(m.group(1)) * 1000)), text)


_NUMBER_BODY = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?"
NUMBER = rf"({_NUMBER_BODY})"
SIGNED_NUMBER = rf"(-?\s*(?:{_NUMBER_BODY}))"


class NotAWholeNumber(ValueError):
    """A count (epochs, GPUs, nodes, batch size, trials, lines) written with a fraction."""


def as_int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise NotAWholeNumber(text)
    return int(value)
