"""Stories about values that try to change what they are bound into: a K8S task's YAML, a URL, a header, a number
the save-time checks never saw, and an input nested too deeply to hand to a worker.

Whoever sets an input, or answers a REST call a later task binds, must not be able to add an object to a K8S task
(applied with the endpoint's credentials), move a request to another path, add a header or keep a task waiting for
ever."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from k8s_support import READY_DELAY, endpoint, lookup
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubesim import KubeSim
from orchestrator.bindings import Scope
from orchestrator.errors import BindingError, InputInvalid
from orchestrator.inputs import MAX_NESTING, bind_task
from orchestrator.pipeline import Task
from orchestrator.tasktypes import MAX_POLL_COUNT, check_task_input
from workers.executors.base import Failed, TaskCall
from workers.executors.k8s import K8sExecutor
from workers.executors.poll import PollExecutor
from workers.executors.rest import RestExecutor
from workers.http import HttpClient

from rollway_testing import TERMINAL, ServedApp, wait_until

Doc = dict[str, Any]

# An image tag that, spliced into the YAML as text, would end the Deployment's document and start a ConfigMap's.
INJECTED_TAG = "1.25\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: injected, namespace: default}"

# The image line comes last, as the injection needs: what follows it in the text would start the next document.
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:TAG
"""


def deployment_yaml(tag_binding: str) -> str:
    return DEPLOYMENT.replace("TAG", tag_binding)


def bound(task_type: str, task_input: Doc, **given: Any) -> Doc:
    """A task's input as the engine binds it when the task is queued, in an execution given `given`."""
    return dict(bind_task(Task("T", task_type, task_input), Scope(input=given, outputs={})).input)


# -- a real local HTTP server that records the raw request path


class Recorder:
    """A local HTTP server answering every GET with `body` (JSON), remembering the raw path of each request line."""

    def __init__(self, body: object = None) -> None:
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.paths.append(self.path)
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder({"tag": INJECTED_TAG, "ok": True})
    yield server
    server.stop()


@pytest.fixture
def http() -> Iterator[HttpClient]:
    client = HttpClient(timeout=5)
    yield client
    client.close()


# -- YAML: a value fills one scalar, never adds a document or a key


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param(INJECTED_TAG, id="new-document"),
        pytest.param("1.25\n          replicas: 50", id="new-key-by-indentation"),
        pytest.param("1.25\n  replicas: 50", id="new-key-at-spec"),
        pytest.param("1.25}, {name: sidecar, image: evil}", id="closing-a-flow-collection"),
        pytest.param("1.25 # comment", id="comment"),
        pytest.param("&a [*a]", id="anchor"),
    ],
)
def test_a_bound_tag_becomes_one_string_in_its_place_whatever_it_holds(tag: str) -> None:
    # Given a K8S APPLY of a Deployment whose image is nginx:${input.tag}
    task_input = {"action": "APPLY", "yaml": deployment_yaml("${input.tag}")}

    # When it is bound with a tag that holds YAML of its own
    text = bound("K8S", task_input, tag=tag)["yaml"]

    # Then the YAML still holds the one Deployment, as written, its image the whole tag as one string
    documents = list(yaml.safe_load_all(text))
    expected = yaml.safe_load(deployment_yaml("x"))
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = f"nginx:{tag}"
    assert documents == [expected]


def test_a_scalar_that_is_one_binding_takes_the_value_with_its_type() -> None:
    # Given YAML whose replicas, labels and annotation are each exactly one binding, in block and flow style
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${input.name}, labels: ${input.labels}}\n"
        "data:\n  replicas: ${input.replicas}\n  version: '${input.version}'\n"
    )

    # When it is bound to an int, an object and strings that read like YAML
    given = {"name": "web", "labels": {"app": "web"}, "replicas": 3, "version": "1.0\nkind: Secret"}
    [document] = yaml.safe_load_all(bound("K8S", {"action": "APPLY", "yaml": text}, **given)["yaml"])

    # Then each takes its value: the int and object as they are, a string as one string
    assert document == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "data": {"replicas": 3, "version": "1.0\nkind: Secret"},
    }


def test_a_binding_in_a_key_is_spliced_into_that_key_only() -> None:
    # Given YAML with a binding in a label key, and one in a comment
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    team-${input.team}: yes-${input.team}\n"
    )
    text += "# ${input.nothing}\n"

    # When it is bound to a team name holding a colon and a line break
    [document] = yaml.safe_load_all(bound("K8S", {"action": "APPLY", "yaml": text}, team="a: b\nc")["yaml"])

    # Then the key and the value each hold the text, and the comment binds nothing (input.nothing does not exist)
    assert document["metadata"]["labels"] == {"team-a: b\nc": "yes-a: b\nc"}


def test_two_keys_that_bind_to_the_same_text_fail_the_binding() -> None:
    # Given two label keys that differ only by their bindings
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {'${input.a}': x, '${input.b}': y}\n"

    # When both bind to the same text, Then the binding fails naming the field instead of dropping one
    with pytest.raises(BindingError, match="yaml: two keys of one mapping read 'same'"):
        bound("K8S", {"action": "APPLY", "yaml": text}, a="same", b="same")


def test_yaml_that_is_one_binding_takes_the_whole_text_as_the_pipeline_says() -> None:
    # Given a K8S task whose whole YAML is an input, When it is bound, Then the text is taken as it is
    manifest = deployment_yaml("1.25") + "---\n" + deployment_yaml("1.26").replace("name: web\n", "name: two\n", 1)
    assert bound("K8S", {"action": "APPLY", "yaml": "${input.manifest}"}, manifest=manifest)["yaml"] == manifest


YAML_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40) | st.sampled_from(
    ["---", "...", "\n---\nkind: Secret", "a: b", "- x", "{", "}", "'", '"', "#", "&x", "*x", "!!str", "|", ">"]
)


@settings(max_examples=200, deadline=None)
@given(tag=YAML_TEXT)
@example(tag="\x85")  # NEL: PyYAML writes it into a plain scalar, then reads it back as a line break
@example(tag="1.25\u2028---\u2029")
def test_any_bound_text_gives_exactly_the_one_deployment_with_that_image(tag: str) -> None:
    # Given any text as the tag of nginx:${input.tag}
    # When the Deployment is bound
    documents = list(
        yaml.safe_load_all(bound("K8S", {"action": "APPLY", "yaml": deployment_yaml("${input.tag}")}, tag=tag)["yaml"])
    )

    # Then there is one document, and the image is the text
    assert len(documents) == 1
    assert documents[0]["spec"]["template"]["spec"]["containers"][0]["image"] == f"nginx:{tag}"


# -- YAML, end to end: nothing is created in the cluster by a bound value


@pytest.fixture
def cluster() -> Iterator[KubeSim]:
    with KubeSim(ready_delay=READY_DELAY) as sim:
        yield sim


def finished(api: ServedApp, execution_id: str) -> Doc:
    def ended() -> Doc | None:
        found: Doc = api.http.get(f"/api/executions/{execution_id}").json()
        return found if found["status"] in TERMINAL else None

    done: Doc = wait_until(ended, timeout=90, interval=0.2, what=f"execution {execution_id} to end")
    return done


def apply_task(tag_binding: str) -> Doc:
    return {
        "type": "K8S",
        "endpoints": {"kubernetesServer": "dev-cluster"},
        "input": {"action": "APPLY", "yaml": deployment_yaml(tag_binding)},
    }


def from_input() -> Doc:
    """A pipeline that applies the Deployment on the tag it is given."""
    return {
        "name": "Tag From Input",
        "project": "e2e",
        "enabled": True,
        "input": {"tag": ""},
        "stageOrder": ["Deploy"],
        "stages": {"Deploy": {"taskOrder": ["Apply"], "tasks": {"Apply": apply_task("${input.tag}")}}},
    }


def from_response(url: str) -> Doc:
    """A pipeline that asks a release service for the tag, then applies the Deployment on it."""
    return {
        "name": "Tag From Response",
        "project": "e2e",
        "enabled": True,
        "stageOrder": ["Build", "Deploy"],
        "stages": {
            "Build": {"taskOrder": ["Fetch"], "tasks": {"Fetch": {"type": "REST", "input": {"url": f"{url}/release"}}}},
            "Deploy": {
                "taskOrder": ["Apply"],
                "tasks": {"Apply": apply_task("${Build.Fetch.output.responseJson.tag}")},
            },
        },
    }


@pytest.mark.parametrize("source", ["input", "response"])
def test_an_injected_tag_creates_nothing_in_the_cluster(
    api: ServedApp, worker: Any, cluster: KubeSim, recorder: Recorder, source: str
) -> None:
    # Given the cluster as endpoint dev-cluster, and a pipeline applying a Deployment on nginx:<tag>, the tag given
    # as the execution's input or answered by a release service a REST task asks first
    api.create_at("/api/endpoints", {"name": "dev-cluster", "project": "e2e", "url": cluster.url, "insecure": True})
    pipeline = api.create(from_input() if source == "input" else from_response(recorder.url))

    # When it runs on a tag that would end the Deployment's document and start a ConfigMap's
    given = {"tag": INJECTED_TAG} if source == "input" else {}
    answer = api.http.post(f"/api/pipelines/{pipeline['id']}/executions", json={"input": given})
    assert answer.status_code == 202, answer.text
    done = finished(api, answer.json()["executionId"])

    # Then no ConfigMap 'injected' exists, the Deployment is the only one, and the Apply was given one document
    core = k8s.CoreV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("injected", "default")
    assert missing.value.status == 404
    apps = k8s.AppsV1Api(k8s.ApiClient(k8s.Configuration(host=cluster.url)))
    assert [item.metadata.name for item in apps.list_deployment_for_all_namespaces().items] == ["web"]
    apply = next(task for stage in done["stages"] for task in stage["tasks"] if task["name"] == "Apply")
    assert len(list(yaml.safe_load_all(apply["input"]["yaml"]))) == 1, apply
    # ... whose image is the whole tag, as one (odd) string
    deployment = apps.read_namespaced_deployment("web", "default")
    assert deployment.spec.template.spec.containers[0].image == f"nginx:{INJECTED_TAG}"


# -- URLs: a value inside a URL is one component


def test_a_value_bound_into_a_url_path_reaches_the_server_percent_encoded(http: HttpClient, recorder: Recorder) -> None:
    # Given a REST task whose URL binds an id into its path and a view into its query
    task_input = {"url": f"{recorder.url}/items/${{input.id}}/detail?view=${{input.view}}&x=1"}

    # When it runs on an id and a view that would leave their places
    call = bound("REST", task_input, id="../admin?x=1#", view="a&b=2#frag")
    RestExecutor(http).execute(TaskCall("REST", call, {}))

    # Then the server saw the path and query as written, each value percent-encoded in its place
    assert recorder.paths == ["/items/..%2Fadmin%3Fx%3D1%23/detail?view=a%26b%3D2%23frag&x=1"]


def test_a_value_of_dots_cannot_climb_out_of_its_segment(http: HttpClient, recorder: Recorder) -> None:
    # Given a REST task whose URL binds an id into its path
    task_input = {"url": f"{recorder.url}/items/${{input.id}}/detail"}

    # When the id is '..', which an HTTP client would resolve away with the segment before it
    RestExecutor(http).execute(TaskCall("REST", bound("REST", task_input, id=".."), {}))

    # Then the server saw the segment, encoded
    assert recorder.paths == ["/items/%2E%2E/detail"]


def test_a_whole_url_or_a_leading_base_binding_is_taken_as_it_is() -> None:
    # Given URLs that are one binding, or start with one (the server's base URL, from a variable)
    whole = {"url": "${input.url}", "exitCriteria": {"success": "true"}}
    based = {"url": "${input.base}/health?probe=${input.probe}", "exitCriteria": {"success": "true"}}

    # When they are bound, Then the URL values are kept; only the value inside the URL is encoded
    given = {"url": "https://h/a/b?c=d#e", "base": "https://h:8443/api", "probe": "a b"}
    assert bound("POLL", whole, **given)["url"] == "https://h/a/b?c=d#e"
    assert bound("POLL", based, **given)["url"] == "https://h:8443/api/health?probe=a%20b"


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=30))
def test_any_bound_value_stays_one_path_segment(value: str) -> None:
    # Given any value for the id in https://h/items/${input.id}/detail?x=1
    # When it is bound
    url = bound("REST", {"url": "https://h/items/${input.id}/detail?x=1"}, id=value)["url"]

    # Then the host, the segments, the query and the fragment are as written, and the segment reads as the value
    parts = urlsplit(url)
    assert (parts.netloc, parts.query, parts.fragment) == ("h", "x=1", "")
    segments = parts.path.split("/")
    assert len(segments) == 4 and segments[3] == "detail" and segments[2] not in (".", "..")
    assert unquote(segments[2]) == value


# -- headers: a value cannot start another header


def test_a_bound_header_value_with_a_line_break_fails_the_binding_naming_the_header() -> None:
    # Given a REST task sending a header bound to an input
    task_input = {"url": "https://h/x", "headers": {"X-Tag": "${input.tag}"}}

    # When the value holds a line break and a header of its own
    # Then binding fails, naming the header
    with pytest.raises(BindingError, match=r"headers\.X-Tag must not hold a line break"):
        bound("REST", task_input, tag="1.25\r\nX-Admin: yes")


def test_headers_that_are_one_binding_are_checked_too_and_a_written_one_at_save_time() -> None:
    # Given headers that are one binding to an object, When a value holds a line break, Then binding fails
    with pytest.raises(BindingError, match=r"headers\.X-A must not hold a line break"):
        bound("REST", {"url": "https://h/x", "headers": "${input.headers}"}, headers={"X-A": "a\nX-B: b"})

    # Given a header written with a line break, When the pipeline is saved, Then it is reported
    problems = check_task_input("REST", {"url": "https://h/x", "headers": {"X-A": "a\r\nX-B: b"}})
    assert [(problem.path, problem.message) for problem in problems] == [
        ("headers.X-A", "must not hold a line break (it would start another header)")
    ]


# -- numbers the save-time checks never saw


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pollCount", 1e30, f"pollCount must be at most {MAX_POLL_COUNT}, not 1e+30"),
        ("pollCount", "1e30", f"pollCount must be at most {MAX_POLL_COUNT}"),
        ("pollCount", 10**30, f"pollCount must be at most {MAX_POLL_COUNT}"),
        ("pollCount", "2.5", "pollCount must be a whole number above 0, not '2.5'"),
        ("pollIntervalSeconds", "inf", "pollIntervalSeconds must be a finite number, not 'inf'"),
        ("pollIntervalSeconds", float("inf"), "pollIntervalSeconds must be a finite number"),
        ("pollIntervalSeconds", "NaN", "pollIntervalSeconds must be a finite number, not 'NaN'"),
        ("pollIntervalSeconds", -1, "pollIntervalSeconds must be greater than 0, not -1"),
        ("pollIntervalSeconds", 1e9, "pollIntervalSeconds must be at most 86400"),
    ],
)
def test_a_bound_poll_number_past_its_limits_fails_the_task_naming_the_field(
    http: HttpClient, recorder: Recorder, field: str, value: object, message: str
) -> None:
    # Given a POLL whose count or interval is bound to an input
    task_input = {"url": f"{recorder.url}/job", "exitCriteria": {"success": "false"}, field: "${input.n}"}

    # When the input is a number no saved pipeline could hold
    # Then binding refuses it naming the field, with the very check a save applies, before any worker has it
    with pytest.raises(InputInvalid, match=re.escape(message)):
        bound("POLL", task_input, n=value)

    # And a worker handed such a value anyway (a message queued before the check) fails at once, polling nothing
    outcome = PollExecutor(http).execute(TaskCall("POLL", {**task_input, field: value}, {}))
    assert isinstance(outcome, Failed) and message in outcome.message, outcome
    assert recorder.paths == []


def test_a_bound_k8s_timeout_past_its_limit_fails_the_task_naming_it(cluster: KubeSim) -> None:
    # Given a VERIFY whose timeout is bound to an input
    task_input = {"action": "VERIFY", "namespace": "default", "deployment": "web", "timeout": "${input.timeout}"}

    # When the input is 1e30 seconds, Then binding refuses it naming the field
    with pytest.raises(InputInvalid, match=re.escape("timeout must be at most 604800, not 1e+30")):
        bound("K8S", task_input, timeout=1e30)

    # And a worker handed it anyway fails the task at once naming the field
    call = TaskCall("K8S", {**task_input, "timeout": 1e30}, {}, endpoints={"kubernetesServer": "dev"})
    outcome = K8sExecutor(lookup(endpoint(cluster.url, token=None))).execute(call)
    assert isinstance(outcome, Failed) and "timeout must be at most 604800, not 1e+30" in outcome.message, outcome


@pytest.mark.parametrize(
    ("task_type", "task_input", "path"),
    [
        ("POLL", {"url": "https://h/x", "exitCriteria": {"success": "true"}, "pollCount": 10**30}, "pollCount"),
        (
            "POLL",
            {"url": "https://h/x", "exitCriteria": {"success": "true"}, "pollIntervalSeconds": 1e9},
            "pollIntervalSeconds",
        ),
        ("K8S", {"action": "VERIFY", "namespace": "n", "deployment": "d", "timeout": 1e30}, "timeout"),
    ],
)
def test_the_same_limits_hold_a_written_number_when_the_pipeline_is_saved(
    task_type: str, task_input: Doc, path: str
) -> None:
    # When a number past its limit is written in a task, Then saving reports it at that field
    problems = check_task_input(task_type, task_input)
    assert [problem.path for problem in problems] == [path] and "must be at most" in problems[0].message


# -- values nested too deeply to hand to a worker


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_an_input_nested_hundreds_deep_is_refused_when_the_execution_is_triggered(api: ServedApp) -> None:
    # Given a pipeline with an input x
    pipeline = api.create(
        {
            "name": "Deep",
            "project": "e2e",
            "enabled": True,
            "input": {"x": ""},
            "stageOrder": ["S"],
            "stages": {
                "S": {
                    "taskOrder": ["C"],
                    "tasks": {"C": {"type": "Condition", "input": {"condition": "${input.x} == 1"}}},
                }
            },
        }
    )

    # When it is triggered with x nested 960 lists deep (still JSON that parses)
    body = '{"input": {"x": ' + deep(960) + "}}"
    answer = api.http.post(
        f"/api/pipelines/{pipeline['id']}/executions", content=body, headers={"Content-Type": "application/json"}
    )

    # Then the trigger is refused naming the input, and no execution was started
    assert answer.status_code == 400, answer.text
    details = answer.json()["error"]["details"]
    assert [detail["path"] for detail in details] == ["input.x"] and f"more than {MAX_NESTING}" in details[0]["message"]
    assert api.http.get("/api/executions", params={"pipeline": "Deep"}).json() == []


def test_a_bound_value_nested_too_deeply_fails_the_binding() -> None:
    # Given an earlier task's output nested deeper than a task's input may be
    scope = Scope(input={}, outputs={("Build", "Fetch"): {"responseJson": json.loads(deep(MAX_NESTING + 1))}})
    task = Task("T", "REST", {"url": "https://h/x", "payload": "${Build.Fetch.output.responseJson}"})

    # When a task binds it, Then binding fails naming the binding
    with pytest.raises(BindingError, match=r"'\$\{Build.Fetch.output.responseJson\}' is nested more than 64"):
        bind_task(task, scope)

    # ... while a value exactly as deep as allowed binds
    scope = Scope(input={}, outputs={("Build", "Fetch"): {"responseJson": json.loads(deep(MAX_NESTING))}})
    assert bind_task(task, scope).input["payload"] == json.loads(deep(MAX_NESTING))
