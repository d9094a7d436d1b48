"""A request builds on its thread: "the same again but ..." repeats the last train request with
changes, and the answer to the question a turn asked completes the request that asked it."""

from __future__ import annotations

from agent.nodes.parse import _in_thread
from agent.parsing.rules import parse
from agent.request import Request

PREVIOUS = Request(intent="train", model="cnn", dataset="mnist", epochs=3, gpus=2, budget_usd=5)


def test_the_same_again_with_changes_keeps_the_rest() -> None:
    repeat = _in_thread(parse("do the same again but with 2 epochs"), {"last_request": PREVIOUS})
    assert repeat.slots() == {**PREVIOUS.slots(), "epochs": 2}
    on_four = _in_thread(parse("same thing, 4 GPUs this time"), {"last_request": PREVIOUS})
    assert on_four.intent == "train" and on_four.gpus == 4 and on_four.epochs == 3


def test_a_repeat_without_a_previous_request_says_so() -> None:
    alone = _in_thread(parse("run that again with lr 0.01"), {})
    assert alone.intent == "unknown" and "no earlier training request" in (alone.reply or "")


def test_an_answer_completes_the_pending_request() -> None:
    pending = Request(intent="train", model="cnn", epochs=5)
    state = {"pending": pending, "text": "fashion mnist please"}
    completed = _in_thread(parse(state["text"]), state)
    assert completed.slots() == {"model": "cnn", "epochs": 5, "dataset": "fashion-mnist"}
    two_readings = Request(intent="train", model="cnn", choices={"dataset": ["mnist", "cifar10"]})
    state = {"pending": two_readings, "text": "cifar10"}
    answered = _in_thread(parse(state["text"]), state)
    assert answered.dataset == "cifar10" and answered.choices is None
    # A new, unrelated question is not taken for an answer.
    state = {"pending": pending, "text": "list my jobs"}
    assert _in_thread(parse(state["text"]), state).intent == "list"
    # Nor is a message that holds no slot.
    state = {"pending": pending, "text": "hmm"}
    assert _in_thread(parse(state["text"]), state).intent == "unknown"
