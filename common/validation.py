"""pydantic's validation errors as one line that says the fix (for tool errors and settings)."""

from __future__ import annotations

from pydantic import ValidationError

# Added to pydantic's message where the fix is not obvious from it.
_FIX_HINTS = {
    "string_pattern_mismatch": "use lowercase letters, digits and '-', starting and ending "
    "with a letter or digit",
    "literal_error": "pick one of the values listed",
    "extra_forbidden": "remove it; the tool's schema lists the fields it takes",
}


def validation_error_line(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        text = f"{where}: {message}"
        if item["type"] not in ("missing", "value_error") and not isinstance(got, dict | list):
            text += f" (got {got!r})"
        if hint := _FIX_HINTS.get(item["type"]):
            text += f"; {hint}"
        problems.append(text)
    return "invalid arguments: " + "; ".join(problems)
