"""Fuzzing the API through the real server: whatever a client sends, the answer is never a 500.

`rollway serve` (waitress, with a token) runs as a process; every GET, POST, PUT and PATCH route of the app's
url_map gets generated requests, so a route added later is fuzzed without touching this file. Bodies carry
full Unicode (lone surrogates as `\\ud800` escapes, NUL, line separators), numbers JSON cannot hold in Python,
deep nesting and wrong types, inside otherwise valid documents as well as alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st

from orchestrator.settings import Settings

from rollway_testing import TOKEN, template_request
from serve_process import ServeProcess, rollway_env

METHODS = ("GET", "POST", "PUT", "PATCH")
KUBERNETES_YAML = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
PIPELINE = {
    "name": "fuzzed",
    "project": "fuzz",
    "enabled": True,
    "input": {"tag": ""},
    "stageOrder": ["Build"],
    "stages": {
        "Build": {"taskOrder": ["Check"], "tasks": {"Check": {"type": "Condition", "input": {"condition": "1 == 1"}}}}
    },
}
ENDPOINT = {
    "name": "dev",
    "project": "fuzz",
    "type": "kubernetes",
    "url": "https://127.0.0.1:9",
    "token": "t",
    "insecure": True,
}
VARIABLE = {"name": "db", "project": "fuzz", "type": "SECRET", "value": "hunter2", "description": "d"}
TRIGGER = {
    "name": "fuzzed",
    "project": "fuzz",
    "pipeline": "fuzzed",
    "secret": "a-secret-long-enough",
    "input": {"tag": "${body.after}"},
}
# Bodies the routes accept (by method and rule), which the fuzzer mutates to reach deeper than the first check.
SAMPLES: list[tuple[str, str, Any]] = [
    ("POST PUT", r"/api/pipelines(/<pipeline_id>)?", PIPELINE),
    ("POST PATCH", r"/api/endpoints(/<endpoint_id>)?", ENDPOINT),
    ("POST", r"/api/pipelines/<pipeline_id>/executions", {"input": {"tag": "v1"}, "comments": "fuzzing"}),
    ("PATCH", r"/api/pipelines/<pipeline_id>", {"enabled": True, "concurrency": 2, "description": "d"}),
    ("POST", r"/api/user-operations/.*", {"action": "approve", "comments": "ok"}),
    ("POST", r"/api/templates/cd/process", {"kubernetesYaml": KUBERNETES_YAML}),
    ("POST", r"/api/templates/cd", template_request(KUBERNETES_YAML, project="fuzz")),
    ("POST PATCH", r"/api/variables(/<variable_id>)?", VARIABLE),
    ("POST", r"/api/tokens", {"name": "bot", "project": "fuzz", "role": "viewer"}),
    ("POST", r"/api/triggers", TRIGGER),
]
FIELDS = sorted(
    {key for *_, sample in SAMPLES for key in sample} | {"type", "url", "kubeconfig", "caData", "role", "secret"}
)
QUERY_NAMES = ["project", "name", "pipeline", "status", "rollback", "limit"]


@dataclass(frozen=True)
class Route:
    """One route of the url_map with one of its methods."""

    method: str
    rule: str
    arguments: tuple[str, ...]


class Raw(str):
    """JSON text put into a generated body as is: numbers and nesting that a Python value cannot stand for."""


def to_json(value: Any) -> str:
    """JSON text of a generated value: surrogates as escapes, Raw pieces verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(key)}:{to_json(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(item) for item in value) + "]"
    return json.dumps(value)  # ensure_ascii: a lone surrogate becomes the escape \udXXX, NUL \u0000


tricky_pieces = st.sampled_from(["\x00", '"', "\\", "\r\n", "\u2028", "\ufeff", "${input.tag}", "😀", "é", "\x7f"])
pieces = st.one_of(st.characters(codec=None), st.characters(categories=("Cs",)), tricky_pieces)
texts = st.lists(pieces, max_size=24).map("".join)
raw_numbers = st.sampled_from(["1e999", "-1e999", "1" * 5000, "-0", "1.0e-400", "123456789012345678901234567890"])
deep = st.integers(2, 3000).map(lambda depth: Raw("[" * depth + "]" * depth))
deep_objects = st.integers(2, 1500).map(lambda depth: Raw('{"a":' * depth + "1" + "}" * depth))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    raw_numbers.map(Raw),
    deep,
    deep_objects,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.sampled_from(FIELDS), texts), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a sample a value can be put: its keys and indexes, at every depth."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of `value` with the value at `path` replaced by `new`."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {key: replaced(item, rest, new) if key == head else item for key, item in value.items()}
    return [replaced(item, rest, new) if index == head else item for index, item in enumerate(value)]


def spiked(value: Any, piece: str) -> Any:
    """A copy of `value` with `piece` added to every string in it, keys included (so names still match up)."""
    if isinstance(value, dict):
        return {spiked(key, piece): spiked(item, piece) for key, item in value.items()}
    if isinstance(value, list):
        return [spiked(item, piece) for item in value]
    return value + piece if isinstance(value, str) else value


def spiked_one(value: Any, path: tuple[Any, ...], piece: str) -> Any:
    """A copy of `value` with `piece` added to the one string at `path`, its type kept."""
    if not path:
        return value + piece if isinstance(value, str) else value
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {key: spiked_one(item, rest, piece) if key == head else item for key, item in value.items()}
    return [spiked_one(item, rest, piece) if index == head else item for index, item in enumerate(value)]


@st.composite
def mutated(draw: st.DrawFn, sample: Any) -> Any:
    """The sample with a piece of text added to one string (most often: types stay right, so the value goes
    deep), to every string, or with one value replaced or one field added."""
    piece = st.lists(pieces, min_size=1, max_size=3).map("".join)
    how = draw(st.sampled_from(["spike one", "spike one", "spike all", "replace", "add"]))
    if how == "spike one":
        strings = [path for path in paths(sample) if isinstance(at(sample, path), str)]
        return spiked_one(sample, draw(st.sampled_from(strings)), draw(piece))
    if how == "spike all":
        return spiked(sample, draw(piece))
    if how == "replace":
        return replaced(sample, draw(st.sampled_from(paths(sample)[1:])), draw(st.one_of(texts, values)))
    return sample | {draw(st.one_of(st.sampled_from(FIELDS), texts)): draw(values)}


def at(value: Any, path: tuple[Any, ...]) -> Any:
    """The value at `path` in `value`."""
    for step in path:
        value = value[step]
    return value


@st.composite
def bodies(draw: st.DrawFn, route: Route) -> bytes:
    """A request body for the route: its sample mutated, an object of known fields, anything, or raw bytes."""
    samples = [
        sample
        for methods, rule, sample in SAMPLES
        if route.method in methods.split() and re.fullmatch(rule, route.rule)
    ] or [sample for *_, sample in SAMPLES]
    value = draw(
        st.one_of(
            st.sampled_from(samples).flatmap(mutated),
            st.dictionaries(st.sampled_from(FIELDS), values, max_size=6),
            values,
        )
    )
    raw = st.one_of(
        st.binary(max_size=64),
        st.sampled_from(
            [b"", b"\x00", b"{\x00}", b"\xff\xfe{}", b'{"name": "\xed\xa0\x80"}', b"a: &a [*a]", b"[" * 100_000]
        ),
    )
    # One body in ten is raw bytes: enough to keep them covered, few enough to leave the rest to JSON.
    return draw(raw) if draw(st.integers(0, 9)) == 0 else to_json(value).encode()


@dataclass
class Target:
    """The served API, its routes and the ids of objects that exist in it."""

    url: str
    routes: list[Route]
    known_ids: dict[str, str]


def discover_routes(settings: Settings) -> list[Route]:
    """The GET, POST, PUT and PATCH routes of the app, read from its url_map."""
    from api.app import create_app

    app = create_app(settings)
    try:
        return [
            Route(method, rule.rule, tuple(sorted(rule.arguments)))
            for rule in app.url_map.iter_rules()
            for method in sorted(rule.methods or ())
            if method in METHODS
        ]
    finally:
        app.extensions["rollway"].store.dispose()


def seed(http: httpx.Client) -> dict[str, str]:
    """A pipeline, an execution of it, an endpoint, a variable, a trigger and a token, so id arguments can name
    things that exist (by argument)."""
    pipeline = http.post("/api/pipelines", json=PIPELINE)
    assert pipeline.status_code == 201, pipeline.text
    execution = http.post(f"/api/pipelines/{pipeline.json()['id']}/executions", json={"input": {"tag": "v1"}})
    assert execution.status_code == 202, execution.text
    made = {"endpoint": ENDPOINT, "variable": VARIABLE, "trigger": TRIGGER}
    made_ids = {}
    for kind, body in made.items():
        answer = http.post(f"/api/{kind}s", json=body)
        assert answer.status_code == 201, answer.text
        made_ids[f"{kind}_id"] = answer.json()["id"]
    token = http.post("/api/tokens", json={"name": "bot", "project": "fuzz", "role": "viewer"})
    assert token.status_code == 201, token.text
    return made_ids | {
        "pipeline_id": pipeline.json()["id"],
        "execution_id": execution.json()["executionId"],
        "token_id": token.json()["id"],
        "name": "fuzzed",
    }


@pytest.fixture
def target(settings: Settings, tmp_path: Path) -> Iterator[Target]:
    env = rollway_env(
        ROLLWAY_DATABASE_URL=settings.database_url,
        ROLLWAY_REDIS_URL=settings.redis_url or "",
        ROLLWAY_API_TOKEN=TOKEN,
        ROLLWAY_SECRET_KEY=settings.secret_key or "",
    )
    served = ServeProcess(env, tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            known = seed(http)
        yield Target(served.url, discover_routes(settings), known)
    finally:
        served.stop()
        if "Traceback" in served.log():
            print(served.log()[-20000:])


def encoded(text: str) -> str:
    """Percent-encoded UTF-8, lone surrogates included (as the bytes a careless client would send)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def check_answer(answer: httpx.Response, what: str) -> None:
    """No 500, and an error is the JSON error shape naming a message (a page's error is a page saying it)."""
    assert answer.status_code < 500, f"{what} -> {answer.status_code} {answer.text[:500]}"
    if answer.status_code >= 400 and answer.headers.get("Content-Type", "").startswith("text/html"):
        assert not answer.request.url.path.startswith("/api/"), f"{what}: the API answered HTML"
        assert "<h1>" in answer.text and '<p class="problem">' in answer.text, what
    elif answer.status_code >= 400:
        error = answer.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], what


def test_no_generated_request_to_any_route_gets_a_500(target: Target) -> None:
    # Given the served API with a pipeline, an execution and an endpoint, and every route of its url_map
    assert {route.rule for route in target.routes} >= {"/api/pipelines", "/api/endpoints/<endpoint_id>"}
    content_types = st.sampled_from(["application/json", "application/yaml", "text/plain", "", "application/json; x=1"])

    def argument(name: str) -> st.SearchStrategy[str]:
        # Mostly the id of an object that exists (so the request gets past the lookup), else any id, else anything.
        right = [target.known_ids[name]] * 6 if name in target.known_ids else []
        known = st.sampled_from([*right, *target.known_ids.values()])
        return st.integers(0, 9).flatmap(lambda roll: known if roll < 8 else texts.filter(bool))

    queries = st.dictionaries(st.one_of(st.sampled_from(QUERY_NAMES), texts), texts, max_size=3)
    client = httpx.Client(base_url=target.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

    # A route that reads a body gets three times the requests of one that does not.
    weighted = [route for route in target.routes for _ in range(1 if route.method == "GET" else 3)]

    @fuzzing(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(weighted), st.data())
    def send(route: Route, data: st.DataObject) -> None:
        # When a generated request reaches it
        path = route.rule
        for name in route.arguments:
            path = re.sub(rf"<(\w+:)?{name}>", encoded(data.draw(argument(name))), path)
        query = "&".join(f"{encoded(key)}={encoded(value)}" for key, value in data.draw(queries).items())
        headers = {"Content-Type": data.draw(content_types)} if route.method != "GET" else {}
        body = data.draw(bodies(route)) if route.method != "GET" else b""
        answer = client.request(route.method, f"{path}?{query}" if query else path, content=body, headers=headers)

        # Then it is answered without a 500, errors in the JSON error shape
        check_answer(answer, f"{route.method} {unquote(path)} {body[:300]!r}")

    try:
        send()
    finally:
        client.close()


@fuzzing(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@example(name='Déploiement "prod" 🚀')
@example(name='a\\"; filename=evil.sh')
@example(name="Übung ΑΒΓ 発布")
@given(name=st.lists(st.one_of(st.characters(codec=None), tricky_pieces), min_size=1).map("".join))
def check_export_of(http: httpx.Client, name: str) -> None:
    """A pipeline of that name (if the API takes the name) exports with a safe Content-Disposition."""
    # When a pipeline with that name is created and exported
    document = to_json(PIPELINE | {"name": name}).encode()
    created = http.post("/api/pipelines", content=document, headers={"Content-Type": "application/json"})
    check_answer(created, f"create {name!r}")
    if created.status_code != 201:
        return
    answer = http.get(f"/api/pipelines/{created.json()['id']}/export")
    http.delete(f"/api/pipelines/{created.json()['id']}")

    # Then the export is a download whose header holds one attachment: an ASCII fallback and the exact name
    assert answer.status_code == 200, answer.text
    disposition = answer.headers["Content-Disposition"]
    ascii_fallback, utf8 = r"\"([ !#-\[\]-~]*)\"", r"UTF-8''([A-Za-z0-9%._~-]+)"
    match = re.fullmatch(rf"attachment; filename={ascii_fallback}; filename\*={utf8}", disposition)
    assert match is not None, disposition
    assert unquote(match[2]) == f"{name}.yaml"


def test_an_export_of_any_pipeline_name_has_a_safe_content_disposition(target: Target) -> None:
    # Given the served API, and names with quotes, backslashes, non-Latin-1 letters and line separators
    with httpx.Client(base_url=target.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        # When and Then: each is created and exported, and so are generated names
        check_export_of(http)


def test_a_lone_surrogate_in_a_field_is_a_400_naming_the_field(target: Target) -> None:
    # Given bodies with half a surrogate pair (as the JSON escape \ud800) in a string or a key
    pipeline_id, endpoint_id = target.known_ids["pipeline_id"], target.known_ids["endpoint_id"]
    cases = [
        ("POST", f"/api/pipelines/{pipeline_id}/executions", '{"comments": "rolled \\ud800"}', "comments"),
        ("POST", f"/api/pipelines/{pipeline_id}/executions", '{"input": {"tag": "\\udfff"}}', "input.tag"),
        ("PATCH", f"/api/pipelines/{pipeline_id}", '{"description": "\\ud800"}', "description"),
        ("PATCH", f"/api/endpoints/{endpoint_id}", '{"name": "dev\\ud800"}', "name"),
        ("POST", "/api/pipelines", to_json(PIPELINE | {"name": "x\ud800"}), "name"),
        ("POST", "/api/pipelines", to_json(PIPELINE | {"input": {"\ud800": ""}}), "input.\\ud800"),
    ]
    with httpx.Client(base_url=target.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
        for method, path, body, field in cases:
            # When it is sent
            answer = http.request(method, path, content=body.encode(), headers={"Content-Type": "application/json"})

            # Then it is refused as bad input, naming the field
            assert answer.status_code == 400, (path, body, answer.text)
            error = answer.json()["error"]
            assert field in error["message"] or field in [detail["path"] for detail in error["details"]], error
            assert "surrogate" in json.dumps(error)
