"""The deterministic parser never drops what a person asked for: a value it cannot honour
(a fraction of an epoch, a negative budget) is a reply that says so, not a silent default."""

from __future__ import annotations

import pytest

from agent.parsing.rules import parse


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("train a cnn on mnist with 2.5 epochs", "2.5 is not a whole number"),
        ("train an mlp on digits on 1.5 GPUs", "1.5 is not a whole number"),
        ("train a cnn on mnist with batch size 64.5", "64.5 is not a whole number"),
        ("train a cnn on mnist with 1e9 epochs", "epochs is out of range"),
        ("train a cnn on mnist for one and a half epochs", "1.5 is not a whole number"),
        ("train a cnn on mnist on half a GPU", "0.5 is not a whole number"),
        ("train a cnn on mnist for 3 epochs under $-5", "A budget can't be negative"),
        ("train a cnn on mnist, keep it under -5 dollars", "A budget can't be negative"),
    ],
)
def test_a_value_that_cannot_be_honoured_is_refused_with_the_reason(text: str, reply: str) -> None:
    request = parse(text)
    assert request.intent == "unknown"
    assert reply in request.reply


@pytest.mark.parametrize(
    "text",
    [
        "stop the mlflow server",
        "kill the node",
        "terminate the namespace",
        "kill all processes",
        "stop everything",
        "cancel all jobs",
        "delete job cnn-mnist-3f2a",
        "delete cnn-mnist-3f2a",
        "delete all my jobs",
        "remove the failed jobs",
        "purge old logs",
    ],
)
def test_destructive_or_bulk_asks_are_never_mapped_onto_a_nearby_action(text: str) -> None:
    assert parse(text).intent == "unknown"


@pytest.mark.parametrize(
    ("text", "job"),
    [
        ("cancel baseline-run", "baseline-run"),
        ("cost of baseline-run", "baseline-run"),
        ("cancel cnn-mnist-3f2a", "cnn-mnist-3f2a"),
        ("stop the cnn training", "latest"),
        ("cancel it", "latest"),
    ],
)
def test_cancel_and_cost_name_the_job_asked_about(text: str, job: str) -> None:
    assert parse(text).job == job


@pytest.mark.parametrize(
    ("text", "slots"),
    [
        ("train a cnn on mnist with lr of 1/1000", {"lr": 0.001}),
        ("train a cnn on mnist with batch size 1,024", {"batch_size": 1024}),
        ("train a cnn on mnist using the gpu", {"gpus": 1}),
        ("train a cnn on mnist on 2 gpus", {"gpus": 2}),
    ],
)
def test_numbers_as_people_write_them(text: str, slots: dict) -> None:
    request = parse(text)
    assert request.intent == "train"
    assert {k: getattr(request, k) for k in slots} == slots


def test_a_range_followed_by_a_trial_count_keeps_the_range() -> None:
    request = parse("sweep lr 1e-4 to 1e-1, 10 trials for a cnn on mnist")
    assert request.trials == 10 and request.lr is None
    assert (request.params["lr"].low, request.params["lr"].high) == (1e-4, 1e-1)


def test_scientific_epochs_within_range_are_read() -> None:
    assert parse("train a cnn on mnist for 1e1 epochs").epochs == 10


def test_a_list_of_values_in_a_train_request_is_one_run_per_value() -> None:
    request = parse("train a cnn on mnist for 2 epochs with batch sizes 32, 64 and 128")
    assert request.intent == "sweep"
    assert request.epochs == 2
    assert request.params["batch_size"].values == [32, 64, 128]


def test_a_job_named_by_id_is_not_read_as_a_model_and_dataset() -> None:
    request = parse("what did job cnn-mnist-abc cost?")
    assert (request.intent, request.job, request.model, request.dataset) == (
        "cost",
        "cnn-mnist-abc",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("cost over the last 1.5 days", "36h"),
        ("cost over the last 3 hours", "3h"),
        ("cost over the last 2 weeks", "14d"),
    ],
)
def test_periods_with_fractions_become_hours(text: str, period: str) -> None:
    assert parse(text).period == period


def test_every_model_and_dataset_of_the_vocabulary_has_words_the_parser_knows() -> None:
    from agent.parsing.rules import DATASET_WORDS, MODEL_WORDS
    from common.vocabulary import DATASETS, MODELS

    assert sorted(name for name, _ in MODEL_WORDS) == sorted(MODELS)
    assert sorted(name for name, _ in DATASET_WORDS) == sorted(DATASETS)
