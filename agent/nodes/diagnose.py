"""diagnose: why a job failed or struggles. Rules without an LLM; with one, a read-only ReAct
sub-agent. Logs are untrusted data: they are matched and quoted, never obeyed."""

from __future__ import annotations

import re
from typing import Any

from agent.nodes.common import resolve_job, utilization_of
from agent.nodes.handlers import handler
from agent.prompts import DIAGNOSE_SYSTEM
from agent.tools import ToolCallError

LOG_LINES = 300
RULES: list[tuple[str, re.Pattern[str], str]] = [
    (
        "out of memory",
        re.compile(r"CUDA out of memory|OutOfMemoryError|OOMKilled|Cannot allocate memory"),
        "the job ran out of memory: halve --batch-size, use --precision bf16, or for gpt add "
        "--activation-checkpointing; or ask for more memory per replica",
    ),
    (
        "NCCL timeout",
        re.compile(
            r"NCCL.*(?:timeout|Timeout|timed out)|Watchdog caught collective operation timeout"
        ),
        "a collective timed out between ranks: check that every node can reach the others (network "
        "policy, NCCL_SOCKET_IFNAME) and that no rank is stuck loading data",
    ),
    (
        "dataset unavailable",
        re.compile(r"error: .* is not available"),
        "the dataset could not be found or downloaded: put its files in the data volume or "
        "retry with a fallback dataset (e.g. digits)",
    ),
    (
        "bad configuration",
        re.compile(r"^error: ", re.MULTILINE),
        "the training command was refused: its error line says which flag to fix",
    ),
    (
        "connection to peers lost",
        re.compile(r"Connection closed by peer|Connection reset by peer"),
        "a rank died and took the others down: look at the first replica that failed",
    ),
]


# Exit codes 128 + N: the replica died of signal N rather than exiting with an error.
SIGNAL_EXITS = {
    137: (
        "killed (SIGKILL)",
        "the replica was killed from outside: out of memory at the node level, preemption or "
        "an eviction; check the events and ask for more memory if it recurs",
    ),
    139: (
        "crashed (SIGSEGV)",
        "the process segfaulted: usually a native library (CUDA driver, NCCL) mismatch with "
        "the image; rebuild the image against the node's driver",
    ),
}


@handler
async def diagnose(state, ctx, request, warnings):
    job_id = await resolve_job(state, ctx, request.get("job"))
    if ctx.llm is not None:
        answer = await _with_llm(ctx, job_id)
        return {
            "answer": answer,
            "last_job_id": job_id,
            "facts": {"job_id": job_id, "diagnosis": answer, "by": "llm"},
        }
    findings, job = await _with_rules(ctx, job_id, warnings)
    answer = f"{job_id} is {job['phase']}: {job['message']}"
    answer += (
        "\n" + "\n".join(f"- {name}: {advice}" for name, advice, _ in findings)
        if findings
        else (
            "\nNo known problem pattern found."
            if job["phase"] != "Succeeded"
            else "\nNo problems found."
        )
    )
    evidence = [e for _, _, e in findings if e]
    if evidence:
        answer += "\nEvidence (from the logs, quoted):\n" + "\n".join(
            f"  {line}" for line in evidence
        )
    return {
        "answer": answer,
        "last_job_id": job_id,
        "job": job,
        "facts": {
            "job_id": job_id,
            "phase": job["phase"],
            "by": "rules",
            "findings": [{"problem": n, "advice": a, "evidence": e} for n, a, e in findings],
        },
    }


async def _with_rules(
    ctx, job_id: str, warnings: list[str]
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    job = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=job_id)
    findings: list[tuple[str, str, str]] = []
    message = job.get("message", "")
    if job["phase"] == "Pending" and ("needs" in message or "never fits" in message):
        findings.append(
            (
                "not enough capacity",
                "the requested GPUs/CPUs/memory are not free; ask "
                "for less, wait, or cancel other jobs (cluster_capacity shows what is free)",
                message,
            )
        )
    if "DeadlineExceeded" in message:
        findings.append(
            (
                "deadline",
                "the job ran past activeDeadlineSeconds; raise it or train fewer epochs",
                message,
            )
        )
    for replica in job.get("replicas", []):
        if replica.get("reason") == "OOMKilled":
            findings.append(("out of memory", RULES[0][2], f"{replica['name']} OOMKilled"))
        elif (signal := SIGNAL_EXITS.get(replica.get("exit_code"))) is not None:
            findings.append(
                (signal[0], signal[1], f"{replica['name']} exit code {replica['exit_code']}")
            )
    text = ""
    try:
        events = await ctx.tools.call("kubernetes", "training_jobs_events", job_id=job_id)
        text += "".join(
            f"event {e['reason']}: {e['message']}\n"
            for e in events["events"]
            if e["type"] == "Warning"
        )
    except ToolCallError as e:
        warnings.append(str(e))
    for replica in [r["name"] for r in job.get("replicas", [])][:4]:
        try:
            tail = await ctx.tools.call(
                "kubernetes",
                "training_jobs_logs",
                job_id=job_id,
                replica=replica,
                tail_lines=LOG_LINES,
            )
            text += "\n".join(tail["lines"]) + "\n"
        except ToolCallError as e:
            warnings.append(str(e))
    for name, pattern, advice in RULES:
        if any(name == found[0] for found in findings):
            continue
        if match := pattern.search(text):
            line = next((ln for ln in text.splitlines() if match.group(0) in ln), match.group(0))
            findings.append((name, advice, line.strip()[:300]))
            if name == "dataset unavailable":
                break  # it explains the error line too
    findings += await _metric_findings(ctx, job, warnings)
    return findings, job


async def _metric_findings(
    ctx, job: dict[str, Any], warnings: list[str]
) -> list[tuple[str, str, str]]:
    findings = []
    progress = job.get("progress") or {}
    if progress.get("nonfinite_metrics"):
        findings.append(
            (
                "NaN loss",
                "lower --lr (e.g. 10x), keep bf16 rather than fp16, and check the data for NaNs",
                "non-finite metrics in the progress line: "
                + ", ".join(f"{k}={v}" for k, v in progress["nonfinite_metrics"].items()),
            )
        )
    elif job.get("mlflow_run_id"):
        try:
            history = await ctx.tools.call(
                "mlflow", "runs_metric_history", run_id=job["mlflow_run_id"], key="train_loss"
            )
            if history["summary"]["diverging"]:
                findings.append(
                    (
                        "diverging loss",
                        "the loss rises away from its minimum: lower --lr "
                        "or add warmup (--warmup-fraction)",
                        "train_loss summary: diverging",
                    )
                )
        except ToolCallError:
            pass
    if job.get("gpus_per_node") and job.get("start_time"):
        usage = await utilization_of(ctx, job, warnings)
        mean = ((usage or {}).get("gpu") or {}).get("mean_utilization")
        if mean is not None and mean < 0.5:
            findings.append(
                (
                    "low GPU utilisation",
                    "the GPUs waited on input: the data pipeline is "
                    "the bottleneck (keep data on the GPU, bigger batches, more loader "
                    "workers)",
                    f"mean GPU utilisation {mean:.0%}",
                )
            )
    return findings


async def _with_llm(ctx, job_id: str) -> str:
    """A ReAct loop over the read-only tools; the model sees tool output as data only."""
    from langchain.agents import create_agent

    tools = await ctx.tools.read_only_tools()
    agent = create_agent(ctx.llm, tools=tools, system_prompt=DIAGNOSE_SYSTEM)
    result = await agent.ainvoke(
        {"messages": [{"role": "user", "content": f"Diagnose training job {job_id}."}]},
        config={"recursion_limit": 20},
    )
    return str(result["messages"][-1].content)
