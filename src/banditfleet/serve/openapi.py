"""The OpenAPI 3 document of ``banditfleet serve`` (served at ``GET /openapi.json``).

The Zeus-protocol bodies come from the protocol's pydantic models
(:mod:`banditfleet.serve.zeus_protocol`); the ``/v1/`` batch bodies are
written out here. The test suite fuzzes the server from this document
(tests/test_serve_fuzz.py), so it must describe every endpoint.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

__all__ = ["openapi_schema"]

_STR_ARRAY = {"type": "array", "items": {"type": "string"}}
_INT_ARRAY = {"type": "array", "items": {"type": "integer"}}
_NUM_ARRAY = {"type": "array", "items": {"type": "number"}}
_BOOL_ARRAY = {"type": "array", "items": {"type": "boolean"}}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required}


def _model(model: Any) -> dict[str, Any]:
    schema = copy.deepcopy(model.schema(ref_template="#/components/schemas/{model}"))
    schema.pop("definitions", None)
    return schema


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def _answer(ref: str | None, description: str = "OK") -> dict[str, Any]:
    if ref is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


_ERRORS = {"400": _answer("Message", "Refused (unknown job or trial, ...)"),
           "401": _answer("Message", "Missing or wrong bearer token"),
           "404": _answer("Message", "Unknown job or trial"), "409": _answer("Message", "Conflict"),
           "413": _answer("Message", "Body too large"), "422": {"description": "Invalid body or parameters"}}


def _op(summary: str, body: str | None, answer: str | None, query: list[str] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": _answer(answer), **_ERRORS}}
    if body is not None:
        op["requestBody"] = _json_body(body)
    if query:
        op["parameters"] = [{"name": q, "in": "query", "required": True, "schema": {"type": "string"}} for q in query]
    return op


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    from banditfleet.serve.zeus_protocol import JobSpecFromClient, ReportResponse, TrainingResult, TrialId

    components = {
        "JobSpecFromClient": _model(JobSpecFromClient),
        "TrialId": _model(TrialId),
        "TrainingResult": _model(TrainingResult),
        "ReportResponse": _model(ReportResponse),
        "Message": _obj({"message": {"type": "string"}}),
        "BatchJobs": _obj({"job_ids": _STR_ARRAY}),
        "BatchTrials": _obj({"job_ids": _STR_ARRAY, "batch_sizes": _INT_ARRAY, "trial_numbers": _INT_ARRAY}),
        "BatchReports": _obj({"job_ids": _STR_ARRAY, "batch_sizes": _INT_ARRAY, "trial_numbers": _INT_ARRAY,
                              "time": _NUM_ARRAY, "energy": _NUM_ARRAY, "metric": _NUM_ARRAY,
                              "current_epoch": _INT_ARRAY}),
        "BatchReportAnswers": _obj({"stop_train": _BOOL_ARRAY, "converged": _BOOL_ARRAY, "messages": _STR_ARRAY}),
        "BatchEnded": _obj({"failed": _BOOL_ARRAY}),
        "Count": {"type": "object", "additionalProperties": {"type": "integer"}},
        "Health": _obj({"status": {"type": "string"}, "checks": {"type": "object"}}),
    }
    paths = {
        "/jobs": {
            "post": _op("Register a job (201 new, 200 identical, 409 different)", "JobSpecFromClient", "JobSpecFromClient"),
            "delete": _op("Delete a job", None, None, ["job_id"]),
        },
        "/jobs/batch_size": {"get": _op("The next trial of a job", None, "TrialId", ["job_id"])},
        "/report": {"post": _op("Report a training result", "TrainingResult", "ReportResponse")},
        "/trials": {"patch": _op("End a trial", "TrialId", None)},
        "/v1/jobs/batch_size": {"post": _op("The next trial of many jobs", "BatchJobs", "BatchTrials")},
        "/v1/reports": {"post": _op("Many training results", "BatchReports", "BatchReportAnswers")},
        "/v1/trials/end": {"post": _op("End many trials", "BatchTrials", "BatchEnded")},
        "/v1/jobs/delete": {"post": _op("Delete many jobs", "BatchJobs", "Count")},
        "/v1/jobs/reset": {"post": _op("Reset many jobs to just registered", "BatchJobs", "Count")},
        "/healthz": {"get": _op("Health", None, "Health")},
        "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4)",
                             "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "banditfleet serve", "version": "1",
                 "description": "Zeus 0.16.0's batch-size-optimizer protocol and banditfleet's /v1/ batch API."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def openapi_schema() -> dict[str, Any]:
    """A copy of the OpenAPI 3.0 document."""
    return copy.deepcopy(_schema())
