"""The Makefile's cluster targets (deploy, refresh, port-forward, stop-port-forward) and
k8s/cluster.sh behind them. No cluster runs here: the failure paths run against a bare PATH and
the real kubectl without a context; the rest against a stand-in kubectl that records each call,
renders with the real `kubectl kustomize` and answers the few queries the script makes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from tests.k8s.manifests import KUSTOMIZE, NO_KUSTOMIZE, OVERLAYS, build
from tests.support import REPO

SCRIPTS = sorted((REPO / "k8s").glob("*.sh"))
TARGETS = ["deploy", "refresh", "port-forward", "stop-port-forward"]
MAKE = shutil.which("make")
KUBECTL = shutil.which("kubectl")
NO_KUBECTL = "error: kubectl is not on PATH; install it (https://kubernetes.io/docs/tasks/tools/)"

STAND_IN = r"""#!/bin/bash
# kubectl for a cluster that is not there: records the call, answers as a cluster would.
printf '%s\n' "$*" >>"$STAND_IN_DIR/calls"
case " $* " in
    *" kustomize "*) exec "$REAL_KUBECTL" "$@" ;;
    *" config current-context "*) echo stand-in ;;
    *" get --raw=/version "*) echo '{"major": "1", "minor": "33"}' ;;
    *" get secret "*)
        [[ " ${STAND_IN_SECRETS:-} " == *" $5 "* ]] && exit 0
        echo "Error from server (NotFound): secrets \"$5\" not found" >&2
        exit 1
        ;;
    *" get service -l ray.io/node-type=head "*) printf '%s' "${STAND_IN_RAY_SERVICE:-}" ;;
    *" get service "*) echo "service/$5" ;;
    *" port-forward "*)
        if [[ -n "${STAND_IN_PORT_TAKEN:-}" ]]; then
            echo "Unable to listen on port ${5%%:*}: address already in use" >&2
            exit 1
        fi
        echo "Forwarding from 127.0.0.1:${5%%:*} -> ${5##*:}"
        trap 'exit 0' TERM
        while :; do sleep 0.2 & wait $!; done
        ;;
    *" delete "*) cp "${@: -1}" "$STAND_IN_DIR/deleted.yaml" ;;
    *" apply "* | *" rollout status "*) echo "stand-in: $*" ;;
    *) echo "stand-in kubectl: unexpected call: $*" >&2; exit 3 ;;
esac
"""


class StandIn:
    """A PATH with the stand-in kubectl first, and what it was asked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "bin").mkdir()
        kubectl = folder / "bin" / "kubectl"
        kubectl.write_text(STAND_IN)
        kubectl.chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{folder / 'bin'}:{os.environ['PATH']}",
            "STAND_IN_DIR": str(folder),
            "REAL_KUBECTL": KUBECTL or "false",
            "TRAINOPS_HOME": str(folder / "home"),
            "FORWARD_READY_SECONDS": "10",
        }

    @property
    def calls(self) -> list[str]:
        path = self.folder / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def pids(self) -> dict[str, int]:
        run = self.folder / "home" / "port-forward"
        return {p.stem: int(p.read_text()) for p in run.glob("*.pid")}


def make(target: str, env: dict[str, str], **variables: str) -> subprocess.CompletedProcess:
    assert MAKE is not None
    return subprocess.run(
        [MAKE, "-s", "--no-print-directory", target, *(f"{k}={v}" for k, v in variables.items())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[StandIn]:
    kubectl = StandIn(tmp_path)
    yield kubectl
    make("stop-port-forward", kubectl.env)
    for pid in kubectl.pids().values():  # whatever a failing test left
        if psutil.pid_exists(pid) and "port-forward" in " ".join(psutil.Process(pid).cmdline()):
            psutil.Process(pid).kill()


needs_make = pytest.mark.skipif(MAKE is None, reason="make is not on PATH")
needs_real_kubectl = pytest.mark.skipif(KUBECTL is None or KUSTOMIZE is None, reason=NO_KUSTOMIZE)


def test_the_scripts_parse_and_stop_at_the_first_error() -> None:
    assert SCRIPTS
    for script in SCRIPTS:
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
        assert "set -euo pipefail" in script.read_text(), script


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing_in_the_scripts() -> None:
    result = subprocess.run(
        ["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


@needs_make
def test_make_help_and_phony_list_every_cluster_target() -> None:
    shown = make("help", dict(os.environ)).stdout
    phony = re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", (REPO / "Makefile").read_text(), re.M)
    assert phony is not None
    for target in TARGETS:
        assert re.search(rf"^make {target}\s", shown, re.M), target
        assert target in phony.group(1).split(), target
    assert "PersistentVolumeClaims" in shown  # refresh says the data survives


@needs_make
@pytest.mark.parametrize("target", ["deploy", "refresh", "port-forward"])
def test_without_kubectl_each_target_fails_with_one_line_naming_the_fix(
    target: str, tmp_path: Path
) -> None:
    result = make(target, {"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == NO_KUBECTL
    assert result.stdout == ""


@needs_make
@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("target", ["deploy", "refresh", "port-forward"])
def test_without_a_context_each_target_fails_with_one_line_naming_the_fix(
    target: str, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\nkind: Config\n")
    env = {**os.environ, "KUBECONFIG": str(config), "HOME": str(tmp_path)}
    result = make(target, env)
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: kubectl has no current context; pick a cluster with")
    assert "kubectl config use-context" in first


@needs_make
def test_an_unknown_overlay_is_refused_with_the_ones_there_are(stand_in: StandIn) -> None:
    result = make("deploy", stand_in.env, OVERLAY="staging")
    assert result.returncode != 0
    names = " ".join(p.name for p in OVERLAYS)
    assert result.stderr.splitlines()[0] == (
        f"error: no overlay 'staging'; choose one of: {names} (OVERLAY=NAME), "
        "or give a path to a kustomization"
    )
    assert not any(" apply " in f" {c} " for c in stand_in.calls)


@needs_make
@needs_real_kubectl
def test_deploy_of_prod_stops_before_applying_while_its_secrets_are_missing(
    stand_in: StandIn,
) -> None:
    result = make("deploy", {**stand_in.env, "STAND_IN_SECRETS": "mlflow-s3"}, OVERLAY="prod")
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: the overlay reads Secrets that namespace trainops lacks: ")
    assert "mlflow-postgres;" in first and "mlflow-s3" not in first.split(";")[0]
    assert "k8s/components/mlflow-postgres-s3/kustomization.yaml" in first
    assert not any(c.startswith("apply") for c in stand_in.calls)


@needs_make
@needs_real_kubectl
@pytest.mark.parametrize(
    "overlay,secrets",
    [("dev", ""), ("prod", "mlflow-postgres mlflow-s3"), ("k8s/overlays/gpu", "")],
    ids=["dev", "prod", "a-path"],
)
def test_deploy_applies_server_side_and_waits_for_each_deployment(
    stand_in: StandIn, overlay: str, secrets: str
) -> None:
    env = {**stand_in.env, "STAND_IN_SECRETS": secrets}
    result = make("deploy", env, OVERLAY=overlay, ROLLOUT_TIMEOUT="90s")
    assert result.returncode == 0, result.stderr
    applies = [c for c in stand_in.calls if c.startswith("apply")]
    assert len(applies) == 1
    assert applies[0].startswith("apply --server-side --field-manager=trainops -f ")
    waits = [c for c in stand_in.calls if " rollout status " in f" {c} "]
    assert waits == [
        f"-n trainops rollout status deployment/{name} --timeout=90s"
        for name in ("mlflow", "prometheus")
    ]
    assert stand_in.calls.index(applies[0]) < stand_in.calls.index(waits[0])


@needs_make
@needs_real_kubectl
def test_refresh_deletes_everything_but_the_namespace_and_the_claims_then_deploys(
    stand_in: StandIn,
) -> None:
    result = make("refresh", stand_in.env, OVERLAY="gpu")
    assert result.returncode == 0, result.stderr
    deleted = [d for d in yaml.safe_load_all((stand_in.folder / "deleted.yaml").read_text()) if d]
    rendered = build(REPO / "k8s" / "overlays" / "gpu")
    kept = [d for d in rendered if d["kind"] in ("Namespace", "PersistentVolumeClaim")]
    assert len(kept) == 5  # the namespace, checkpoints, datasets, MLflow's and Prometheus' data
    assert deleted == [d for d in rendered if d not in kept]
    calls = stand_in.calls
    delete = next(i for i, c in enumerate(calls) if c.startswith("delete"))
    assert "--cascade=foreground" in calls[delete] and "--wait=true" in calls[delete]
    assert delete < next(i for i, c in enumerate(calls) if c.startswith("apply"))


@needs_make
def test_port_forward_starts_each_forward_once_and_prints_the_agent_settings(
    stand_in: StandIn,
) -> None:
    first = make("port-forward", stand_in.env, MLFLOW_LOCAL_PORT="15000")
    assert first.returncode == 0, first.stderr
    pids = stand_in.pids()
    assert set(pids) == {"mlflow", "prometheus"}
    assert all(psutil.pid_exists(pid) for pid in pids.values())
    assert "-n trainops port-forward svc/mlflow 15000:5000" in stand_in.calls
    assert "-n trainops port-forward svc/prometheus 9090:9090" in stand_in.calls
    for line in [
        "MLflow         http://localhost:15000",
        "Prometheus     http://localhost:9090",
        "  backend: cluster",
        "  mlflow_tracking_uri: http://localhost:15000",
        "  prometheus_url: http://localhost:9090",
        "  export TRAINOPS_BACKEND=cluster MLFLOW_TRACKING_URI=http://localhost:15000 "
        "TRAINOPS_PROMETHEUS_URL=http://localhost:9090",
    ]:
        assert line in first.stdout.splitlines(), line
    assert "no Ray head service in trainops" in first.stdout
    run = stand_in.folder / "home" / "port-forward"
    assert "Forwarding from 127.0.0.1:15000" in (run / "mlflow.log").read_text()

    again = make("port-forward", stand_in.env, MLFLOW_LOCAL_PORT="15000")
    assert again.returncode == 0, again.stderr
    assert stand_in.pids() == pids
    assert sum(" port-forward " in f" {c} " for c in stand_in.calls) == 2
    assert f"mlflow: already forwarded (pid {pids['mlflow']})" in again.stdout


@needs_make
def test_port_forward_adds_the_ray_dashboard_while_a_sweep_runs(stand_in: StandIn) -> None:
    env = {**stand_in.env, "STAND_IN_RAY_SERVICE": "tune-cnn-mnist-1a2b-head-svc"}
    result = make("port-forward", env, RAY_DASHBOARD_LOCAL_PORT="18265")
    assert result.returncode == 0, result.stderr
    assert set(stand_in.pids()) == {"mlflow", "prometheus", "ray-dashboard"}
    assert "-n trainops port-forward svc/tune-cnn-mnist-1a2b-head-svc 18265:8265" in stand_in.calls
    assert "Ray dashboard  http://localhost:18265" in result.stdout.splitlines()
    # The next sweep's head: the forward to the old one gives up the port to a new one.
    earlier = stand_in.pids()
    env["STAND_IN_RAY_SERVICE"] = "tune-cnn-mnist-3c4d-head-svc"
    result = make("port-forward", env, RAY_DASHBOARD_LOCAL_PORT="18265")
    assert result.returncode == 0, result.stderr
    now = stand_in.pids()
    assert now["mlflow"] == earlier["mlflow"]
    assert now["ray-dashboard"] != earlier["ray-dashboard"]
    assert f"ray-dashboard: stopped (pid {earlier['ray-dashboard']})" in result.stdout
    assert "-n trainops port-forward svc/tune-cnn-mnist-3c4d-head-svc 18265:8265" in stand_in.calls


@needs_make
def test_a_forward_that_cannot_listen_fails_with_its_reason_and_leaves_no_pid_file(
    stand_in: StandIn,
) -> None:
    result = make("port-forward", {**stand_in.env, "STAND_IN_PORT_TAKEN": "1"})
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: port-forward of svc/mlflow to localhost:5000 stopped: ")
    assert "Unable to listen on port 5000: address already in use" in first
    assert stand_in.pids() == {}


@needs_make
def test_stop_port_forward_stops_exactly_what_port_forward_started(
    stand_in: StandIn, tmp_path: Path
) -> None:
    assert make("port-forward", stand_in.env).returncode == 0
    started = stand_in.pids()
    # A PID file whose process is no forward of ours (its PID reused, say) is left alone.
    other = subprocess.Popen(["sleep", "60"])
    try:
        (stand_in.folder / "home" / "port-forward" / "ray-dashboard.pid").write_text(
            f"{other.pid}\n"
        )
        calls = len(stand_in.calls)
        stopped = make("stop-port-forward", stand_in.env)
        assert stopped.returncode == 0, stopped.stderr
        for name, pid in started.items():
            assert f"{name}: stopped (pid {pid})" in stopped.stdout
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        assert other.poll() is None
        assert stand_in.pids() == {}
        assert len(stand_in.calls) == calls  # stopping needs no kubectl
        again = make("stop-port-forward", stand_in.env)
        assert again.returncode == 0
        assert again.stdout.strip() == "No port-forward of ours is running."
    finally:
        other.kill()
        other.wait()


def test_the_script_header_names_each_setting_it_reads() -> None:
    script = (REPO / "k8s" / "cluster.sh").read_text()
    header = script.split("set -euo pipefail")[0]
    for name in set(re.findall(r"\$\{([A-Z_]+):-", script)):
        assert re.search(rf"\b{name}\b", header), name
