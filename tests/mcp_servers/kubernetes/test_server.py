"""The Kubernetes MCP server through real client sessions, running real jobs locally."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
import yaml

from agent.stack import LocalStack
from common.errors import ErrorKind
from common.net import free_port
from mcp_servers.kubernetes.job_env import BASE_ENV
from mcp_servers.kubernetes.local.processes import job_processes, terminate
from mcp_servers.kubernetes.schemas import POST_MORTEM_ARTIFACT, JobStatus, PostMortem
from mcp_servers.kubernetes.server import build_server
from tests.conftest import stack_settings
from tests.mcp_servers.support import (
    assert_matches_golden,
    call,
    call_failure,
    http_session,
    memory_session,
    server_env,
    start_http_server,
    stdio_session,
    tool_snapshot,
)
from tests.support import promql, wait_for
from training.errors import CONFIG_ERROR_EXIT

pytestmark = pytest.mark.anyio
MODULE = "mcp_servers.kubernetes"
TERMINAL = {"Succeeded", "Failed", "Cancelled"}


def smoke_spec(**overrides) -> dict:
    return {
        "model": "cnn",
        "dataset": "digits",
        "epochs": 2,
        "smoke_test": True,
        "batch_size": 64,
    } | overrides


async def wait_until(session, job_id: str, phases: set[str], timeout: float = 180) -> dict:
    """Follow the job with training_jobs_wait (event-driven) until it reaches one of `phases`."""
    status = await call(session, "training_jobs_get", job_id=job_id)
    while status["phase"] not in phases:
        assert status["phase"] not in TERMINAL, f"ended {status['phase']}: {status['message']}"
        status = await call(
            session, "training_jobs_wait", job_id=job_id, timeout_s=timeout, phase=status["phase"]
        )
    return status


async def test_tool_list_matches_the_golden_snapshot(settings_for, tmp_path: Path) -> None:
    async with memory_session(build_server, settings_for()) as session:
        snapshot = await tool_snapshot(session)
    assert_matches_golden(
        "kubernetes_tools", snapshot, update=bool(os.environ.get("UPDATE_GOLDEN"))
    )
    for tool in snapshot:
        assert tool["name"].count("_") >= 1 and tool["annotations"]["title"]
        assert {"readOnlyHint", "destructiveHint", "idempotentHint"} <= set(tool["annotations"])


async def test_read_only_hides_every_mutating_tool(settings_for) -> None:
    async with memory_session(build_server, settings_for(), read_only=True) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        assert "training_jobs_create" not in names and "training_jobs_delete" not in names
        assert {"training_jobs_get", "manifests_render", "cluster_capacity"} <= names
        kind, error = await call_failure(session, "training_jobs_create", spec=smoke_spec())
        assert kind == ErrorKind.NOT_FOUND and "unknown tool 'training_jobs_create'" in error


async def test_two_replica_pytorchjob_runs_to_success_across_a_server_restart(
    tmp_path: Path, mlflow_url: str, mlflow_client
) -> None:
    env = server_env(tmp_path, MLFLOW_TRACKING_URI=mlflow_url)
    async with stdio_session(MODULE, env) as session:
        created = await call(session, "training_jobs_create", spec=smoke_spec(nodes=2, epochs=3))
        assert (
            created["kind"] == "PyTorchJob" and created["phase"] == "Pending" and created["created"]
        )
        job_id = created["job_id"]
        running = await wait_until(session, job_id, {"Running"})
        assert [r["name"] for r in running["replicas"]] == ["master-0", "worker-0"]

    # A new server process (the old one is gone) sees the job as it is.
    async with stdio_session(MODULE, env) as session:
        again = await call(session, "training_jobs_get", job_id=job_id)
        assert again["phase"] in ("Running", "Succeeded")
        done = await wait_until(session, job_id, {"Succeeded"})
        assert done["message"].startswith("Succeeded in")
        assert all(r["phase"] == "Succeeded" and r["exit_code"] == 0 for r in done["replicas"])
        assert done["progress"]["event"] == "done"
        assert done["progress"]["metrics"]["val_accuracy"] > 0

        events = await call(session, "training_jobs_events", job_id=job_id)
        reasons = [e["reason"] for e in events["events"]]
        assert reasons[:2] == ["Created", "Scheduled"]
        assert reasons.count("Started") == 2 and reasons[-1] == "Succeeded"

        logs = await call(session, "training_jobs_logs", job_id=job_id, contains='"event": "epoch"')
        assert len(logs["lines"]) == 3 and logs["replicas"] == ["master-0", "worker-0"]

        listed = await call(session, "training_jobs_list", phase="Succeeded")
        assert [j["job_id"] for j in listed["jobs"]] == [job_id]
        kind, _ = await call_failure(session, "training_jobs_logs", job_id=job_id, previous=True)
        assert kind == ErrorKind.NOT_FOUND  # it never restarted

    run = mlflow_client.get_run(done["mlflow_run_id"])
    assert run.data.tags["trainops.job_id"] == job_id
    assert run.data.tags["trainops.world_size"] == "2"
    # The first look at the ended job left its post-mortem in the run, once.
    artifacts = mlflow_client.list_artifacts(run.info.run_id, "trainops")
    assert [a.path for a in artifacts] == [POST_MORTEM_ARTIFACT]
    local = mlflow_client.download_artifacts(run.info.run_id, POST_MORTEM_ARTIFACT, str(tmp_path))
    post_mortem = PostMortem.model_validate_json(Path(local).read_text())
    assert post_mortem.status.phase == "Succeeded"
    assert sorted(post_mortem.logs) == ["master-0", "worker-0"]
    assert any('"event": "done"' in line for line in post_mortem.logs["master-0"])
    assert [e.reason for e in post_mortem.events][-1] == "Succeeded"


async def test_prometheus_scrapes_a_running_job_then_cancel_stops_every_process(
    settings_for,
    tmp_path: Path,
) -> None:
    # A Prometheus of this test's own home, so that it watches this home's file_sd folder.
    local = LocalStack(stack_settings(tmp_path))
    prometheus_url = local.up(("prometheus",))[0].url
    targets = local.settings.prometheus_targets_dir
    try:
        async with memory_session(build_server, settings_for()) as session:
            created = await call(
                session, "training_jobs_create", spec=smoke_spec(nodes=2, epochs=500)
            )
            job_id = created["job_id"]
            await wait_until(session, job_id, {"Running"})
            wait_for(
                lambda: len(job_processes(job_id)) >= 4,
                timeout=60,
                what="two torchrun agents and their workers",
            )
            # The supervisor's file_sd entry leads Prometheus to both replicas' exporters.
            steps = f'trainops_train_steps_total{{job_id="{job_id}"}} > 0'
            wait_for(
                lambda: len(promql(prometheus_url, steps)) == 2,
                timeout=60,
                what="both replicas' step counters in Prometheus",
            )
            assert {r["metric"]["replica"] for r in promql(prometheus_url, steps)} == {
                "master-0",
                "worker-0",
            }

            cancelled = await call(session, "training_jobs_delete", job_id=job_id)
            assert cancelled["phase"] == "Cancelled"
            assert job_processes(job_id) == []
            # Stopped replicas keep their real exit status (reaping them must not turn it into 0).
            assert all(
                r["reason"] == "Terminated" and r["exit_code"] != 0 for r in cancelled["replicas"]
            ), cancelled["replicas"]
            assert not (targets / f"{job_id}.json").exists()
            events = (await call(session, "training_jobs_events", job_id=job_id))["events"]
            assert "Cancelled" in [e["reason"] for e in events]
            # Deleting again changes nothing.
            again = await call(session, "training_jobs_delete", job_id=job_id)
            assert again["phase"] == "Cancelled"
    finally:
        local.down(("prometheus",))


async def test_a_killed_replica_is_restarted_and_the_job_resumes_to_success(
    settings_for, tmp_path: Path
) -> None:
    async with memory_session(build_server, settings_for()) as session:
        spec = smoke_spec(nodes=2, epochs=6, smoke_test=False, backoff_limit=2)
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        await wait_until(session, job_id, {"Running"})

        def has_checkpoint() -> bool:
            progress = _get_progress(tmp_path, job_id)
            return progress is not None and progress >= 1

        wait_for(has_checkpoint, timeout=120, what="the first checkpointed epoch")
        for proc in job_processes(job_id, {"worker-0"}):
            proc.send_signal(signal.SIGKILL)

        done = await wait_until(session, job_id, {"Succeeded"}, timeout=300)
        assert done["restarts"] == 1
        assert all(r["restarts"] == 1 for r in done["replicas"])
        events = (await call(session, "training_jobs_events", job_id=job_id))["events"]
        assert any(e["reason"] == "BackOff" for e in events)
        resumed = await call(session, "training_jobs_logs", job_id=job_id, contains='"resumed"')
        assert resumed["lines"], "the restarted job did not resume from its checkpoint"
        before = await call(
            session, "training_jobs_logs", job_id=job_id, replica="master-0", previous=True
        )
        assert before["previous"] and any('"event": "epoch"' in x for x in before["lines"])
        assert not any('"resumed"' in line for line in before["lines"])  # the first instance


def _get_progress(home: Path, job_id: str) -> int | None:
    from mcp_servers.kubernetes.progress import last_progress

    progress, _ = last_progress(home / "jobs" / job_id / "logs" / "master-0.log")
    return progress.epoch if progress and progress.event == "epoch" else None


async def test_same_idempotency_key_twice_is_one_job_and_the_concurrency_cap_holds(
    settings_for,
) -> None:
    settings = settings_for()
    settings.kubernetes.max_concurrent_jobs = 1
    async with memory_session(build_server, settings) as session:
        spec = smoke_spec(epochs=500, idempotency_key="thread-42/request-1")
        first = await call(session, "training_jobs_create", spec=spec)
        second = await call(session, "training_jobs_create", spec=spec)
        assert second["job_id"] == first["job_id"]
        assert first["created"] and not second["created"]
        other = smoke_spec(epochs=500, idempotency_key="thread-42/request-2")
        kind, error = await call_failure(session, "training_jobs_create", spec=other)
        assert kind == ErrorKind.REFUSED and "1 jobs are already active and the cap is 1" in error
        assert (await call(session, "training_jobs_list"))["total"] == 1
        await call(session, "training_jobs_delete", job_id=first["job_id"])


async def test_a_job_that_does_not_fit_stays_pending_with_the_reason(
    settings_for, tmp_path: Path
) -> None:
    async with memory_session(build_server, settings_for()) as session:
        cpus = psutil.cpu_count() * 4
        job_id = (await call(session, "training_jobs_create", spec=smoke_spec(cpus=cpus)))["job_id"]
        status = await call(session, "training_jobs_wait", job_id=job_id, timeout_s=5)
        if status["phase"] == "Pending" and "never fits" not in status["message"]:
            status = await call(session, "training_jobs_wait", job_id=job_id, timeout_s=10)
        assert status["phase"] == "Pending"
        assert (
            "never fits this machine" in status["message"] and f"{cpus} CPUs" in status["message"]
        )
        assert JobStatus.model_validate(status).unschedulable  # what clients route on
        capacity = await call(session, "cluster_capacity")
        assert capacity["nodes"][0]["allocatable"]["cpus"] == len(os.sched_getaffinity(0))
        assert (await call(session, "training_jobs_delete", job_id=job_id))["phase"] == "Cancelled"


async def test_failing_job_retries_up_to_the_backoff_limit_then_says_why(
    settings_for, tmp_path: Path
) -> None:
    async with memory_session(build_server, settings_for()) as session:
        # A PyTorchJob retries any failure (the Training Operator has no podFailurePolicy)...
        spec = smoke_spec(nodes=2, dataset="mnist", extra_args=["--no-download"], backoff_limit=1)
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        # ...a Job's podFailurePolicy fails it at once on the exit code of bad flags or data.
        single = smoke_spec(dataset="mnist", extra_args=["--no-download"], backoff_limit=3)
        single_id = (await call(session, "training_jobs_create", spec=single))["job_id"]

        failed = await wait_until(session, job_id, {"Failed"})
        assert failed["restarts"] == 1
        assert "BackoffLimitExceeded" in failed["message"]
        assert "mnist is not available" in failed["message"]  # the job's own error line

        at_once = await wait_until(session, single_id, {"Failed"})
        assert at_once["restarts"] == 0
        assert at_once["replicas"][0]["exit_code"] == CONFIG_ERROR_EXIT
        assert "PodFailurePolicy" in at_once["message"]
        assert "mnist is not available" in at_once["message"]


async def test_deadline_fails_a_job_that_runs_too_long(settings_for, tmp_path: Path) -> None:
    async with memory_session(build_server, settings_for()) as session:
        spec = smoke_spec(epochs=5000, active_deadline_seconds=1)
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        failed = await wait_until(session, job_id, {"Failed"})
        assert "DeadlineExceeded" in failed["message"]
        assert job_processes(job_id) == []


async def test_a_replica_over_its_memory_limit_is_oomkilled(settings_for, tmp_path: Path) -> None:
    async with memory_session(build_server, settings_for()) as session:
        spec = smoke_spec(memory="64Mi", backoff_limit=0)  # importing torch alone takes more
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        failed = await wait_until(session, job_id, {"Failed"})
        replica = failed["replicas"][0]
        assert (replica["reason"], replica["exit_code"]) == ("OOMKilled", 137)
        assert "64 MiB memory limit; ask for more memory" in failed["message"]
        events = await call(session, "training_jobs_events", job_id=job_id)
        assert any(e["reason"] == "OOMKilling" for e in events["events"])
        assert job_processes(job_id) == []


INVALID, REFUSED = ErrorKind.INVALID_ARGUMENT, ErrorKind.REFUSED
BAD_SPECS = [
    ({"epochs": -1}, INVALID, "spec.epochs: Input should be greater than or equal to 1"),
    ({"nodes": 1, "gpus_per_node": 10_000}, REFUSED, "exceeds the cap of 16 GPUs per job"),
    ({"namespace": "kube-system"}, REFUSED, "namespace 'kube-system' is not allowed"),
    ({"image": "docker.io/evil/miner:latest"}, REFUSED, "is not from an allowed registry"),
    ({"name": "MyJob"}, INVALID, "spec.name: String should match pattern"),
    ({"nodes": 40}, REFUSED, "exceeds the cap of 16"),
    ({"extra_args": ["--bogus"]}, INVALID, "unrecognized arguments: --bogus"),
    ({"extra_args": ["--model", "mlp"]}, INVALID, "set from the spec's own fields"),
    ({"env": {"MASTER_ADDR": "evil"}}, INVALID, "MASTER_ADDR is set by trainops itself"),
    ({"model": "gpt"}, INVALID, "trains on token data"),
    ({"memory": "lots"}, INVALID, "spec.memory"),
    ({"unknown_field": 1}, INVALID, "spec.unknown_field: Extra inputs are not permitted"),
    ({"extra_args": ["--mod", "mlp", "--epoch", "99999"]}, INVALID, "unrecognized arguments"),
    ({"kind": "Job", "nodes": 2}, INVALID, "a Job runs one replica"),
    ({"kind": "TrainJob", "backoff_limit": 1}, INVALID, "takes its retries and deadline from"),
    ({"nodes": 3, "batch_size": 64}, INVALID, "batch_size 64 does not split over 3 ranks"),
    ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, INVALID, "LD_PRELOAD would change what code"),
    ({"env": {"PYTHONPATH": "/tmp"}}, INVALID, "PYTHONPATH would change what code the job"),
    ({"image": "ghcr.io/trainops/../../evil/x:1"}, INVALID, "not an OCI image reference"),
    ({"image": "ghcr.io/trainops/trainer:0.1.0\nrm"}, INVALID, "not an OCI image reference"),
    ({"image": "ghcr.io/trainops/$(id)"}, INVALID, "not an OCI image reference"),
    ({"image": "ghcr.io/trainopsevil/x:1"}, REFUSED, "is not from an allowed registry"),
    ({"memory": "0"}, INVALID, "too little for a training process"),
    ({"cpus": 0.0001}, INVALID, "less than a millicpu"),
    ({"active_deadline_seconds": 10**20}, INVALID, "active_deadline_seconds"),
    ({"name": "job\x00x"}, INVALID, "NUL byte"),
    ({"extra_args": ["--seed", "1\x00"]}, INVALID, "NUL byte"),
    ({"extra_args": ["--help"]}, INVALID, "may not ask for --help"),
    ({"env": {"HOME": "/root"}}, INVALID, "HOME would redirect where the job reads"),
    ({"env": {"https_proxy": "http://evil:3128"}}, INVALID, "https_proxy would redirect"),
    ({"env": {"SSL_CERT_FILE": "/tmp/ca.pem"}}, INVALID, "SSL_CERT_FILE would redirect"),
    ({"env": {"XDG_CACHE_HOME": "/tmp"}}, INVALID, "XDG_CACHE_HOME would redirect"),
    ({"env": {"TORCH_HOME": "/tmp"}}, INVALID, "TORCH_HOME would redirect"),
    ({"env": {"MLFLOW_EXPERIMENT_NAME": "x"}}, INVALID, "MLFLOW_EXPERIMENT_NAME is set by"),
    ({"env": {"MLFLOW_RUN_ID": "x"}}, INVALID, "MLFLOW_RUN_ID is set by trainops"),
    ({"env": {"TORCHELASTIC_RUN_ID": "x"}}, INVALID, "TORCHELASTIC_RUN_ID is set by"),
    ({"env": {"GROUP_RANK": "0"}}, INVALID, "GROUP_RANK is set by trainops itself"),
    ({"env": {"OPENAI_API_KEY": "sk-leak"}}, INVALID, "pass it in secret_env"),
    ({"secret_env": {"PATH": {"secret": "s", "key": "k"}}}, INVALID, "PATH would change"),
    ({"secret_env": {"T": {"secret": "Bad_Name", "key": "k"}}}, INVALID, "secret_env.T.secret"),
]


async def test_bad_arguments_are_one_line_tool_errors_with_a_kind_and_create_nothing(
    settings_for, tmp_path: Path
) -> None:
    async with memory_session(build_server, settings_for()) as session:
        for overrides, kind, expected in BAD_SPECS:
            for tool in ("training_jobs_create", "manifests_render"):
                got, error = await call_failure(session, tool, spec=smoke_spec(**overrides))
                assert (got, expected in error) == (kind, True), (overrides, error)
                assert "sk-leak" not in error  # a refused secret is not echoed back
        kind, error = await call_failure(session, "training_jobs_get", job_id="nope-0000")
        assert kind == ErrorKind.NOT_FOUND and "no job 'nope-0000'" in error
        kind, error = await call_failure(session, "training_jobs_get", job_id="../../etc")
        assert kind == INVALID and "job_id" in error
        kind, error = await call_failure(session, "training_jobs_logs", job_id="x", tail_lines=5000)
        assert kind == INVALID and "tail_lines" in error
        assert (await call(session, "training_jobs_list"))["total"] == 0
    assert not any((tmp_path / "jobs").glob("*/status.json"))


async def test_one_read_only_session_over_streamable_http(tmp_path: Path) -> None:
    service, url = start_http_server(
        MODULE, server_env(tmp_path), tmp_path / "server.log", "--read-only"
    )
    try:
        async with http_session(url) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert "training_jobs_create" not in names and "training_jobs_delete" not in names
            rendered = await call(session, "manifests_render", spec=smoke_spec(nodes=2))
            assert rendered["kind"] == "PyTorchJob" and "kind: PyTorchJob" in rendered["yaml"]
            capacity = await call(session, "cluster_capacity")
            assert capacity["backend"] == "local" and capacity["nodes"][0]["free"]["cpus"] > 0
    finally:
        service.stop()


def _folder_snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def test_read_only_tools_change_nothing_even_for_a_job_whose_supervisor_died(
    settings_for, tmp_path: Path
) -> None:
    async with memory_session(build_server, settings_for()) as session:
        job_id = (await call(session, "training_jobs_create", spec=smoke_spec(epochs=500)))[
            "job_id"
        ]
        await wait_until(session, job_id, {"Running"})
        folder = tmp_path / "jobs" / job_id
        supervisor = json.loads((folder / "status.json").read_text())["supervisor"]
        process = psutil.Process(supervisor["pid"])
        process.kill()
        process.wait(30)  # reaps it: the in-memory server's backend started it
        terminate(job_processes(job_id), grace_s=5)
        before = _folder_snapshot(folder)

        lost = await call(session, "training_jobs_get", job_id=job_id)
        assert lost["phase"] == "Failed"
        assert [c["reason"] for c in lost["conditions"] if c["status"] == "True"] == [
            "SupervisorLost"
        ]
        events = await call(session, "training_jobs_events", job_id=job_id)
        assert events["events"][-1]["reason"] == "SupervisorLost"
        listed = await call(session, "training_jobs_list")
        assert [j["phase"] for j in listed["jobs"]] == ["Failed"]
        await call(session, "training_jobs_wait", job_id=job_id, timeout_s=1)
        await call(session, "training_jobs_logs", job_id=job_id)
        await call(session, "cluster_capacity")
        assert (await call(session, "training_jobs_get", job_id=job_id)) == lost
        assert _folder_snapshot(folder) == before


async def test_asking_for_help_in_extra_args_neither_prints_on_the_channel_nor_ends_the_server(
    tmp_path: Path,
) -> None:
    """stdout is the JSON-RPC channel: argparse's usage there (and its SystemExit) used to
    break the session and end the server."""
    async with stdio_session(MODULE, server_env(tmp_path)) as session:
        for args in (["--help"], ["-h"], ["--precision", "bf16", "--help"], ["--version"]):
            for tool in ("manifests_render", "training_jobs_create"):
                kind, _ = await call_failure(session, tool, spec=smoke_spec(extra_args=args))
                assert kind == ErrorKind.INVALID_ARGUMENT, (tool, args)
        capacity = await call(session, "cluster_capacity")  # the same session still answers
        assert capacity["nodes"]
    assert not any((tmp_path / "jobs").glob("*/status.json"))


async def test_a_replica_gets_its_manifests_env_and_secrets_never_the_servers_own(
    settings_for, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "OPENAI_API_KEY": "sk-server-own",
        "AWS_SECRET_ACCESS_KEY": "server-aws-secret",
        "HTTPS_PROXY": "http://proxy.example:3128",
        "MLFLOW_EXPERIMENT_NAME": "not-the-jobs",
        "TORCHELASTIC_RUN_ID": "stale",
    }.items():
        monkeypatch.setenv(name, value)  # the server's environment, which a job must not see
    secret = tmp_path / "secrets" / "hf" / "token"
    secret.parent.mkdir(parents=True)
    secret.write_text("hf_value_1234\n")
    spec = smoke_spec(
        epochs=500,
        env={"MY_SETTING": "1"},
        secret_env={"HF_TOKEN": {"secret": "hf", "key": "token"}},
    )
    async with memory_session(build_server, settings_for()) as session:
        rendered = await call(session, "manifests_render", spec=spec)
        assert "hf_value_1234" not in rendered["yaml"] and "secretKeyRef" in rendered["yaml"]
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        await wait_until(session, job_id, {"Running"})
        folder = tmp_path / "jobs" / job_id
        replica = json.loads((folder / "status.json").read_text())["replicas"][0]["process"]
        env = psutil.Process(replica["pid"]).environ()
        manifest = yaml.safe_load((folder / "manifest.yaml").read_text())
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        given = {e["name"] for e in container["env"]}
        local = {"HOME", "TMPDIR", "PYTHONPATH", "TRAINOPS_REPLICA", "CUDA_VISIBLE_DEVICES"}
        assert set(env) - given - local - set(BASE_ENV) == set(), sorted(env)
        assert env["HF_TOKEN"] == "hf_value_1234" and env["MY_SETTING"] == "1"
        assert env["HOME"].startswith(str(folder)) and env["TMPDIR"].startswith(str(folder))
        assert not {"OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "HTTPS_PROXY"} & set(env)
        assert "hf_value_1234" not in "".join(p.read_text() for p in folder.rglob("*.json"))

        with open(folder / "logs" / "trainer-0.log", "a") as log:  # as if the job printed them
            log.write("token hf_value_1234 and OPENAI_API_KEY=sk-printed\n")
        tail = await call(session, "training_jobs_logs", job_id=job_id, tail_lines=5)
        assert "hf_value_1234" not in str(tail) and "sk-printed" not in str(tail)
        assert "[redacted]" in tail["lines"][-1]
        with open(folder / "events.jsonl", "a") as events:  # an event quoting a replica's output
            event = {"time": "2026-12-01T00:00:00Z", "type": "Warning", "reason": "Failed"}
            events.write(json.dumps({**event, "message": "saw hf_value_1234"}) + "\n")
        shown = await call(session, "training_jobs_events", job_id=job_id)
        assert "hf_value_1234" not in str(shown) and "[redacted]" in str(shown)
        status = await call(session, "training_jobs_get", job_id=job_id)
        assert "hf_value_1234" not in str(status)
        await call(session, "training_jobs_delete", job_id=job_id)


async def test_a_job_whose_secret_is_missing_fails_before_starting_saying_where(
    settings_for, tmp_path: Path
) -> None:
    spec = smoke_spec(secret_env={"HF_TOKEN": {"secret": "hf", "key": "token"}})
    async with memory_session(build_server, settings_for()) as session:
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        failed = await wait_until(session, job_id, {"Failed"})
    condition = JobStatus.model_validate(failed).condition
    assert condition is not None and condition.reason == "CreateContainerConfigError"
    assert str(tmp_path / "secrets" / "hf" / "token") in failed["message"]
    assert job_processes(job_id) == []


async def test_a_damaged_job_folder_is_that_jobs_problem_and_delete_signals_no_stranger(
    settings_for, tmp_path: Path
) -> None:
    stranger = subprocess.Popen(["sleep", "300"])  # an unrelated process of this machine
    try:
        async with memory_session(build_server, settings_for()) as session:
            good = (await call(session, "training_jobs_create", spec=smoke_spec()))["job_id"]
            await wait_until(session, good, {"Succeeded"})
            jobs = tmp_path / "jobs"
            for name in ("corrupt-0001", "nospec-0002", "forged-0003"):
                shutil.copytree(jobs / good, jobs / name)
                status = json.loads((jobs / name / "status.json").read_text())
                (jobs / name / "status.json").write_text(json.dumps({**status, "job_id": name}))
            (jobs / "corrupt-0001" / "status.json").write_text("{not json")
            (jobs / "nospec-0002" / "spec.json").unlink()
            forged = json.loads((jobs / good / "status.json").read_text())
            forged.update(job_id="forged-0003", phase="Running", completion_time=None)
            process = psutil.Process(stranger.pid)
            forged["supervisor"] = {"pid": stranger.pid, "create_time": process.create_time()}
            (jobs / "forged-0003" / "status.json").write_text(json.dumps(forged))

            listed = await call(session, "training_jobs_list")
            assert {j["job_id"] for j in listed["jobs"]} == {good, "nospec-0002", "forged-0003"}
            assert (await call(session, "cluster_capacity"))["nodes"]
            kind, error = await call_failure(session, "training_jobs_get", job_id="corrupt-0001")
            assert kind == ErrorKind.INTERNAL and "status.json is unreadable" in error
            kind, error = await call_failure(session, "training_jobs_get", job_id="nospec-0002")
            assert kind == ErrorKind.INTERNAL and "spec.json is unreadable" in error
            assert (await call(session, "training_jobs_get", job_id=good))["phase"] == "Succeeded"
            again = await call(session, "training_jobs_create", spec=smoke_spec())
            assert again["created"]
            await call(session, "training_jobs_delete", job_id="forged-0003")
            assert stranger.poll() is None, "delete signalled a process trainops did not start"
            # The damaged folders hold no slot: the new job starts.
            await wait_until(session, again["job_id"], {"Running", "Succeeded"})
            await call(session, "training_jobs_delete", job_id=again["job_id"])
    finally:
        stranger.kill()
        stranger.wait()


async def test_mlflow_away_until_after_the_job_then_back_elsewhere_still_gets_the_whole_run(
    settings_for, tmp_path: Path, stack
) -> None:
    """The job ends while MLflow is away; MLflow is then at another address (as after `trainops
    up`, which rewrites config.yaml): the job's supervisor delivers what the job left, and the
    run is complete and closed."""
    config = tmp_path / "config.yaml"
    config.write_text(f"mlflow_tracking_uri: http://127.0.0.1:{free_port()}\n")
    async with memory_session(build_server, settings_for()) as session:
        spec = smoke_spec(model="mlp", epochs=2)
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        done = await wait_until(session, job_id, {"Succeeded"})
        assert done["mlflow_run_id"] is None  # MLflow never answered the job
        config.write_text(f"mlflow_tracking_uri: {stack.mlflow_url}\n")

        def delivered() -> bool:
            events = (tmp_path / "jobs" / job_id / "events.jsonl").read_text()
            return "TelemetryDelivered" in events

        wait_for(delivered, timeout=180, what="the supervisor's delivery to MLflow")
    from mlflow import MlflowClient

    client = MlflowClient(stack.mlflow_url)
    experiment = client.get_experiment_by_name("trainops")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`trainops.job_id` = '{job_id}'")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
    assert steps == [1, 2]
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert len([m for m in models if m.source_run_id == run.info.run_id]) == 1
