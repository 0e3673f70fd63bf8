"""The wire protocol of Zeus 0.16.0's batch-size-optimizer server.

Endpoints (paths, methods, status codes) and the request and response bodies
that ``zeus.optimizer.batch_size.client.BatchSizeOptimizer`` sends and reads.
The models are pydantic *v1* models (``pydantic.v1`` under pydantic 2), as
Zeus's are, so coercion (``"64"`` -> 64, ``1.9`` -> 1 for an int field),
defaults, unknown fields (ignored) and the error messages of the validators
are the same as the reference's. Validation errors are answered the way
FastAPI answers them (status 422, ``{"detail": [{"loc": ["body", ...],
"msg": ..., "type": ...}]}``); errors of the server's own logic are
``{"message": ...}`` with the reference's status codes (see
:mod:`banditfleet.serve.zeus_state`).

banditfleet refuses a few inputs at validation that the reference accepts and
then fails on with status 500 (see docs/compat.md, "The Zeus server
protocol"): duplicate or non-positive batch sizes, ``num_pruning_rounds=0``,
non-finite numbers, and ``mab_seed`` outside ``[0, 2**63)``.
"""

from __future__ import annotations

import email.message
import json
import math
from typing import Any, Optional

try:  # orjson parses a request body several times faster than json; optional
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - the serve extra installs it
    _orjson_loads = None

try:  # pydantic 2 ships the v1 API as pydantic.v1
    from pydantic.v1 import BaseModel, Field, ValidationError, root_validator, validator
except ImportError:  # pragma: no cover - pydantic 1
    from pydantic import BaseModel, Field, ValidationError, root_validator, validator  # type: ignore[no-redef]

__all__ = [
    "REGISTER_JOB_URL",
    "DELETE_JOB_URL",
    "GET_NEXT_BATCH_SIZE_URL",
    "REPORT_RESULT_URL",
    "REPORT_END_URL",
    "JobParams",
    "GpuConfig",
    "JobSpec",
    "JobSpecFromClient",
    "TrialId",
    "TrainingResult",
    "ReportResponse",
    "ProtocolError",
    "parse_body",
    "validate_body",
    "query_param",
    "read_json",
    "fast_trial_id",
    "fast_training_result",
    "fast_job_id_query",
]

REGISTER_JOB_URL = "/jobs"
DELETE_JOB_URL = "/jobs"
GET_NEXT_BATCH_SIZE_URL = "/jobs/batch_size"
REPORT_RESULT_URL = "/report"
REPORT_END_URL = "/trials"

_INT63 = 1 << 63


class ProtocolError(Exception):
    """A request refused with ``status`` and the JSON ``body`` to answer it with."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _finite(name: str, v: Optional[float]) -> Optional[float]:
    if v is not None and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, not {v}")
    return v


class JobParams(BaseModel):
    """A job's optimizer settings (Zeus's ``JobParams``; the same fields, defaults and rules).

    Costs are energy-time costs: ``eta_knob * energy + (1 - eta_knob) * max_power * time``
    (joules, seconds, watts).
    """

    job_id: str
    job_id_prefix: str
    batch_sizes: list[int]
    default_batch_size: int = Field(gt=0)
    eta_knob: float = 0.5
    beta_knob: Optional[float] = 2.0
    target_metric: float = 0.50
    higher_is_better_metric: bool = True
    max_epochs: int = Field(default=100, gt=0)
    num_pruning_rounds: int = Field(default=2, ge=0)
    window_size: int = 0

    mab_prior_mean: float = 0.0
    mab_prior_precision: float = 0.0
    mab_num_explorations: int = Field(default=2, ge=0)
    mab_seed: Optional[int] = None

    @validator("batch_sizes")
    def _validate_batch_sizes(cls, bs: list[int]) -> list[int]:
        if bs is not None and len(bs) > 0:
            bs.sort()
            # banditfleet: the reference answers 500 later for these.
            if any(b <= 0 for b in bs):
                raise ValueError(f"Batch Sizes = {bs} must all be positive")
            if len(set(bs)) != len(bs):
                raise ValueError(f"Batch Sizes = {bs} has duplicates")
            return bs
        raise ValueError(f"Batch Sizes = {bs} is empty")

    @validator("eta_knob")
    def _validate_eta_knob(cls, v: float) -> float:
        if v < 0 or v > 1 or math.isnan(v):
            raise ValueError("eta_knob should be in range [0,1]")
        return v

    @validator("beta_knob")
    def _validate_beta_knob(cls, v: Optional[float]) -> Optional[float]:
        if v is None or (v > 0 and math.isfinite(v)):
            return v
        if v is not None and v > 0:  # inf: banditfleet refuses (the reference cannot echo it)
            raise ValueError(f"Invalid beta_knob({v}): must be finite")
        raise ValueError(
            f"Invalid beta_knob({v}). To disable early stop, set beta_knob = None to disable or positive value."
        )

    @validator("target_metric", "mab_prior_mean", "mab_prior_precision")
    def _validate_finite(cls, v: float, field: Any) -> float:
        return _finite(field.name, v)  # type: ignore[return-value]

    @validator("num_pruning_rounds")
    def _validate_rounds(cls, v: int) -> int:
        if v == 0:  # the reference registers it, then answers 500 to every prediction
            raise ValueError("num_pruning_rounds must be at least 1 (with 0 no batch size would have observations)")
        return v

    @validator("mab_seed")
    def _validate_seed(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and not 0 <= v < _INT63:
            raise ValueError(f"mab_seed({v}) must be in [0, 2**63)")
        return v

    @root_validator(skip_on_failure=True)
    def _check_default_batch_size(cls, values: dict[str, Any]) -> dict[str, Any]:
        bs = values["default_batch_size"]
        bss = values["batch_sizes"]
        if bs not in bss:
            raise ValueError(f"Default BS({bs}) not in batch_sizes({bss}).")
        return values


class GpuConfig(BaseModel):
    """The GPUs of a training run: their summed maximum power limit (watts), count and model."""

    max_power: float = Field(gt=0)
    number_of_gpus: int = Field(gt=0)
    gpu_model: str

    @validator("gpu_model")
    def _validate_gpu_model(cls, v: str) -> str:
        if v is None or v == "":
            raise ValueError(f"Invalid gpu_model({v}). Shouldn't be empty.")
        return v

    @validator("max_power")
    def _validate_max_power(cls, v: float) -> float:
        return _finite("max_power", v)  # type: ignore[return-value]


class JobSpec(JobParams):
    """What a user registers; ``job_id`` may be None (the server then makes one from the prefix)."""

    job_id: Optional[str]

    @root_validator(skip_on_failure=True)
    def _check_job_id(cls, values: dict[str, Any]) -> dict[str, Any]:
        job_id = values.get("job_id")
        prefix: str = values["job_id_prefix"]
        if job_id is not None and not job_id.startswith(prefix):
            raise ValueError(f"Job_id({job_id}) does not start with prefix({prefix}).")
        return values


class JobSpecFromClient(JobSpec, GpuConfig):
    """The body of ``POST /jobs``, and its response (the spec echoed, with the job id set)."""


class TrialId(BaseModel):
    """One training run of a job: the body of ``PATCH /trials``, the response of ``GET /jobs/batch_size``."""

    job_id: str
    batch_size: int
    trial_number: int


class TrainingResult(TrialId):
    """The body of ``POST /report``: cumulative time (s) and energy (J) so far, the
    validation metric after ``current_epoch`` epochs."""

    time: float
    energy: float
    metric: float
    current_epoch: int

    @validator("time", "energy", "metric")
    def _validate_finite(cls, v: float, field: Any) -> float:
        return _finite(field.name, v)  # type: ignore[return-value]


class ReportResponse(BaseModel):
    """The response of ``POST /report``."""

    stop_train: bool
    converged: bool
    message: str


def _json_body(raw: bytes, content_type: str | None) -> Any:
    """The request body as FastAPI reads it: JSON when the content type is absent or
    JSON, else the raw bytes; ``None`` when empty."""
    if not raw:
        return None
    if content_type:
        msg = email.message.Message()
        msg["content-type"] = content_type
        if msg.get_content_maintype() != "application":
            return raw
        sub = msg.get_content_subtype()
        if not (sub == "json" or sub.endswith("+json")):
            return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            422,
            {"detail": [{"type": "json_invalid", "loc": ["body", exc.pos], "msg": "JSON decode error",
                         "input": {}, "ctx": {"error": exc.msg}}]},
        ) from None
    except UnicodeDecodeError:
        raise ProtocolError(
            422,
            {"detail": [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error",
                         "input": {}, "ctx": {"error": "body is not UTF-8"}}]},
        ) from None


def _errors(exc: ValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        item: dict[str, Any] = {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        if "ctx" in err:
            item["ctx"] = err["ctx"]
        out.append(item)
    return out


def parse_body(model: type[BaseModel], raw: bytes, content_type: str | None) -> Any:
    """Validate a request body against ``model`` as Zeus's FastAPI server does.

    Raises :class:`ProtocolError` (422) with FastAPI's error body.
    """
    return validate_body(model, read_json(raw, content_type))


def validate_body(model: type[BaseModel], body: Any) -> Any:
    """Validate an already decoded JSON body (None: empty) against ``model``; see :func:`parse_body`."""
    if body is None:
        raise ProtocolError(422, {"detail": [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]})
    if not isinstance(body, dict):
        raise ProtocolError(422, {"detail": [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]})
    try:
        return model.parse_obj(body)
    except ValidationError as exc:
        raise ProtocolError(422, {"detail": _errors(exc)}) from None
    except OverflowError:  # pydantic v1's float() of a huge JSON integer (the reference answers 500)
        raise ProtocolError(422, {"detail": [{"loc": ["body"], "msg": "a number is too large for a float field",
                                              "type": "value_error.number.too_large"}]}) from None


def query_param(params: Any, name: str) -> str:
    """A required string query parameter (the last one when repeated), or 422 as FastAPI answers."""
    value = params.get(name)
    if value is None:
        raise ProtocolError(422, {"detail": [{"type": "missing", "loc": ["query", name], "msg": "Field required", "input": None}]})
    return value


# ------------------------------------------------------------------ fast paths
# The per-request path of ``banditfleet serve`` (:mod:`banditfleet.serve.app`)
# decodes and validates the common, already canonical bodies without pydantic;
# anything else falls back to :func:`parse_body`, so coercions, refusals and
# their messages stay pydantic-v1's. Each fast function returns exactly what the
# slow path returns for the inputs it accepts, and None for every other input.


def read_json(raw: bytes, content_type: str | None) -> Any:
    """The request body as :func:`parse_body` reads it (raises :class:`ProtocolError` 422 alike).

    A body without a content type or with exactly ``application/json`` is
    parsed by orjson when it can (its successful parses equal :func:`json.loads`'s:
    it refuses NaN, huge integers, lone surrogates and non-UTF-8 input, which
    then take the stdlib path with its error messages).
    """
    if raw and _orjson_loads is not None and (content_type is None or content_type == "application/json"):
        try:
            return _orjson_loads(raw)
        except ValueError:
            pass
    return _json_body(raw, content_type)


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool and float go through pydantic (coercion, messages)


_EXACT_INT = 1 << 53


def _is_finite_number(v: Any) -> bool:
    t = type(v)
    return (t is float and math.isfinite(v)) or (t is int and -_EXACT_INT <= v <= _EXACT_INT)


def fast_trial_id(body: Any) -> Optional[tuple[str, int, int]]:
    """``(job_id, batch_size, trial_number)`` of a ``TrialId`` body already of the right
    types (a str and two ints), as ``TrialId.parse_obj`` gives them; else None."""
    if type(body) is not dict:
        return None
    job_id = body.get("job_id")
    bs = body.get("batch_size")
    tn = body.get("trial_number")
    if type(job_id) is str and _is_int(bs) and _is_int(tn):
        return job_id, bs, tn
    return None


def fast_training_result(body: Any) -> Optional[dict[str, Any]]:
    """``TrainingResult.parse_obj(body).dict()`` for a body already of the right types
    (str, ints, finite numbers; ints in number fields become floats, unknown fields
    are dropped), in the model's field order; else None."""
    if type(body) is not dict:
        return None
    job_id = body.get("job_id")
    bs = body.get("batch_size")
    tn = body.get("trial_number")
    t = body.get("time")
    e = body.get("energy")
    m = body.get("metric")
    ep = body.get("current_epoch")
    if (type(job_id) is str and _is_int(bs) and _is_int(tn) and _is_int(ep) and _is_finite_number(t)
            and _is_finite_number(e) and _is_finite_number(m)):
        return {"job_id": job_id, "batch_size": bs, "trial_number": tn, "time": float(t), "energy": float(e),
                "metric": float(m), "current_epoch": ep}
    return None


_QUERY_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def fast_job_id_query(query_string: bytes) -> Optional[str]:
    """The ``job_id`` of a query string that is exactly ``job_id=<unreserved characters>``
    (what Starlette's ``query_params["job_id"]`` gives for it); None for any other
    query string (the caller then parses it in full)."""
    if query_string.startswith(b"job_id="):
        value = query_string[7:]
        if value and _QUERY_SAFE.issuperset(value):
            return value.decode("ascii")
    return None
