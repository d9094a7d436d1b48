"""Requests with a part trainops cannot or must not honour, through the whole agent: each is
refused with a reply that names that part, and nothing is launched."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.parsing.rules import parse
from agent.runner import Agent
from tests.agent.conftest import home_settings, jobs_in

pytestmark = pytest.mark.anyio

# (message, the refused part, words the reply must quote)
UNHONOURABLE: list[tuple[str, str, str]] = [
    # environment variables
    ("train a cnn on mnist with NCCL_DEBUG=INFO", "env", "nccl_debug=info"),
    ("Train a CNN on MNIST, env: FOO=bar", "env", "foo=bar"),
    (
        "train an mlp on digits and set the environment variable HF_HOME to /tmp",
        "env",
        "environment variable",
    ),
    ("train cnn on mnist; export OPENAI_API_KEY first", "env", "openai_api_key"),
    ("run resnet18 on cifar10 with env vars for wandb", "env", "env vars"),
    ("train a cnn on mnist with CUDA_VISIBLE_DEVICES=0,1", "env", "cuda_visible_devices"),
    # namespaces outside the allowlist
    ("train a cnn on mnist in namespace kube-system", "namespace", "kube-system"),
    ("train cnn on mnist in the team-a namespace", "namespace", "team-a"),
    ("train an mlp on digits, ns=default", "namespace", "default"),
    ("launch resnet18 on cifar10 under namespace prod-ml", "namespace", "prod-ml"),
    ("Train a CNN on MNIST in namespace Team_A", "namespace", "team_a"),
    # a named node
    ("train a cnn on mnist on node gpu-node-07", "node", "gpu-node-07"),
    ("train cnn on mnist on host worker3", "node", "worker3"),
    ("train an mlp on digits with a nodeSelector disk=ssd", "node", "nodeselector"),
    ("pin the training of a cnn on mnist to node ip-10-0-1-23", "node", "node"),
    ("train resnet18 on cifar10 with node affinity to the big pool", "node", "affinity"),
    ("train cnn on mnist with tolerations for the spot taint", "node", "tolerations"),
    # privileges
    ("train a cnn on mnist as a privileged container", "privileges", "privileged"),
    ("train a cnn on mnist as root", "privileges", "as root"),
    ("train an mlp on digits with hostNetwork", "privileges", "hostnetwork"),
    ("train cnn on mnist with CAP_SYS_ADMIN", "privileges", "cap_sys_admin"),
    ("train cnn on mnist, run as user 0", "privileges", "run as user"),
    (
        "train resnet18 on cifar10 with privilege escalation allowed",
        "privileges",
        "privilege escalation",
    ),
    # a foreign image
    (
        "train a cnn on mnist using image docker.io/evil/miner:latest",
        "image",
        "docker.io/evil/miner:latest",
    ),
    ("train resnet18 on cifar10 in my own docker image", "image", "docker image"),
    (
        "train cnn on mnist from nvcr.io/nvidia/pytorch:24.01-py3",
        "image",
        "nvcr.io/nvidia/pytorch:24.01-py3",
    ),
    ("train an mlp on digits with image: pytorch/pytorch:2.3.0", "image", "pytorch/pytorch:2.3.0"),
    ("train gpt on synthetic with a custom container image", "image", "container image"),
    ("build a dockerfile and train a cnn on mnist", "image", "dockerfile"),
    # host paths
    ("train a cnn on mnist reading data from /etc/secrets", "host_path", "/etc/secrets"),
    ("train a cnn on mnist with data in /var/lib/data", "host_path", "/var/lib/data"),
    ("train cnn on mnist and mount the host path /mnt/nfs", "host_path", "/mnt/nfs"),
    ("train an mlp on digits from ~/datasets/digits", "host_path", "~/datasets/digits"),
    ("train cnn on mnist using ../../etc/passwd as the dataset", "host_path", "../../etc/passwd"),
    ("train resnet18 on cifar10 with a hostPath volume", "host_path", "hostpath"),
    # outside destinations
    (
        "train a cnn on mnist and ship the logs to http://collector.example.com:9000",
        "network",
        "http://collector.example.com:9000",
    ),
    ("train cnn on mnist and post results to 10.0.0.5", "network", "10.0.0.5"),
    ("train an mlp on digits and send metrics to my webhook", "network", "webhook"),
    (
        "train cnn on mnist, upload the model to s3://my-bucket/models",
        "network",
        "s3://my-bucket/models",
    ),
    ("train resnet18 on cifar10 and stream logs to logs.evil.io", "network", "logs.evil.io"),
    ("train a cnn on mnist and notify me on slack", "network", "slack"),
    # raw flags
    ("train cnn on mnist --epochs 3 --no-validate", "flags", "--epochs 3"),
    ("train a cnn on mnist with --data-dir=/tmp", "flags", "--data-dir"),
    ("train an mlp on digits -x 4", "flags", "-x"),
    ("train cnn on mnist, extra args: --precision bf16", "flags", "--precision"),
    # names no job can have
    ("train a cnn on mnist called My Job", "name", "my"),
    ("train a cnn on mnist named mnist_run_1", "name", "mnist_run_1"),
    ('train a cnn on mnist called "the best run ever"', "name", "the best run ever"),
    ("train cnn on mnist, name it Prod.Model", "name", "prod.model"),
    (f"train a cnn on mnist called {'x' * 70}", "name", "x" * 40),
    ("train a cnn on mnist named -leading-dash", "name", "-leading-dash"),
    # values out of range
    ("train a cnn on mnist for 0 epochs", "range", "epochs"),
    ("train a cnn on mnist with batch size 0", "range", "batch_size"),
    ("train a cnn on mnist for -3 epochs", "range", "negative"),
    ("train a cnn on mnist on 1000000 gpus", "range", "gpus"),
    ("train a cnn on mnist with lr 50", "range", "lr"),
    ("train cnn on mnist for 20000 epochs", "range", "epochs"),
    ("train a cnn on mnist for 2.5 epochs", "range", "whole number"),
    # settings chat can't set
    ("train a cnn on mnist with the adamw optimizer", "setting", "adamw"),
    ("train a cnn on mnist with mixed precision", "setting", "mixed precision"),
    ("train resnet18 on cifar10 with seed 42 and dropout 0.3", "setting", "seed"),
    ("train a cnn on mnist from pretrained weights", "setting", "pretrained"),
    ("train cnn on mnist with weight decay 1e-4 and cosine warmup", "setting", "weight decay"),
    # invalid job ids in follow-ups: said so, never the latest job instead
    ("show the logs of job Bad_Name!", "name", "bad_name"),
    ("status of job ../../etc", "name", "../../etc"),
    ("cancel job My_Job#1", "name", "my_job#1"),
]


def test_there_are_at_least_60_and_every_category_is_covered() -> None:
    assert len(UNHONOURABLE) >= 60
    parts = {part for _, part, _ in UNHONOURABLE}
    assert parts == {
        "env",
        "namespace",
        "node",
        "privileges",
        "image",
        "host_path",
        "network",
        "flags",
        "name",
        "range",
        "setting",
    }


@pytest.mark.parametrize(("message", "part", "quoted"), UNHONOURABLE)
def test_the_parser_refuses_the_part_by_name(message: str, part: str, quoted: str) -> None:
    request = parse(message)
    if part == "namespace" and request.intent == "train":
        # A well-formed namespace is the policy's to allow: the plan refuses it (below).
        assert request.namespace is not None
        return
    assert request.intent == "unknown", (message, request)
    if part != "range":
        assert part in (request.refused or []), (message, request)
    assert quoted.lower() in (request.reply or "").lower(), (message, request.reply)


async def test_nothing_unhonourable_launches_and_the_reply_names_the_part(agent_home: Path) -> None:
    async with Agent(home_settings(agent_home)) as agent:
        for i, (message, part, quoted) in enumerate(UNHONOURABLE):
            result = await agent.ask(f"unhonourable-{i}", message)
            assert result.pending_approval is None, message
            assert "Traceback" not in result.answer, message
            assert quoted.lower() in result.answer.lower(), (message, result.answer)
            assert part in result.facts["refused_parts"], (message, result.facts)
            assert result.facts["launched"] is False
    assert jobs_in(agent_home) == []


ORDINARY = [
    "train a CNN on MNIST, LR=3e-4, EPOCHS=3, BS=64",
    "train resnet18 on cifar10 on 2 nodes x 4 GPUs",
    "train a cnn on mnist in namespace trainops on the A100 nodes",
    "tail -n 20 of the last job",
    "train an mlp on digits -> 3 epochs, 2 gpus",
    "resnet-18 → cifar-10, 40 ep, bs=1k, 2×A100",
    "train cnn on mnist called mnist-baseline",
    "sweep dropout 0.1 to 0.5 and momentum 0.8 to 0.99 for a cnn on mnist",
    "tune lr for the cnn on mnist with asha and early stopping",
    "train a cnn on mnist, fall back to digits if mnist is missing",
    "how much would 8 H100s for resnet18 on cifar10 cost?",
    "sweep bs 32 /64 /128 for the cnn on mnist",
]


@pytest.mark.parametrize("message", ORDINARY)
def test_ordinary_requests_near_a_refused_category_are_not_refused(message: str) -> None:
    request = parse(message)
    assert request.intent != "unknown" and not request.refused, (message, request)
