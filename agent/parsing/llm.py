"""LLM mode: a chat model fills the same Request; any failure falls back to the rules."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from agent.parsing import rules
from agent.parsing.grounding import ungrounded
from agent.prompts import PARSE_SYSTEM
from agent.request import Request

log = logging.getLogger(__name__)


def supports_tool_calling(llm: Any) -> bool:
    return type(llm).bind_tools is not BaseChatModel.bind_tools


def parse_with_llm(text: str, llm: Any) -> tuple[Request, str | None]:
    """The Request the model gives, or the deterministic one and a warning saying why."""
    messages = [
        SystemMessage(PARSE_SYSTEM.format(schema=json.dumps(Request.model_json_schema()))),
        HumanMessage(text),
    ]
    try:
        if supports_tool_calling(llm):
            request = llm.with_structured_output(Request).invoke(messages)
        else:
            reply = llm.invoke(messages)
            request = Request.model_validate_json(_json_object(str(reply.content)))
        if not isinstance(request, Request):
            request = Request.model_validate(request)
    except Exception as e:  # any provider, any failure: the rules are always there
        warning = (
            f"the language model could not parse the request ({type(e).__name__}); used the rules"
        )
        log.warning("%s: %s", warning, e)
        return rules.parse(text), warning
    return request, None


def _json_object(text: str) -> str:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        raise ValueError("the reply holds no JSON object")
    return match.group(0)


def parse_checked(text: str, llm: Any | None) -> tuple[Request, list[str]]:
    """The Request for a message and any warnings: the rules' reading, or the model's when a
    model is configured, nothing must be refused and the message holds every value it gives."""
    request = rules.parse(text)
    if llm is None or request.refused or rules.out_of_scope(text):
        return request, []  # refusals never depend on a model's judgement
    model_request, warning = parse_with_llm(text, llm)
    if warning:
        return request, [warning]
    if missing := ungrounded(model_request, rules.normalize(text)):
        return request, [
            f"the language model gave {', '.join(missing)} that the message does not say; "
            "used the rules' reading"
        ]
    return model_request, []
