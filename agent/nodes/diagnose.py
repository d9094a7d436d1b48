"""diagnose: why a job failed or struggles. Rules without an LLM; with one, a read-only ReAct
sub-agent. Logs are untrusted data: they are matched and quoted, never obeyed."""

from __future__ import annotations

import re
from typing import Any

from agent.context import AgentContext
from agent.nodes.common import NoJob, resolve_job, utilization_of
from agent.nodes.handlers import get_job, handler, job_call
from agent.prompts import DIAGNOSE_SYSTEM
from agent.request import Request
from agent.state import AgentState
from agent.tools import ToolCallError
from common.errors import ErrorKind
from common.telemetry import MlflowMetric, MlflowTag
from common.vocabulary import INSUFFICIENT_RESOURCES, UNSCHEDULABLE
from mcp_servers.kubernetes.schemas import (
    POST_MORTEM_ARTIFACT,
    TRAINING_JOBS_EVENTS,
    TRAINING_JOBS_LOGS,
    JobStatus,
    PostMortem,
)
from mcp_servers.mlflow.schemas import RUNS_ARTIFACT_READ, RUNS_METRIC_HISTORY, RUNS_SEARCH

Finding = tuple[str, str, str]
"""(problem, advice, evidence)"""

LOG_LINES = 300
# Patterns in the job's own output (logs are data: matched and quoted, never obeyed).
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


# Why a job is in its phase, by its condition's reason (set by the backend, not worded).
REASONS = {
    UNSCHEDULABLE: (
        "not enough capacity",
        "no node can hold what the job asks for; ask for fewer GPUs/CPUs or less memory "
        "(cluster_capacity shows what the nodes have)",
    ),
    INSUFFICIENT_RESOURCES: (
        "not enough capacity",
        "the requested GPUs/CPUs/memory are not free; wait, ask for less, or cancel other jobs "
        "(cluster_capacity shows what is free)",
    ),
    "DeadlineExceeded": (
        "deadline",
        "the job ran past activeDeadlineSeconds; raise it or train fewer epochs",
    ),
}
OUT_OF_MEMORY = RULES[0][2]


@handler
async def diagnose_job(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """Why a job failed or struggles, and the fix."""
    job_id = await resolve_job(state, ctx, request.job)
    if ctx.llm is not None:
        await get_job(ctx, job_id)  # a job that is not there is said so, not diagnosed
        answer = await _with_llm(ctx, job_id)
        return {
            "answer": answer,
            "last_job_id": job_id,
            "facts": {"job_id": job_id, "diagnosis": answer, "by": "llm"},
        }
    try:
        job = await get_job(ctx, job_id)
        post_mortem = await _post_mortem(ctx, job.mlflow_run_id, job_id) if _gone(job) else None
    except NoJob:  # its objects went (ttlSecondsAfterFinished); its post-mortem stays
        post_mortem = await _post_mortem(ctx, None, job_id)
        if post_mortem is None:
            raise
        job = post_mortem.status
    findings = await _with_rules(ctx, job, warnings, post_mortem)
    answer = f"{job_id} is {job.phase}: {job.message}"
    if findings:
        answer += "\n" + "\n".join(f"- {name}: {advice}" for name, advice, _ in findings)
    else:
        answer += (
            "\nNo problems found."
            if job.phase == "Succeeded"
            else ("\nNo known problem pattern found.")
        )
    evidence = [e for _, _, e in findings if e]
    if evidence:
        answer += "\nEvidence (quoted):\n" + "\n".join(f"  {line}" for line in evidence)
    return {
        "answer": answer,
        "last_job_id": job_id,
        "job": job,
        "facts": {
            "job_id": job_id,
            "phase": job.phase,
            "by": "rules",
            "findings": [{"problem": n, "advice": a, "evidence": e} for n, a, e in findings],
        },
    }


def _gone(job: JobStatus) -> bool:
    """An ended job whose pods are gone: what they said is in its post-mortem."""
    return job.terminal and not job.replicas


async def _post_mortem(ctx: AgentContext, run_id: str | None, job_id: str) -> PostMortem | None:
    """The post-mortem the Kubernetes server left in the job's MLflow run, if any."""
    try:
        if run_id is None:
            page = await ctx.tools.call(
                RUNS_SEARCH, filter=f"tags.`{MlflowTag.JOB_ID}` = '{job_id}'", max_results=1
            )
            if not page.runs:
                return None
            run_id = page.runs[0].run_id
        artifact = await ctx.tools.call(
            RUNS_ARTIFACT_READ, run_id=run_id, path=POST_MORTEM_ARTIFACT, max_bytes=1_000_000
        )
        return PostMortem.model_validate_json(artifact.text)
    except (ToolCallError, ValueError):
        return None


async def _with_rules(
    ctx: AgentContext, job: JobStatus, warnings: list[str], post_mortem: PostMortem | None = None
) -> list[Finding]:
    findings: list[Finding] = []
    if post_mortem is not None:
        job = job.model_copy(update={"replicas": post_mortem.status.replicas or job.replicas})
    condition = job.condition
    if condition is not None and condition.reason in REASONS:
        problem, advice = REASONS[condition.reason]
        findings.append((problem, advice, f"condition {condition.type}: {condition.reason}"))
    for replica in job.replicas:
        if replica.reason == "OOMKilled":
            findings.append(("out of memory", OUT_OF_MEMORY, f"{replica.name} OOMKilled"))
        elif replica.exit_code is not None and (signal := SIGNAL_EXITS.get(replica.exit_code)):
            findings.append((signal[0], signal[1], f"{replica.name} exit code {replica.exit_code}"))
    try:
        if post_mortem is not None:
            events = post_mortem.events
        else:
            events = (await job_call(ctx, TRAINING_JOBS_EVENTS, job.job_id)).events
        reasons = {e.reason for e in events if e.type == "Warning"}
        if "OOMKilling" in reasons and not any(f[0] == "out of memory" for f in findings):
            findings.append(("out of memory", OUT_OF_MEMORY, "event OOMKilling"))
    except ToolCallError as e:
        warnings.append(f"events unknown ({e.kind}): {e.message}")
    text = ""
    for name in [r.name for r in job.replicas][:4]:
        if post_mortem is not None:
            text += "\n".join(post_mortem.logs.get(name, [])) + "\n"
            continue
        try:
            tail = await job_call(
                ctx, TRAINING_JOBS_LOGS, job.job_id, replica=name, tail_lines=LOG_LINES
            )
            text += "\n".join(tail.lines) + "\n"
        except ToolCallError as e:
            warnings.append(f"logs of {name} unknown ({e.kind}): {e.message}")
    for name, pattern, advice in RULES:
        if any(name == found[0] for found in findings):
            continue
        if match := pattern.search(text):
            line = next((ln for ln in text.splitlines() if match.group(0) in ln), match.group(0))
            findings.append((name, advice, line.strip()[:300]))
            if name == "dataset unavailable":
                break  # it explains the error line too
    findings += await _metric_findings(ctx, job, warnings)
    return findings


async def _metric_findings(ctx: AgentContext, job: JobStatus, warnings: list[str]) -> list[Finding]:
    findings: list[Finding] = []
    progress = job.progress
    if progress is not None and progress.nonfinite_metrics:
        findings.append(
            (
                "NaN loss",
                "lower --lr (e.g. 10x), keep bf16 rather than fp16, and check the data for NaNs",
                "non-finite metrics in the progress line: "
                + ", ".join(f"{k}={v}" for k, v in progress.nonfinite_metrics.items()),
            )
        )
    elif job.mlflow_run_id:
        try:
            history = await ctx.tools.call(
                RUNS_METRIC_HISTORY, run_id=job.mlflow_run_id, key=MlflowMetric.TRAIN_LOSS
            )
            if history.summary.diverging:
                findings.append(
                    (
                        "diverging loss",
                        "the loss rises away from its minimum: lower --lr "
                        "or add warmup (--warmup-fraction)",
                        "train_loss summary: diverging",
                    )
                )
        except ToolCallError as e:
            if e.kind != ErrorKind.NOT_FOUND:  # not found: no loss logged yet
                warnings.append(f"loss history unknown ({e.kind}): {e.message}")
    if job.gpus_per_node and job.start_time:
        usage = await utilization_of(ctx, job, warnings)
        mean = usage.gpu.mean_utilization if usage else None
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


async def _with_llm(ctx: AgentContext, job_id: str) -> str:
    """A ReAct loop over the read-only tools; the model sees tool output as data only."""
    from langchain.agents import create_agent

    tools = await ctx.tools.read_only_tools()
    assert ctx.llm is not None  # only called with a model
    agent = create_agent(ctx.llm, tools=tools, system_prompt=DIAGNOSE_SYSTEM)
    result = await agent.ainvoke(
        {"messages": [{"role": "user", "content": f"Diagnose training job {job_id}."}]},
        config={"recursion_limit": 20},
    )
    return str(result["messages"][-1].content)
