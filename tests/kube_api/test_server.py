"""The test API server, driven by the real kubernetes client as a backend would drive a cluster:
typed APIs, CustomObjectsApi, DynamicClient and watches, through the generated kubeconfig."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from tests.kube_api.fixture import CRD_GROUPS, CRDS_DIR, CrdsMissing, KubeApi, Outcome, Rbac
from tests.support import REPO, wait_for

NS = "trainops"
USER = "system:serviceaccount:trainops:trainops-mcp"
APPLY = "application/apply-patch+yaml"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@dataclass
class Clients:
    api: client.ApiClient
    core: client.CoreV1Api
    batch: client.BatchV1Api
    custom: client.CustomObjectsApi
    dynamic: DynamicClient


def clients_for(kube: KubeApi) -> Clients:
    api = kube.api_client()
    return Clients(
        api,
        client.CoreV1Api(api),
        client.BatchV1Api(api),
        client.CustomObjectsApi(api),
        DynamicClient(api, cache_file=str(kube.root / "discovery-cache.json")),
    )


HAVE_CRDS = CRDS_DIR.is_dir()
needs_crds = pytest.mark.skipif(not HAVE_CRDS, reason=f"the CRD files are not at {CRDS_DIR}")
"""For the tests of custom resources: the rest run with the built-in kinds alone."""


@pytest.fixture()
def open_api(kube_api_factory: Callable[..., KubeApi]) -> KubeApi:
    """A server without RBAC (with the CRDs when they are here), for the tests about
    everything else."""
    return kube_api_factory(rbac=None, crds=CRD_GROUPS if HAVE_CRDS else ())


@pytest.fixture()
def k8s(open_api: KubeApi) -> Clients:
    return clients_for(open_api)


def python(code: str) -> list[str]:
    return ["python", "-c", code]


def job(
    name: str, command: list[str], *, restart: str = "Never", backoff: int = 0, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "kube-api-test"}},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "metadata": {"labels": {"team": "ml"}},
                "spec": {
                    "restartPolicy": restart,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "ghcr.io/trainops/trainer:0.1.0",
                            "command": command,
                        }
                    ],
                },
            },
            **spec,
        },
    }


def pytorchjob(
    name: str, command: list[str], *, workers: int = 1, **run_policy: Any
) -> dict[str, Any]:
    def replica(count: int) -> dict[str, Any]:
        return {
            "replicas": count,
            "restartPolicy": "OnFailure",
            "template": {
                "metadata": {"labels": {"team": "ml"}},
                "spec": {
                    "containers": [
                        {
                            "name": "pytorch",
                            "image": "ghcr.io/trainops/trainer:0.1.0",
                            "command": command,
                        }
                    ]
                },
            },
        }

    specs = {"Master": replica(1)}
    if workers:
        specs["Worker"] = replica(workers)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "nprocPerNode": "1",
            "runPolicy": {"cleanPodPolicy": "None", **run_policy},
            "pytorchReplicaSpecs": specs,
        },
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == type_ and c["status"] == "True":
            return c
    return None


def true_condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    found = condition(obj, type_)
    assert found is not None, f"no {type_} condition in {obj}"
    return found


def stored(kube: KubeApi, group: str, plural: str, name: str) -> dict[str, Any]:
    obj = kube.get(group, plural, name)
    assert obj is not None, f"{plural}/{name} not found"
    return obj


def wait_condition(
    kube: KubeApi, group: str, plural: str, name: str, type_: str, timeout: float = 30
) -> dict[str, Any]:
    return wait_for(
        lambda: condition(kube.get(group, plural, name), type_) and kube.get(group, plural, name),
        timeout=timeout,
        what=f"{plural}/{name} {type_}",
        every=0.05,
    )


def pods_of(kube: KubeApi, selector: str) -> list[dict[str, Any]]:
    key, _, value = selector.partition("=")
    return [
        p
        for p in kube.objects("", "pods", NS)
        if (p["metadata"].get("labels") or {}).get(key) == value
    ]


def log_of(k8s: Clients, pod: str, **options: Any) -> str:
    # kubernetes 36's read_namespaced_pod_log returns the repr of the bytes (client issue
    # #2596); the raw response is what the kubelet served.
    response = k8s.core.read_namespaced_pod_log(pod, NS, _preload_content=False, **options)
    return response.data.decode()


def api_error(call: Callable[[], Any]) -> tuple[int, dict[str, Any], Any]:
    with pytest.raises(client.ApiException) as caught:
        call()
    e = caught.value
    return e.status, json.loads(e.body) if e.body else {}, e.headers


# -- discovery ---------------------------------------------------------------------------------


@needs_crds
def test_dynamic_client_discovers_built_in_and_crd_kinds(
    kube_api_factory: Callable[..., KubeApi],
) -> None:
    kube = kube_api_factory(rbac=None)
    dynamic = clients_for(kube).dynamic
    for api_version, kind, plural in (
        ("v1", "Pod", "pods"),
        ("v1", "Event", "events"),
        ("batch/v1", "Job", "jobs"),
        ("events.k8s.io/v1", "Event", "events"),
        ("kubeflow.org/v1", "PyTorchJob", "pytorchjobs"),
        ("trainer.kubeflow.org/v1alpha1", "TrainJob", "trainjobs"),
        ("ray.io/v1", "RayJob", "rayjobs"),
    ):
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        assert resource.name == plural and resource.namespaced
    pods = dynamic.resources.get(api_version="v1", kind="Pod")
    assert "log" in pods.subresources and "status" in pods.subresources
    assert dynamic.resources.get(api_version="v1", kind="Node").namespaced is False


@needs_crds
def test_a_crd_group_not_installed_is_absent_from_discovery_and_its_paths_are_404(
    kube_api_factory: Callable[..., KubeApi],
) -> None:
    kube = kube_api_factory(rbac=None, crds=("kubeflow.org",))
    k8s = clients_for(kube)
    with pytest.raises(ResourceNotFoundError):
        k8s.dynamic.resources.get(api_version="trainer.kubeflow.org/v1alpha1", kind="TrainJob")
    status, body, _ = api_error(
        lambda: k8s.custom.list_namespaced_custom_object(
            "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs"
        )
    )
    assert status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }


def test_aggregated_discovery_is_served_to_clients_that_ask_for_it_first(open_api: KubeApi) -> None:
    http = urllib3.PoolManager()
    headers = {
        "Authorization": f"Bearer {open_api.token}",
        "Accept": f"{AGGREGATED},application/json",
    }
    aggregated = http.request("GET", f"{open_api.url}/apis", headers=headers)
    assert aggregated.headers["Content-Type"].startswith(
        "application/json;g=apidiscovery.k8s.io;v=v2"
    )
    groups = {item["metadata"]["name"]: item for item in aggregated.json()["items"]}
    resources = {r["resource"]: r for r in groups["batch"]["versions"][0]["resources"]}
    assert resources["jobs"]["scope"] == "Namespaced"
    assert resources["jobs"]["responseKind"] == {"group": "batch", "version": "v1", "kind": "Job"}
    legacy = http.request(
        "GET", f"{open_api.url}/apis", headers={**headers, "Accept": "application/json"}
    )
    assert legacy.json()["kind"] == "APIGroupList"


# -- writes: apply, create, validation ---------------------------------------------------------


def test_server_side_apply_creates_then_merges_and_records_the_field_manager(
    k8s: Clients, open_api: KubeApi
) -> None:
    jobs = k8s.dynamic.resources.get(api_version="batch/v1", kind="Job")
    body = job("applied", ["true"], suspend=True)
    created = k8s.dynamic.server_side_apply(jobs, body=body, namespace=NS, field_manager="trainops")
    assert created.metadata.generation == 1
    managers = [
        (m["manager"], m["operation"]) for m in created.to_dict()["metadata"]["managedFields"]
    ]
    assert managers == [("trainops", "Apply")]
    body["metadata"]["labels"]["stage"] = "second"
    again = k8s.dynamic.server_side_apply(jobs, body=body, namespace=NS, field_manager="trainops")
    assert again.metadata.labels["stage"] == "second"
    assert again.metadata.uid == created.metadata.uid
    assert again.metadata.generation == 1  # metadata only: the spec did not change
    # The server's defaults stay, as in a real cluster.
    assert again.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "applied"
    applies = [r for r in open_api.requests if r.verb == "patch" and r.resource == "jobs"]
    assert [(r.code, r.field_manager, r.name) for r in applies] == [
        (201, "trainops", "applied"),
        (200, "trainops", "applied"),
    ]


@needs_crds
def test_server_side_apply_of_a_custom_object_through_custom_objects_api(k8s: Clients) -> None:
    body = pytorchjob("ssa-ptj", ["true"], workers=0, suspend=True)
    args = ("kubeflow.org", "v1", NS, "pytorchjobs", "ssa-ptj")
    created = k8s.custom.patch_namespaced_custom_object_with_http_info(
        *args, body, field_manager="trainops", _content_type=APPLY
    )
    # An apply that creates answers 201, which CustomObjectsApi maps to no body at all.
    assert (created[0], created[1]) == (None, 201)
    stored = k8s.custom.get_namespaced_custom_object(*args)
    assert stored["metadata"]["managedFields"][0]["manager"] == "trainops"
    body["metadata"]["labels"] = {"stage": "two"}
    updated = k8s.custom.patch_namespaced_custom_object(
        *args, body, field_manager="trainops", _content_type=APPLY
    )
    assert updated["metadata"]["labels"] == {"stage": "two"}
    status, err, _ = api_error(
        lambda: k8s.custom.patch_namespaced_custom_object(*args, body, _content_type=APPLY)
    )
    assert (status, err["reason"], err["message"]) == (
        400,
        "BadRequest",
        "fieldManager is required for apply requests",
    )


def test_unknown_fields_are_refused_as_a_real_api_server_refuses_them(k8s: Clients) -> None:
    bad = job("unknown-field", ["true"])
    bad["spec"]["foo"] = 1
    status, body, _ = api_error(
        lambda: k8s.batch.create_namespaced_job(NS, bad, field_validation="Strict")
    )
    assert status == 400
    assert body["message"] == (
        'Job in version "v1" cannot be handled as a Job: strict decoding error: '
        'unknown field "spec.foo"'
    )
    jobs = k8s.dynamic.resources.get(api_version="batch/v1", kind="Job")
    with pytest.raises(client.ApiException) as caught:
        k8s.dynamic.server_side_apply(jobs, body=bad, namespace=NS, field_manager="trainops")
    assert caught.value.status == 500
    assert json.loads(caught.value.body)["message"] == (
        "failed to create typed patch object (trainops/unknown-field; batch/v1, Kind=Job): "
        ".spec.foo: field not declared in schema"
    )
    # Without fieldValidation the server warns and drops the field.
    response = k8s.batch.create_namespaced_job_with_http_info(NS, bad)
    assert response[1] == 201
    assert response[2]["Warning"] == '299 - "unknown field \\"spec.foo\\""'
    assert "foo" not in (k8s.batch.read_namespaced_job("unknown-field", NS).spec.to_dict())


@needs_crds
def test_a_pytorchjob_with_an_unknown_or_mistyped_field_is_refused(k8s: Clients) -> None:
    args = ("kubeflow.org", "v1", NS, "pytorchjobs")
    bad = pytorchjob("bad-ptj", ["true"])
    bad["spec"]["runPolicy"]["backofLimit"] = 2
    status, body, _ = api_error(
        lambda: k8s.custom.patch_namespaced_custom_object(
            *args, "bad-ptj", bad, field_manager="t", _content_type=APPLY
        )
    )
    assert status == 500 and body["message"].endswith(
        ".spec.runPolicy.backofLimit: field not declared in schema"
    )
    status, body, _ = api_error(
        lambda: k8s.custom.create_namespaced_custom_object(*args, bad, field_validation="Strict")
    )
    assert status == 400 and 'unknown field "spec.runPolicy.backofLimit"' in body["message"]
    mistyped = pytorchjob("bad-ptj", ["true"], backoffLimit="two")
    status, body, _ = api_error(lambda: k8s.custom.create_namespaced_custom_object(*args, mistyped))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'PyTorchJob.kubeflow.org "bad-ptj" is invalid: spec.runPolicy.backoffLimit: Invalid value: '
        '"string": spec.runPolicy.backoffLimit in body must be of type integer: "string"'
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": 'Invalid value: "string": spec.runPolicy.backoffLimit in body must be of '
            'type integer: "string"',
            "field": "spec.runPolicy.backoffLimit",
        }
    ]
    assert k8s.custom.list_namespaced_custom_object(*args)["items"] == []


def test_invalid_names_labels_and_pod_templates_are_422_listing_each_field(k8s: Clients) -> None:
    bad = job("Bad_Name", ["true"], restart="Always")
    bad["metadata"]["labels"]["team"] = "not ok"
    status, body, _ = api_error(lambda: k8s.batch.create_namespaced_job(NS, bad))
    assert (status, body["reason"], body["details"]["kind"], body["details"]["group"]) == (
        422,
        "Invalid",
        "Job",
        "batch",
    )
    fields = [c["field"] for c in body["details"]["causes"]]
    assert fields == ["metadata.name", "metadata.labels", "spec.template.spec.restartPolicy"]
    assert body["message"].startswith(
        'Job.batch "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": a lowercase '
        "RFC 1123 subdomain"
    )
    assert (
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: '
        '"OnFailure", "Never"' in body["message"]
    )
    long_name = job("x" * 64, ["true"])
    status, body, _ = api_error(lambda: k8s.batch.create_namespaced_job(NS, long_name))
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.template.labels"


def test_creating_twice_is_409_already_exists(k8s: Clients) -> None:
    k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "once"}, "data": {"a": "1"}})
    status, body, _ = api_error(
        lambda: k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "once"}})
    )
    assert (status, body["reason"], body["message"]) == (
        409,
        "AlreadyExists",
        'configmaps "once" already exists',
    )
    assert body["details"] == {"name": "once", "kind": "configmaps"}
    k8s.batch.create_namespaced_job(NS, job("twice", ["true"], suspend=True))
    _, body, _ = api_error(lambda: k8s.batch.create_namespaced_job(NS, job("twice", ["true"])))
    assert body["message"] == 'jobs.batch "twice" already exists'
    assert body["details"] == {"name": "twice", "group": "batch", "kind": "jobs"}


@needs_crds
def test_every_rendered_kind_is_accepted_and_a_tampered_one_refused(k8s: Clients) -> None:
    from common.settings import KubernetesPolicy
    from mcp_servers.kubernetes.manifests import RenderContext, render
    from mcp_servers.kubernetes.schemas import TrainingJobSpec

    ctx = RenderContext(policy=KubernetesPolicy())
    plurals = {"Job": "jobs", "PyTorchJob": "pytorchjobs", "TrainJob": "trainjobs"}
    for kind, nodes in (("auto", 1), ("PyTorchJob", 2), ("TrainJob", 2)):
        spec = TrainingJobSpec(
            model="mlp", dataset="digits", epochs=1, smoke_test=True, nodes=nodes, kind=kind
        )
        manifest = render(spec, f"render-{manifest_kind(kind)}", NS, ctx)
        resource = k8s.dynamic.resources.get(
            api_version=manifest.body["apiVersion"], kind=manifest.kind
        )
        assert resource.name == plurals[manifest.kind]
        applied = k8s.dynamic.server_side_apply(
            resource, body=manifest.body, namespace=NS, field_manager="trainops", dry_run="All"
        )
        assert applied.metadata.name == manifest.job_id, manifest.kind
        tampered = json.loads(json.dumps(manifest.body))
        tampered["spec"]["replicas"] = 3
        with pytest.raises(client.ApiException) as caught:
            k8s.dynamic.server_side_apply(
                resource, body=tampered, namespace=NS, field_manager="trainops", dry_run="All"
            )
        assert caught.value.status == 500
        assert json.loads(caught.value.body)["message"].endswith(
            ".spec.replicas: field not declared in schema"
        )
    assert not k8s.custom.list_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs")[
        "items"
    ]


def manifest_kind(kind: str) -> str:
    return {"auto": "job", "PyTorchJob": "ptj", "TrainJob": "tj"}[kind]


# -- authentication and RBAC -----------------------------------------------------------------


def test_a_wrong_or_missing_token_is_401(kube_api_factory: Callable[..., KubeApi]) -> None:
    kube_api = kube_api_factory(crds=())
    wrong = yaml.safe_load(kube_api.kubeconfig.read_text())
    wrong["users"][0]["user"]["token"] = "nope"
    path = kube_api.root / "wrong-kubeconfig"
    path.write_text(yaml.safe_dump(wrong))
    api = config.new_client_from_config(config_file=str(path))
    status, body, _ = api_error(lambda: client.CoreV1Api(api).list_namespaced_pod(NS))
    assert status == 401
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    http = urllib3.PoolManager()
    assert http.request("GET", f"{kube_api.url}/api/v1/namespaces/{NS}/pods").status == 401


def test_rbac_denials_name_the_verb_resource_and_namespace(
    kube_api_factory: Callable[..., KubeApi],
) -> None:
    rbac = Rbac.from_rules(
        role=[
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "patch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        ]
    )
    kube = kube_api_factory(rbac=rbac, crds=())
    k8s = clients_for(kube)
    _, body, _ = api_error(lambda: k8s.batch.create_namespaced_job(NS, job("denied", ["true"])))
    assert body["message"] == (
        f'jobs.batch is forbidden: User "{USER}" cannot create resource "jobs" in API group '
        '"batch" in the namespace "trainops"'
    )
    assert (body["reason"], body["code"]) == ("Forbidden", 403)
    _, body, _ = api_error(lambda: k8s.core.read_namespaced_pod_log("some-pod", NS))
    assert body["message"] == (
        f'pods "some-pod" is forbidden: User "{USER}" cannot get resource "pods/log" in API '
        'group "" in the namespace "trainops"'
    )
    _, body, _ = api_error(lambda: k8s.core.list_pod_for_all_namespaces())
    assert body["message"].endswith(
        'cannot list resource "pods" in API group "" at the cluster scope'
    )
    _, body, _ = api_error(lambda: k8s.batch.list_namespaced_job("default"))
    assert body["message"].endswith('in the namespace "default"')
    # Server-side apply of an object that does not exist yet needs create as well as patch.
    jobs = k8s.dynamic.resources.get(api_version="batch/v1", kind="Job")
    with pytest.raises(client.ApiException) as caught:
        k8s.dynamic.server_side_apply(
            jobs, body=job("denied", ["true"]), namespace=NS, field_manager="trainops"
        )
    assert 'cannot create resource "jobs"' in json.loads(caught.value.body)["message"]
    denied = {(r.verb, r.resource, r.code) for r in kube.requests if r.code == 403}
    assert denied == {
        ("create", "jobs", 403),
        ("get", "pods/log", 403),
        ("list", "pods", 403),
        ("list", "jobs", 403),
        ("patch", "jobs", 403),
    }


def test_the_default_rbac_is_the_projects_role(kube_api_factory: Callable[..., KubeApi]) -> None:
    kube_api = kube_api_factory(crds=())
    k8s = clients_for(kube_api)
    k8s.batch.list_namespaced_job(NS)
    status, body, _ = api_error(lambda: k8s.core.read_namespaced_secret("anything", NS))
    assert status == 403 and 'cannot get resource "secrets"' in body["message"]
    assert ("list", "batch", "jobs") in kube_api.requests.pairs()
    kube_api.requests.clear()
    assert len(kube_api.requests) == 0


# -- running jobs ------------------------------------------------------------------------------


def test_a_job_runs_its_command_to_complete_with_logs_and_events(
    k8s: Clients, open_api: KubeApi
) -> None:
    code = (
        "import os; [print('line', i) for i in range(5)]; print('path', os.environ['PYTHONPATH'])"
    )
    k8s.batch.create_namespaced_job(NS, job("hello", python(code)))
    done = wait_condition(open_api, "batch", "jobs", "hello", "Complete")
    status = done["status"]
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert status["succeeded"] == 1 and status["startTime"] and status["completionTime"]
    (pod,) = pods_of(open_api, "batch.kubernetes.io/job-name=hello")
    name = pod["metadata"]["name"]
    assert name.startswith("hello-") and len(name) == len("hello-") + 5
    labels = pod["metadata"]["labels"]
    assert labels["job-name"] == "hello" and labels["team"] == "ml"
    assert (
        labels["batch.kubernetes.io/controller-uid"]
        == done["metadata"]["uid"]
        == labels["controller-uid"]
    )
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    tail = log_of(k8s, name, tail_lines=2)
    assert tail.splitlines() == ["line 4", f"path {REPO}"]
    stamped = log_of(k8s, name, tail_lines=1, timestamps=True)
    assert stamped.split(" ", 1)[0].endswith("Z")
    events = k8s.core.list_namespaced_event(NS, field_selector="involvedObject.name=hello").items
    assert [(e.reason, e.message) for e in events] == [
        ("SuccessfulCreate", f"Created pod: {name}"),
        ("Completed", "Job completed"),
    ]
    pod_events = k8s.core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={name}"
    ).items
    assert [e.reason for e in pod_events] == ["Scheduled", "Pulled", "Created", "Started"]
    assert pod_events[0].message == f"Successfully assigned trainops/{name} to node-cpu-0"


def test_the_projects_code_resolves_inside_a_pod(k8s: Clients, open_api: KubeApi) -> None:
    k8s.batch.create_namespaced_job(NS, job("usage", ["python", "-m", "training.train", "--help"]))
    wait_condition(open_api, "batch", "jobs", "usage", "Complete", timeout=60)
    (pod,) = pods_of(open_api, "job-name=usage")
    assert "usage: python -m training.train" in log_of(k8s, pod["metadata"]["name"])


def test_a_restarted_container_keeps_its_previous_log(k8s: Clients, open_api: KubeApi) -> None:
    open_api.script("flaky", Outcome.exit_codes([1]))
    k8s.batch.create_namespaced_job(
        NS, job("flaky", python("print('real run')"), restart="OnFailure", backoff=3)
    )
    done = wait_condition(open_api, "batch", "jobs", "flaky", "Complete")
    assert done["status"]["succeeded"] == 1
    (pod,) = pods_of(open_api, "job-name=flaky")
    name = pod["metadata"]["name"]
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert (cs["lastState"]["terminated"]["exitCode"], cs["lastState"]["terminated"]["reason"]) == (
        1,
        "Error",
    )
    assert log_of(k8s, name) == "real run\n"
    assert log_of(k8s, name, previous=True) == "error: simulated failure\n"
    events = k8s.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
    counts = {e.reason: e.count for e in events}
    assert counts["BackOff"] == 1 and counts["Started"] == 2  # a repeated event is counted
    k8s.batch.create_namespaced_job(NS, job("steady", python("print(1)")))
    wait_condition(open_api, "batch", "jobs", "steady", "Complete")
    (steady,) = pods_of(open_api, "job-name=steady")
    status, body, _ = api_error(lambda: log_of(k8s, steady["metadata"]["name"], previous=True))
    assert (status, body["message"]) == (
        400,
        f'previous terminated container "trainer" in pod "{steady["metadata"]["name"]}" not found',
    )


def test_a_failing_job_is_retried_until_its_backoff_limit(k8s: Clients, open_api: KubeApi) -> None:
    open_api.script("doomed", Outcome.exit_code(2, "boom"))
    k8s.batch.create_namespaced_job(NS, job("doomed", python("print(1)"), backoff=1))
    failed = wait_condition(open_api, "batch", "jobs", "doomed", "Failed")
    assert failed["status"]["failed"] == 2
    assert true_condition(failed, "FailureTarget")["reason"] == "BackoffLimitExceeded"
    assert (
        true_condition(failed, "Failed")["message"] == "Job has reached the specified backoff limit"
    )
    pods = pods_of(open_api, "job-name=doomed")
    assert len(pods) == 2
    assert {
        p["status"]["containerStatuses"][0]["state"]["terminated"]["message"] for p in pods
    } == {"boom"}
    reasons = [
        e.reason
        for e in k8s.core.list_namespaced_event(
            NS, field_selector="involvedObject.name=doomed"
        ).items
    ]
    assert reasons.count("SuccessfulCreate") == 2 and "BackoffLimitExceeded" in reasons


def test_pod_failure_policy_fails_the_job_on_a_matching_exit_code(
    k8s: Clients, open_api: KubeApi
) -> None:
    open_api.script("fatal", Outcome.exit_code(3, "bad config"))
    policy = {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]},
            }
        ]
    }
    k8s.batch.create_namespaced_job(
        NS, job("fatal", python("print(1)"), backoff=5, podFailurePolicy=policy)
    )
    failed = wait_condition(open_api, "batch", "jobs", "fatal", "Failed")
    (pod,) = pods_of(open_api, "job-name=fatal")
    message = (
        f"Container trainer for pod trainops/{pod['metadata']['name']} failed with exit code 3 "
        "matching FailJob rule at index 0"
    )
    assert [(c["type"], c["reason"], c["message"]) for c in failed["status"]["conditions"]] == [
        ("FailureTarget", "PodFailurePolicy", message),
        ("Failed", "PodFailurePolicy", message),
    ]
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "bad config"


def test_an_oom_killed_container_reports_oomkilled_at_the_scripted_epoch(
    k8s: Clients, open_api: KubeApi
) -> None:
    open_api.script("hungry", Outcome.oom_killed(at_epoch=2))
    code = (
        "import json, time\n"
        "for e in range(1, 6):\n"
        "    print(json.dumps({'event': 'epoch', 'epoch': e}), flush=True); time.sleep(0.05)"
    )
    k8s.batch.create_namespaced_job(NS, job("hungry", python(code)))
    wait_condition(open_api, "batch", "jobs", "hungry", "Failed")
    (pod,) = pods_of(open_api, "job-name=hungry")
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    epochs = [
        json.loads(line)["epoch"] for line in log_of(k8s, pod["metadata"]["name"]).splitlines()
    ]
    assert epochs == [1, 2]


def test_an_image_that_cannot_be_pulled_backs_off(k8s: Clients, open_api: KubeApi) -> None:
    open_api.script("mnist-*", Outcome.image_pull_backoff())
    k8s.batch.create_namespaced_job(NS, job("mnist-1234", python("print(1)")))

    def backing_off() -> dict[str, Any] | None:
        pods = pods_of(open_api, "job-name=mnist-1234")
        waiting = pods and pods[0]["status"].get("containerStatuses", [{}])[0].get("state", {}).get(
            "waiting"
        )
        return pods[0] if waiting and waiting["reason"] == "ImagePullBackOff" else None

    pod = wait_for(backing_off, timeout=20, what="ImagePullBackOff")
    name = pod["metadata"]["name"]
    assert pod["status"]["phase"] == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert waiting["message"] == 'Back-off pulling image "ghcr.io/trainops/trainer:0.1.0"'
    events = k8s.core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
    failed = [e.message for e in events if e.reason == "Failed"]
    assert failed[0].startswith(
        'Failed to pull image "ghcr.io/trainops/trainer:0.1.0": '
    ) and failed[0].endswith("not found")
    assert "Error: ImagePullBackOff" in failed
    assert any(e.reason == "BackOff" for e in events)
    status, body, _ = api_error(lambda: log_of(k8s, name))
    assert (status, body["message"]) == (
        400,
        f'container "trainer" in pod "{name}" is waiting to start: '
        "trying and failing to pull image",
    )


def test_a_pod_too_big_for_any_node_stays_pending_with_failed_scheduling(
    k8s: Clients, open_api: KubeApi
) -> None:
    big = job("too-big", python("print(1)"))
    spec = big["spec"]["template"]["spec"]
    spec["nodeSelector"] = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "16"}}
    k8s.batch.create_namespaced_job(NS, big)
    message = (
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
        "2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 1 Preemption is "
        "not helpful for "
        "scheduling, 2 No preemption victims found for incoming pod."
    )

    def unschedulable() -> list[Any]:
        events = k8s.core.list_namespaced_event(NS, field_selector="reason=FailedScheduling").items
        return [e for e in events if e.message == message]

    (event,) = wait_for(unschedulable, timeout=20, what="FailedScheduling")
    assert event.type == "Warning" and event.reporting_component == "default-scheduler"
    (pod,) = pods_of(open_api, "job-name=too-big")
    assert "nodeName" not in pod["spec"]
    scheduled = pod["status"]["conditions"][0]
    assert (scheduled["type"], scheduled["status"], scheduled["reason"]) == (
        "PodScheduled",
        "False",
        "Unschedulable",
    )
    fits = job("fits", python("print(1)"))
    fits["spec"]["template"]["spec"].update(
        nodeSelector=spec["nodeSelector"], tolerations=spec["tolerations"]
    )
    fits["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": "8"}
    }
    k8s.batch.create_namespaced_job(NS, fits)
    wait_condition(open_api, "batch", "jobs", "fits", "Complete")
    assert pods_of(open_api, "job-name=fits")[0]["spec"]["nodeName"] == "node-gpu-0"


def test_a_missing_secret_holds_the_container_in_create_container_config_error(
    k8s: Clients, open_api: KubeApi
) -> None:
    body = job("secretive", python("import os; print(os.environ['TOKEN'])"))
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    ]
    k8s.batch.create_namespaced_job(NS, body)

    def waiting() -> dict[str, Any] | None:
        pods = pods_of(open_api, "job-name=secretive")
        state = pods and pods[0]["status"].get("containerStatuses", [{}])[0].get("state", {})
        return (
            state.get("waiting")
            if state and (state.get("waiting") or {}).get("reason") == "CreateContainerConfigError"
            else None
        )

    assert wait_for(waiting, timeout=10, what="config error")["message"] == 'secret "hf" not found'
    open_api.seed(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf"},
            "stringData": {"token": "s3cret"},
        }
    )
    wait_condition(open_api, "batch", "jobs", "secretive", "Complete")
    (pod,) = pods_of(open_api, "job-name=secretive")
    assert log_of(k8s, pod["metadata"]["name"]) == "s3cret\n"


@needs_crds
def test_a_pytorchjob_runs_master_and_workers_with_the_operators_env(
    k8s: Clients, open_api: KubeApi
) -> None:
    names = [
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "PET_NNODES",
        "PET_NODE_RANK",
        "PET_NPROC_PER_NODE",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
    ]
    code = f"import os, json; print(json.dumps({{k: os.environ[k] for k in {names!r}}}))"
    k8s.custom.create_namespaced_custom_object(
        "kubeflow.org", "v1", NS, "pytorchjobs", pytorchjob("ddp", python(code), workers=2)
    )
    done = wait_condition(open_api, "kubeflow.org", "pytorchjobs", "ddp", "Succeeded")
    pods = {
        p["metadata"]["name"]: p for p in pods_of(open_api, "training.kubeflow.org/job-name=ddp")
    }
    assert sorted(pods) == ["ddp-master-0", "ddp-worker-0", "ddp-worker-1"]
    master = pods["ddp-master-0"]["metadata"]["labels"]
    assert master["training.kubeflow.org/replica-type"] == "master"
    assert master["training.kubeflow.org/replica-index"] == "0"
    assert master["training.kubeflow.org/job-role"] == "master"
    assert master["training.kubeflow.org/operator-name"] == "pytorchjob-controller"
    assert master["team"] == "ml"
    envs = {n: json.loads(log_of(k8s, n)) for n in pods}
    assert {e["RANK"] for e in envs.values()} == {"0", "1", "2"}
    assert envs["ddp-worker-1"]["RANK"] == envs["ddp-worker-1"]["PET_NODE_RANK"] == "2"
    assert {e["MASTER_ADDR"] for e in envs.values()} == {"127.0.0.1"}
    assert len({e["MASTER_PORT"] for e in envs.values()}) == 1
    assert envs["ddp-master-0"]["WORLD_SIZE"] == "3" and envs["ddp-master-0"]["PET_NNODES"] == "3"
    types = [c["type"] for c in done["status"]["conditions"]]
    assert types == ["Created", "Running", "Succeeded"]
    assert (
        true_condition(done, "Succeeded")["message"]
        == "PyTorchJob trainops/ddp successfully completed."
    )
    assert done["status"]["replicaStatuses"]["Master"]["succeeded"] == 1
    reasons = [
        e.reason
        for e in k8s.core.list_namespaced_event(NS, field_selector="involvedObject.name=ddp").items
    ]
    assert reasons.count("SuccessfulCreatePod") == 3 and "PyTorchJobSucceeded" in reasons


@needs_crds
def test_a_pytorchjob_over_its_backoff_limit_fails(k8s: Clients, open_api: KubeApi) -> None:
    open_api.script("crashy", Outcome.exit_code(1), pod="*-master-0")
    body = pytorchjob(
        "crashy", ["sleep", "30"], workers=1, backoffLimit=2, cleanPodPolicy="Running"
    )
    k8s.custom.create_namespaced_custom_object("kubeflow.org", "v1", NS, "pytorchjobs", body)
    failed = wait_condition(open_api, "kubeflow.org", "pytorchjobs", "crashy", "Failed")
    assert (
        true_condition(failed, "Failed")["message"]
        == "Job crashy has failed because it has reached the specified backoff limit"
    )
    wait_for(
        lambda: not pods_of(open_api, "training.kubeflow.org/job-name=crashy"),
        timeout=10,
        what="running pods cleaned",
    )


@needs_crds
def test_a_trainjob_runs_its_nodes_as_an_indexed_job_of_a_jobset(
    k8s: Clients, open_api: KubeApi
) -> None:
    keys = ("PET_NODE_RANK", "PET_NNODES", "PET_MASTER_ADDR")
    code = f"import os; print(*(os.environ[k] for k in {keys!r}))"
    body: dict[str, Any] = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "tj"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "image": "ghcr.io/trainops/trainer:0.1.0",
                "command": python(code),
                "numNodes": 2,
            },
            "labels": {"app.kubernetes.io/managed-by": "trainops"},
        },
    }
    k8s.custom.create_namespaced_custom_object(
        "trainer.kubeflow.org", "v1alpha1", NS, "trainjobs", body
    )
    done = wait_condition(open_api, "trainer.kubeflow.org", "trainjobs", "tj", "Complete")
    assert true_condition(done, "Complete")["reason"] == "AllJobsCompleted"
    assert done["status"]["jobsStatus"] == [
        {"name": "node", "ready": 0, "succeeded": 1, "failed": 0, "active": 0, "suspended": 0}
    ]
    pods = sorted(
        pods_of(open_api, "jobset.sigs.k8s.io/jobset-name=tj"), key=lambda p: p["metadata"]["name"]
    )
    assert [p["metadata"]["name"][: len("tj-node-0-0")] for p in pods] == [
        "tj-node-0-0",
        "tj-node-0-1",
    ]
    labels = pods[1]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-completion-index"] == "1"
    assert labels["jobset.sigs.k8s.io/replicatedjob-name"] == "node"
    assert labels["app.kubernetes.io/managed-by"] == "trainops"
    assert sorted(log_of(k8s, p["metadata"]["name"]) for p in pods) == [
        "0 2 127.0.0.1\n",
        "1 2 127.0.0.1\n",
    ]
    status, body_, _ = api_error(
        lambda: k8s.custom.create_namespaced_custom_object(
            "trainer.kubeflow.org",
            "v1alpha1",
            NS,
            "trainjobs",
            {
                **body,
                "metadata": {"name": "tj2"},
                "spec": {**body["spec"], "runtimeRef": {"name": "nope"}},
            },
        )
    )
    assert (
        status == 422
        and 'ClusterTrainingRuntime.trainer.kubeflow.org "nope" not found' in body_["message"]
    )


def rayjob(name: str, entrypoint: str, **spec: Any) -> dict[str, Any]:
    """A RayJob of a head (its env SWEEP=7) and one worker, shut down when it ends."""
    head = {
        "containers": [
            {
                "name": "ray-head",
                "image": "rayproject/ray:2.46.0",
                "env": [{"name": "SWEEP", "value": "7"}],
            }
        ]
    }
    worker = {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.46.0"}]}
    group = {"groupName": "cpu", "replicas": 1, "minReplicas": 1, "maxReplicas": 1}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": entrypoint,
            "rayClusterSpec": {
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": head}},
                "workerGroupSpecs": [{**group, "rayStartParams": {}, "template": {"spec": worker}}],
            },
            "shutdownAfterJobFinishes": True,
            **spec,
        },
    }


@needs_crds
def test_a_rayjob_runs_its_entrypoint_on_a_ray_cluster_of_its_own(
    k8s: Clients, open_api: KubeApi
) -> None:
    body = rayjob("sweep", "python -c \"import os; print('trials', os.environ['SWEEP'])\"")
    k8s.custom.create_namespaced_custom_object("ray.io", "v1", NS, "rayjobs", body)

    def finished() -> dict[str, Any] | None:
        obj = open_api.get("ray.io", "rayjobs", "sweep")
        return (
            obj
            if (obj or {}).get("status", {}).get("jobDeploymentStatus") in ("Complete", "Failed")
            else None
        )

    status = wait_for(finished, timeout=30, what="RayJob finished")["status"]
    assert (status["jobDeploymentStatus"], status["jobStatus"]) == ("Complete", "SUCCEEDED")
    cluster = status["rayClusterName"]
    assert cluster.startswith("sweep-") and status["startTime"] and status["endTime"]
    (submitter,) = pods_of(open_api, "job-name=sweep")
    assert log_of(k8s, submitter["metadata"]["name"]) == "trials 7\n"
    assert submitter["spec"]["containers"][0]["command"][:3] == ["ray", "job", "submit"]
    wait_for(
        lambda: open_api.get("ray.io", "rayclusters", cluster) is None,
        timeout=10,
        what="cluster shut down",
    )


@needs_crds
def test_a_failed_rayjob_is_retried_on_a_new_ray_cluster_up_to_its_backoff_limit(
    k8s: Clients, open_api: KubeApi
) -> None:
    code = "import os, sys; print(os.environ['ATTEMPT'], os.environ['SWEEP']); sys.exit(3)"
    body = rayjob(
        "flaky",
        f'python -c "{code}"',
        backoffLimit=1,
        runtimeEnvYAML="env_vars:\n  ATTEMPT: again\n",
    )
    k8s.custom.create_namespaced_custom_object("ray.io", "v1", NS, "rayjobs", body)
    clusters: set[str] = set()

    def failed_for_good() -> dict[str, Any] | None:
        status = (open_api.get("ray.io", "rayjobs", "flaky") or {}).get("status") or {}
        if status.get("rayClusterName"):
            clusters.add(status["rayClusterName"])
        return status if status.get("jobDeploymentStatus") == "Failed" else None

    status = wait_for(failed_for_good, timeout=60, what="the RayJob's last attempt failed")
    assert (status["jobStatus"], status["reason"], status["failed"]) == ("FAILED", "AppFailed", 2)
    assert status["message"] == "Job entrypoint command failed with exit code 3"
    assert len(clusters) == 2  # an attempt, a Ray cluster
    # The entry point ran as on the head: the head's env and the runtime env's.
    (submitter,) = pods_of(open_api, "job-name=flaky")
    assert log_of(k8s, submitter["metadata"]["name"]) == "again 7\n"
    labels = submitter["metadata"]["labels"]
    assert labels["ray.io/originated-from-cr-name"] == "flaky"
    command = submitter["spec"]["containers"][0]["command"]
    assert json.loads(command[command.index("--runtime-env-json") + 1]) == {
        "env_vars": {"ATTEMPT": "again"}
    }


@needs_crds
def test_deleting_a_running_rayjob_stops_its_driver_and_removes_its_ray_cluster(
    k8s: Clients, open_api: KubeApi
) -> None:
    body = rayjob("long", "sleep 600")
    k8s.custom.create_namespaced_custom_object("ray.io", "v1", NS, "rayjobs", body)

    def running() -> dict[str, Any] | None:
        obj = open_api.get("ray.io", "rayjobs", "long")
        return obj if ((obj or {}).get("status") or {}).get("jobStatus") == "RUNNING" else None

    obj = wait_for(running, timeout=30, what="the Ray job running")
    assert obj["status"]["jobDeploymentStatus"] == "Running"
    assert obj["metadata"]["finalizers"] == ["ray.io/rayjob-finalizer"]
    assert open_api.processes()
    k8s.custom.delete_namespaced_custom_object(
        "ray.io", "v1", NS, "rayjobs", "long", propagation_policy="Foreground"
    )
    wait_for(
        lambda: open_api.get("ray.io", "rayjobs", "long") is None,
        timeout=30,
        what="the RayJob gone",
    )
    # Foreground: it went once what it owns had gone.
    assert open_api.objects("ray.io", "rayclusters") == []
    assert open_api.objects("batch", "jobs") == []
    assert open_api.objects("", "pods", NS) == []
    assert open_api.processes() == []


# -- watches -----------------------------------------------------------------------------------


def test_a_watch_resumes_from_a_resource_version_and_gets_bookmarks(
    kube_api_factory: Callable[..., KubeApi],
) -> None:
    kube = kube_api_factory(rbac=None, crds=(), bookmark_interval_s=0.2)
    k8s = clients_for(kube)
    k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "before"}})
    rv = k8s.core.list_namespaced_config_map(NS).metadata.resource_version
    k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "after", "labels": {"w": "1"}}})
    k8s.core.patch_namespaced_config_map("after", NS, {"data": {"k": "v"}})
    seen = []
    w = watch.Watch()
    for event in w.stream(
        k8s.core.list_namespaced_config_map,
        NS,
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["raw_object"]["metadata"].get("name")))
        if event["type"] == "BOOKMARK":
            assert int(event["raw_object"]["metadata"]["resourceVersion"]) > int(rv)
            w.stop()
    assert seen == [("ADDED", "after"), ("MODIFIED", "after"), ("BOOKMARK", None)]
    seen.clear()
    for event in w.stream(
        k8s.core.list_namespaced_config_map, NS, label_selector="w=1", timeout_seconds=1
    ):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "after")]


def test_a_watch_from_a_compacted_resource_version_is_410_expired(
    open_api: KubeApi, k8s: Clients
) -> None:
    rv = k8s.batch.list_namespaced_job(NS).metadata.resource_version
    k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "churn"}})
    open_api.compact()
    with pytest.raises(client.ApiException) as caught:
        for _ in watch.Watch().stream(
            k8s.batch.list_namespaced_job, NS, resource_version=rv, timeout_seconds=2
        ):
            pass
    assert caught.value.status == 410
    assert caught.value.reason.startswith(f"Expired: too old resource version: {rv} (")


def test_dropped_watches_end_the_stream(open_api: KubeApi, k8s: Clients) -> None:
    outcome: list[BaseException | str] = []
    started = threading.Event()

    def consume() -> None:
        try:
            for _ in watch.Watch().stream(
                k8s.core.list_namespaced_config_map, NS, timeout_seconds=30
            ):
                started.set()
        except BaseException as e:  # the stream's end is what the test looks at
            outcome.append(e)
        else:
            outcome.append("ended")

    k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": "seen"}})
    thread = threading.Thread(target=consume)
    thread.start()
    assert started.wait(5)
    open_api.drop_watches()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], urllib3.exceptions.ProtocolError)


# -- deletion ----------------------------------------------------------------------------------


def _running_job(k8s: Clients, kube: KubeApi, name: str) -> tuple[dict[str, Any], list[int]]:
    kube.script(name, Outcome.hold())
    k8s.batch.create_namespaced_job(NS, job(name, python("print(1)")))

    def running() -> dict[str, Any] | None:
        pods = pods_of(kube, f"job-name={name}")
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    pod = wait_for(running, timeout=20, what=f"{name} running")
    return pod, kube.processes()


def test_deleting_a_job_in_background_removes_its_pods_and_stops_their_processes(
    open_api: KubeApi, k8s: Clients
) -> None:
    pod, pids = _running_job(k8s, open_api, "held")
    assert pids
    result = k8s.batch.delete_namespaced_job("held", NS, propagation_policy="Background")
    assert result.status == "Success" and result.details.kind == "jobs"
    wait_for(lambda: not pods_of(open_api, "job-name=held"), timeout=15, what="pods deleted")
    assert not [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    killing = k8s.core.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={pod['metadata']['name']},reason=Killing"
    ).items
    assert killing[0].message == "Stopping container trainer"


def test_deleting_a_job_without_a_policy_orphans_its_pods_as_batch_v1_does(
    open_api: KubeApi, k8s: Clients
) -> None:
    pod, _ = _running_job(k8s, open_api, "orphaned")
    _, code, headers = k8s.batch.delete_namespaced_job_with_http_info("orphaned", NS)
    assert code == 200 and "child pods are preserved by default" in headers["Warning"]
    time.sleep(0.5)
    (left,) = pods_of(open_api, "job-name=orphaned")
    assert (
        left["metadata"]["uid"] == pod["metadata"]["uid"]
        and "ownerReferences" not in left["metadata"]
    )
    k8s.core.delete_namespaced_pod(left["metadata"]["name"], NS)
    wait_for(lambda: not pods_of(open_api, "job-name=orphaned"), timeout=15, what="pod deleted")


def test_foreground_deletion_keeps_the_job_until_its_pods_are_gone(
    open_api: KubeApi, k8s: Clients
) -> None:
    _running_job(k8s, open_api, "fg")
    k8s.batch.delete_namespaced_job("fg", NS, propagation_policy="Foreground")
    job_now = k8s.batch.read_namespaced_job("fg", NS)
    assert (
        job_now.metadata.deletion_timestamp is not None
        and "foregroundDeletion" in job_now.metadata.finalizers
    )
    wait_for(lambda: open_api.get("batch", "jobs", "fg") is None, timeout=15, what="job gone")
    assert not pods_of(open_api, "job-name=fg")


# -- faults ------------------------------------------------------------------------------------


def test_fault_hooks_fail_requests_and_take_the_server_down_and_up(
    open_api: KubeApi, k8s: Clients
) -> None:
    open_api.fail_next("POST", r"/jobs$", 503)
    status, body, headers = api_error(
        lambda: k8s.batch.create_namespaced_job(NS, job("later", ["true"], suspend=True))
    )
    assert (status, body["reason"], headers["Retry-After"]) == (503, "ServiceUnavailable", "1")
    k8s.batch.create_namespaced_job(NS, job("later", ["true"], suspend=True))
    open_api.down()
    api = open_api.api_client()
    api.configuration.retries = 0
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        client.BatchV1Api(api).list_namespaced_job(NS)
    open_api.up()
    assert [j.metadata.name for j in k8s.batch.list_namespaced_job(NS).items] == ["later"]
    open_api.latency(0.3)
    started = time.monotonic()
    k8s.batch.list_namespaced_job(NS)
    assert time.monotonic() - started >= 0.3
    open_api.latency(0)


def test_list_selectors_and_pages(k8s: Clients) -> None:
    for name, labels in (
        ("a", {"tier": "x", "team": "ml"}),
        ("b", {"tier": "y"}),
        ("c", {"team": "ops"}),
    ):
        k8s.core.create_namespaced_config_map(NS, {"metadata": {"name": name, "labels": labels}})

    def names(**kw: Any) -> list[str]:
        return [i.metadata.name for i in k8s.core.list_namespaced_config_map(NS, **kw).items]

    assert names(label_selector="tier in (x,y)") == ["a", "b"]
    assert names(label_selector="tier notin (x)") == ["b", "c"]
    assert names(label_selector="!tier") == ["c"]
    assert names(label_selector="team,tier!=y") == ["a", "c"]  # != matches a missing key
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    first = k8s.core.list_namespaced_config_map(NS, limit=2)
    assert [i.metadata.name for i in first.items] == ["a", "b"]
    rest = k8s.core.list_namespaced_config_map(NS, limit=2, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["c"] and rest.metadata._continue is None
    status, body, _ = api_error(
        lambda: k8s.core.list_namespaced_config_map(NS, field_selector="data.x=1")
    )
    assert (status, body["message"]) == (400, "field label not supported: data.x")


def test_patches_merge_strategically_by_json_merge_and_by_json_patch(k8s: Clients) -> None:
    k8s.core.create_namespaced_config_map(
        NS, {"metadata": {"name": "p", "labels": {"a": "1"}}, "data": {"x": "1"}}
    )
    k8s.core.patch_namespaced_config_map(
        "p", NS, {"metadata": {"labels": {"b": "2"}}, "data": {"x": None}}
    )
    k8s.core.patch_namespaced_config_map(
        "p", NS, [{"op": "add", "path": "/data", "value": {"y": "3"}}]
    )
    cm = k8s.core.read_namespaced_config_map("p", NS)
    assert cm.metadata.labels == {"a": "1", "b": "2"} and cm.data == {"y": "3"}
    status, body, _ = api_error(
        lambda: k8s.core.patch_namespaced_config_map(
            "p", NS, [{"op": "replace", "path": "/nope/x", "value": 1}]
        )
    )
    assert status == 422
    status, body, _ = api_error(lambda: k8s.core.read_namespaced_config_map("p", "elsewhere"))
    assert (status, body["message"]) == (404, 'configmaps "p" not found')
    status, body, _ = api_error(
        lambda: k8s.core.create_namespaced_config_map("elsewhere", {"metadata": {"name": "p"}})
    )
    assert (status, body["message"]) == (404, 'namespaces "elsewhere" not found')


def test_an_evicted_pod_is_replaced_without_using_up_the_backoff_limit(
    open_api: KubeApi, k8s: Clients
) -> None:
    open_api.script("evictable", Outcome.hold())
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    k8s.batch.create_namespaced_job(
        NS, job("evictable", python("print(1)"), podFailurePolicy=policy)
    )

    def running(exclude: str = "") -> dict[str, Any] | None:
        pods = [
            p for p in pods_of(open_api, "job-name=evictable") if p["metadata"]["uid"] != exclude
        ]
        return next((p for p in pods if p["status"].get("phase") == "Running"), None)

    first = wait_for(running, timeout=20, what="first pod running")
    assert first["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    k8s.core.create_namespaced_pod_eviction(
        first["metadata"]["name"], NS, {"metadata": {"name": first["metadata"]["name"]}}
    )
    wait_for(lambda: running(first["metadata"]["uid"]), timeout=20, what="replacement running")
    wait_for(
        lambda: (
            not any(
                p["metadata"]["uid"] == first["metadata"]["uid"]
                for p in open_api.objects("", "pods")
            )
        ),
        timeout=10,
        what="evicted pod gone",
    )
    status = stored(open_api, "batch", "jobs", "evictable")["status"]
    assert "failed" not in status and status["active"] == 1
    assert not condition(open_api.get("batch", "jobs", "evictable"), "Failed")


def test_a_job_past_its_active_deadline_fails_and_stops_its_pods(
    open_api: KubeApi, k8s: Clients
) -> None:
    open_api.script("slow", Outcome.hold())
    k8s.batch.create_namespaced_job(NS, job("slow", python("print(1)"), activeDeadlineSeconds=1))
    failed = wait_condition(open_api, "batch", "jobs", "slow", "Failed", timeout=20)
    assert true_condition(failed, "Failed")["reason"] == "DeadlineExceeded"
    assert (
        true_condition(failed, "Failed")["message"]
        == "Job was active longer than specified deadline"
    )
    wait_for(
        lambda: all(p["status"]["phase"] == "Failed" for p in pods_of(open_api, "job-name=slow")),
        timeout=10,
        what="pod stopped",
    )
    events = [
        e.reason
        for e in k8s.core.list_namespaced_event(NS, field_selector="involvedObject.name=slow").items
    ]
    assert "DeadlineExceeded" in events and "SuccessfulDelete" in events


def test_a_suspended_job_has_no_pods_until_resumed(open_api: KubeApi, k8s: Clients) -> None:
    open_api.script("paused", Outcome.hold())
    k8s.batch.create_namespaced_job(NS, job("paused", python("print(1)")))
    wait_for(lambda: pods_of(open_api, "job-name=paused"), timeout=10, what="pod")
    k8s.batch.patch_namespaced_job("paused", NS, {"spec": {"suspend": True}})
    suspended = wait_condition(open_api, "batch", "jobs", "paused", "Suspended")
    assert true_condition(suspended, "Suspended")["reason"] == "JobSuspended"
    wait_for(lambda: not pods_of(open_api, "job-name=paused"), timeout=10, what="pods deleted")
    assert "failed" not in stored(open_api, "batch", "jobs", "paused")["status"]
    k8s.batch.patch_namespaced_job("paused", NS, {"spec": {"suspend": False}})
    wait_for(lambda: pods_of(open_api, "job-name=paused"), timeout=10, what="pod again")

    def resumed() -> dict[str, Any] | None:
        conditions = stored(open_api, "batch", "jobs", "paused")["status"]["conditions"]
        found = next(c for c in conditions if c["type"] == "Suspended")
        return found if found["status"] == "False" else None

    suspended_condition = wait_for(resumed, timeout=10, what="resumed")
    assert (suspended_condition["status"], suspended_condition["reason"]) == ("False", "JobResumed")


def test_mount_paths_map_to_host_folders_shared_by_the_pods_of_a_claim(
    open_api: KubeApi, k8s: Clients
) -> None:
    def with_volumes(body: dict[str, Any]) -> dict[str, Any]:
        spec = body["spec"]["template"]["spec"]
        spec["volumes"] = [
            {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}},
            {"name": "scratch", "emptyDir": {}},
        ]
        container = spec["containers"][0]
        container["volumeMounts"] = [
            {"name": "data", "mountPath": "/data"},
            {"name": "scratch", "mountPath": "/tmp"},
        ]
        container["env"] = [
            {"name": "HOME", "value": "/tmp"},
            {"name": "OUT", "value": "/data/out.txt"},
        ]
        container["terminationMessagePolicy"] = "FallbackToLogsOnError"
        return body

    write = (
        "import os, pathlib; pathlib.Path(os.environ['OUT']).write_text('shared'); "
        "print(os.environ['HOME'])"
    )
    k8s.batch.create_namespaced_job(NS, with_volumes(job("writer", python(write))))
    wait_condition(open_api, "batch", "jobs", "writer", "Complete")
    (writer,) = pods_of(open_api, "job-name=writer")
    home = log_of(k8s, writer["metadata"]["name"]).strip()
    assert home.startswith(str(open_api.root)) and home.endswith("volumes/scratch")
    read = "import sys; print(open(sys.argv[1]).read()); raise SystemExit(4)"
    body = with_volumes(job("reader", [*python(read), "/data/out.txt"]))
    k8s.batch.create_namespaced_job(NS, body)
    wait_condition(open_api, "batch", "jobs", "reader", "Failed")
    (reader,) = pods_of(open_api, "job-name=reader")
    terminated = reader["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (4, "shared\n")


def test_a_followed_log_streams_until_the_container_ends(open_api: KubeApi, k8s: Clients) -> None:
    code = "import time\nfor i in range(3):\n    print('tick', i, flush=True); time.sleep(0.3)"
    k8s.batch.create_namespaced_job(NS, job("ticker", python(code)))

    def started() -> str | None:
        pods = pods_of(open_api, "job-name=ticker")
        running = pods and pods[0]["status"].get("phase") == "Running"
        return pods[0]["metadata"]["name"] if running else None

    name = wait_for(started, timeout=20, what="ticker running")
    response = k8s.core.read_namespaced_pod_log(name, NS, follow=True, _preload_content=False)
    assert b"".join(response.stream()).decode() == "tick 0\ntick 1\ntick 2\n"


def test_events_are_served_by_both_event_apis(open_api: KubeApi, k8s: Clients) -> None:
    k8s.batch.create_namespaced_job(NS, job("noted", python("print(1)")))
    wait_condition(open_api, "batch", "jobs", "noted", "Complete")
    # EventsV1Api cannot read these: the recorder's events have no eventTime, which the model
    # requires; the dynamic client reads them as served.
    events = k8s.dynamic.resources.get(api_version="events.k8s.io/v1", kind="Event")
    listed = events.get(namespace=NS, field_selector="regarding.name=noted").to_dict()["items"]
    last = listed[-1]
    assert (last["reason"], last["note"], last["reportingController"], last["eventTime"]) == (
        "Completed",
        "Job completed",
        "job-controller",
        None,
    )
    assert last["deprecatedCount"] == 1 and last["regarding"]["kind"] == "Job"
    core = k8s.core.list_namespaced_event(
        NS, field_selector="involvedObject.kind=Job,reason=Completed"
    ).items
    assert [e.involved_object.name for e in core] == ["noted"] and core[
        0
    ].source.component == "job-controller"


def test_a_script_can_keep_a_job_unschedulable(open_api: KubeApi, k8s: Clients) -> None:
    open_api.script("stuck", Outcome.unschedulable())
    k8s.batch.create_namespaced_job(NS, job("stuck", python("print(1)")))

    def pending() -> dict[str, Any] | None:
        pods = pods_of(open_api, "job-name=stuck")
        conditions = (pods and pods[0]["status"].get("conditions")) or []
        return (
            pods[0]
            if any(c["reason"] == "Unschedulable" for c in conditions if "reason" in c)
            else None
        )

    pod = wait_for(pending, timeout=10, what="unschedulable")
    assert pod["status"]["conditions"][0]["message"].startswith(
        "0/3 nodes are available: 3 Insufficient cpu."
    )


@needs_crds
def test_deleting_a_trainjob_deletes_its_jobset_job_and_pods(
    open_api: KubeApi, k8s: Clients
) -> None:
    open_api.script("tj-held", Outcome.hold())
    body = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "tj-held"},
        "spec": {
            "runtimeRef": {"name": "torch-distributed"},
            "trainer": {
                "image": "ghcr.io/trainops/trainer:0.1.0",
                "command": ["true"],
                "numNodes": 2,
            },
        },
    }
    args = ("trainer.kubeflow.org", "v1alpha1", NS, "trainjobs")
    k8s.custom.create_namespaced_custom_object(*args, body)

    def running() -> list[dict[str, Any]]:
        pods = pods_of(open_api, "jobset.sigs.k8s.io/jobset-name=tj-held")
        return [p for p in pods if p["status"].get("phase") == "Running"]

    assert len(wait_for(lambda: len(running()) == 2 and running(), timeout=20, what="2 nodes")) == 2
    assert open_api.get("jobset.x-k8s.io", "jobsets", "tj-held") is not None
    assert open_api.get("batch", "jobs", "tj-held-node-0") is not None
    pids = open_api.processes()
    k8s.custom.delete_namespaced_custom_object(*args, "tj-held")

    def gone() -> bool:
        return (
            open_api.get("jobset.x-k8s.io", "jobsets", "tj-held") is None
            and open_api.get("batch", "jobs", "tj-held-node-0") is None
            and not pods_of(open_api, "jobset.sigs.k8s.io/jobset-name=tj-held")
        )

    wait_for(gone, timeout=20, what="everything under the TrainJob deleted")
    alive = [
        p
        for p in pids
        if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    assert not alive


def test_a_server_asked_for_crds_that_are_not_there_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(CrdsMissing, match=r"CRD files not found at .*/nowhere"):
        KubeApi(tmp_path, crds_dir=tmp_path / "nowhere")
    assert KubeApi(tmp_path, crds=(), crds_dir=tmp_path / "nowhere").store is not None


def test_a_finished_job_with_a_ttl_is_deleted_with_its_pods(
    open_api: KubeApi, k8s: Clients
) -> None:
    k8s.batch.create_namespaced_job(NS, job("brief", python("print(1)"), ttlSecondsAfterFinished=0))
    wait_for(lambda: open_api.get("batch", "jobs", "brief") is None, timeout=20, what="job deleted")
    wait_for(lambda: not pods_of(open_api, "job-name=brief"), timeout=10, what="pods deleted")
