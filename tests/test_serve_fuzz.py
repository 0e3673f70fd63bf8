"""Schema-driven fuzzing of ``banditfleet serve``: no input produces a 5xx, and
every refused request leaves the state exactly as it was.

Requests are generated from the server's own OpenAPI document
(``GET /openapi.json``): every operation's body from its JSON schema
(:func:`from_schema` below: objects, arrays, strings, integers, numbers and
booleans, with their bounds, optional fields left out at random), mixed with near-valid bodies (a valid body with one
field replaced by a value of any JSON type) and raw bytes, and query strings
from text. The state compared is every job's full snapshot and the journal's
length: a refused request must not have journaled anything either.
"""

from __future__ import annotations

import json
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypothesis_budget import examples
from serve_support import job_spec

starlette_testclient = pytest.importorskip("starlette.testclient")

from banditfleet.serve.edge import build_app  # noqa: E402

KNOWN = ["test-0", "test-1"]


@pytest.fixture(scope="module")
def server():
    d = tempfile.TemporaryDirectory(prefix="bf-fuzz-")
    app = build_app(d.name + "/state", fsync="never", max_body_bytes=4096, microbatch=True)
    client = starlette_testclient.TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    for job_id in KNOWN:
        assert client.post("/jobs", content=json.dumps(job_spec(job_id))).status_code == 201
    # Give the jobs trials in several states.
    for job_id in KNOWN:
        t = client.get("/jobs/batch_size", params={"job_id": job_id}).json()
        client.post("/report", content=json.dumps({**t, "time": 10.0, "energy": 100.0, "metric": 0.9, "current_epoch": 1}))
        client.get("/jobs/batch_size", params={"job_id": job_id})
    schema = client.get("/openapi.json").json()
    yield app, client, schema
    client.__exit__(None, None, None)
    d.cleanup()


def _snapshot(app):
    st_ = app.state.bf.state
    return {k: st_.job_state(k) for k in sorted(st_.jobs)}, st_.folder.journal_bytes


def _inline(schema, components):
    """The schema with every ``#/components/schemas/X`` reference replaced by X."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(components[schema["$ref"].rsplit("/", 1)[1]], components)
        return {k: _inline(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_inline(v, components) for v in schema]
    return schema


def from_schema(schema):
    """A hypothesis strategy of JSON values valid under a (small) JSON schema."""
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of(*(from_schema(s) for s in schema.get("anyOf", schema.get("oneOf"))))
    t = schema.get("type")
    if t == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        if not props:
            return st.dictionaries(st.text(max_size=6), st.integers(), max_size=3)
        return st.fixed_dictionaries({k: from_schema(v) for k, v in props.items() if k in required},
                                     optional={k: from_schema(v) for k, v in props.items() if k not in required})
    if t == "array":
        return st.lists(from_schema(schema.get("items", {})), max_size=4)
    if t == "string":
        return st.one_of(st.sampled_from(KNOWN), st.text(max_size=10))
    if t == "integer":
        lo = schema.get("minimum", schema.get("exclusiveMinimum", -(2**64)) + (1 if "exclusiveMinimum" in schema else 0))
        return st.integers(min_value=lo, max_value=2**64) | st.sampled_from([1, 2, 1024, 32])
    if t == "number":
        return st.floats(allow_nan=False, allow_infinity=False, min_value=schema.get("minimum"))
    if t == "boolean":
        return st.booleans()
    return JSON


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)

VALID = {
    "/jobs": job_spec("test-9"),
    "/report": {"job_id": "test-0", "batch_size": 1024, "trial_number": 2, "time": 1.0, "energy": 2.0, "metric": 0.7,
                "current_epoch": 1},
    "/trials": {"job_id": "test-1", "batch_size": 1024, "trial_number": 2},
    "/v1/jobs/batch_size": {"job_ids": KNOWN},
    "/v1/reports": {"job_ids": ["test-0"], "batch_sizes": [1024], "trial_numbers": [2], "time": [1.0], "energy": [2.0],
                    "metric": [0.7], "current_epoch": [1]},
    "/v1/trials/end": {"job_ids": ["test-1"], "batch_sizes": [1024], "trial_numbers": [2]},
    "/v1/jobs/delete": {"job_ids": ["test-0"]},
    "/v1/jobs/reset": {"job_ids": ["test-1"]},
}


def _near_valid(path):
    """A valid body with one field, or one element of an array field, replaced by any JSON value."""
    base = VALID[path]
    whole = st.tuples(st.sampled_from(sorted(base)), JSON).map(lambda kv: {**base, kv[0]: kv[1]})
    arrays = sorted(k for k, v in base.items() if isinstance(v, list) and v)
    if not arrays:
        return whole

    def one_element(kv):
        key, value = kv
        col = list(base[key])
        col[0] = value
        return {**base, key: col}

    return whole | st.tuples(st.sampled_from(arrays), JSON).map(one_element)


def _operations(schema):
    ops = []
    components = schema["components"]["schemas"]
    for path, methods in sorted(schema["paths"].items()):
        for method, op in sorted(methods.items()):
            ops.append((path, method.upper(), op, components))
    return ops


def _body_strategy(path, op, components):
    body = op.get("requestBody")
    if body is None:
        return st.none()
    s = _inline(body["content"]["application/json"]["schema"], components)
    choices = [from_schema(s).map(json.dumps), JSON.map(json.dumps),
               st.binary(max_size=64).map(lambda b: b)]
    if path in VALID:
        choices.append(_near_valid(path).map(json.dumps))
    return st.one_of(*choices)


def _query_strategy(op):
    params = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
    if not params:
        return st.just({})
    value = st.one_of(st.sampled_from(KNOWN + ["test-9", ""]), st.text(max_size=12))
    return st.one_of(st.just({}), st.fixed_dictionaries({p: value for p in params}),
                     st.dictionaries(st.text(max_size=4), value, max_size=2))


def test_every_operation_is_in_the_schema(server):
    _, _, schema = server
    paths = {(p, m) for p, m, _, _ in _operations(schema)}
    for path in VALID:
        assert any(p == path for p, _ in paths), path
    assert ("/jobs/batch_size", "GET") in paths and ("/jobs", "DELETE") in paths


@pytest.mark.parametrize("index", range(12))
def test_fuzz_operation_never_5xx_and_refusals_change_nothing(server, index):
    app, client, schema = server
    ops = _operations(schema)
    if index >= len(ops):
        pytest.skip("fewer operations")
    path, method, op, components = ops[index]

    @settings(max_examples=examples(25), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.filter_too_much, HealthCheck.data_too_large])
    @given(body=_body_strategy(path, op, components), query=_query_strategy(op),
           ctype=st.sampled_from([None, "application/json", "text/plain"]))
    def run(body, query, ctype):
        before = _snapshot(app)
        headers = {} if ctype is None else {"content-type": ctype}
        kwargs = {"params": query, "headers": headers}
        if body is not None:
            kwargs["content"] = body if isinstance(body, bytes) else body.encode()
        r = client.request(method, path, **kwargs)
        assert r.status_code < 500, (method, path, body, query, r.status_code, r.text[:500])
        if r.status_code >= 400:
            assert _snapshot(app) == before, (method, path, body, query, r.status_code, r.text[:300])
            if path != "/metrics":
                assert isinstance(r.json(), dict)
        # Keep both known jobs registered for the next example.
        for job_id in KNOWN:
            if job_id not in app.state.bf.state.jobs:
                client.post("/jobs", content=json.dumps(job_spec(job_id)))

    run()
