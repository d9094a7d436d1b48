"""A post-mortem that outlives the pods: when a job ends (either backend), the tail of every
replica's log, the job's events and its final status go into its MLflow run as one artifact,
before ttlSecondsAfterFinished or a cancel removes the pods. Best effort: a job's status never
waits on MLflow, and a failure to attach is logged, not raised."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from common.errors import TrainopsError
from common.telemetry import MlflowTag
from mcp_servers.kubernetes.backend import Backend
from mcp_servers.kubernetes.schemas import POST_MORTEM_ARTIFACT, JobStatus, PostMortem
from training.config import TrainConfig

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 200
DEFAULT_EXPERIMENT = TrainConfig.experiment
RUN_STATUS = {"Succeeded": "FINISHED", "Failed": "FAILED", "Cancelled": "KILLED"}
MAX_REPLICAS = 16
EVENTS = 200


def collect(backend: Backend, status: JobStatus) -> PostMortem:
    """Everything a diagnosis needs from the pods, while they are still there."""
    logs: dict[str, list[str]] = {}
    for replica in [r.name for r in status.replicas][:MAX_REPLICAS]:
        try:
            logs[replica] = backend.logs(status.job_id, replica, LOG_TAIL_LINES, None).lines
        except TrainopsError as e:
            log.info("post-mortem of %s: no log of %s (%s)", status.job_id, replica, e)
    try:
        events = backend.events(status.job_id, EVENTS).events
    except TrainopsError as e:
        log.info("post-mortem of %s: no events (%s)", status.job_id, e)
        events = []
    return PostMortem(
        job_id=status.job_id,
        status=status,
        events=events,
        logs=logs,
        collected_at=datetime.now(UTC),
    )


class PostMortems:
    """Attaches each ended job's post-mortem to its MLflow run once (a run that has one already,
    from this server or another, is left as it is)."""

    def __init__(self, tracking_uri: str | None) -> None:
        self.tracking_uri = tracking_uri
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def wanted(self, status: JobStatus) -> bool:
        with self._lock:
            return (
                self.tracking_uri is not None
                and status.terminal
                and status.job_id not in self._done
            )

    def attach(self, post_mortem: PostMortem) -> str | None:
        """The run it went to (the job's, else one made for it), or None when MLflow could not
        be reached (logged)."""
        job_id = post_mortem.job_id
        try:
            client = self._client()
            run_id = post_mortem.status.mlflow_run_id or _run_of(client, job_id)
            if run_id is None:  # it failed before it reached MLflow: the likeliest to be asked
                run_id = _run_for(client, post_mortem.status)
            if not _has_post_mortem(client, run_id):
                client.log_text(run_id, post_mortem.model_dump_json(indent=1), POST_MORTEM_ARTIFACT)
        except Exception as e:  # MLflow's client raises many kinds; none may fail the tool
            log.warning("post-mortem of %s not attached: %s", job_id, " ".join(str(e).split()))
            return None
        with self._lock:
            self._done.add(job_id)
        return run_id

    def _client(self) -> Any:
        from mlflow import MlflowClient  # only servers that attach post-mortems pay the import

        return MlflowClient(self.tracking_uri)


def _run_of(client: Any, job_id: str) -> str | None:
    runs = client.search_runs(
        experiment_ids=[e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`{MlflowTag.JOB_ID}` = '{job_id}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _run_for(client: Any, status: JobStatus) -> str:
    """A run of the job's own to hold its post-mortem, ended as the job ended."""
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment(DEFAULT_EXPERIMENT)
    )
    tags = {MlflowTag.JOB_ID: status.job_id}
    if status.model:
        tags[MlflowTag.MODEL] = status.model
    run = client.create_run(experiment_id, run_name=status.job_id, tags=tags)
    client.set_terminated(run.info.run_id, status=RUN_STATUS[status.phase])
    return str(run.info.run_id)


def _has_post_mortem(client: Any, run_id: str) -> bool:
    folder = POST_MORTEM_ARTIFACT.rpartition("/")[0]
    return any(a.path == POST_MORTEM_ARTIFACT for a in client.list_artifacts(run_id, folder))
