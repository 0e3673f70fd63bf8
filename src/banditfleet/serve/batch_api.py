"""The batch API of ``banditfleet serve`` for schedulers, versioned under ``/v1/``.

One request carries many jobs, as columns (parallel JSON arrays), and one
response answers them in the same order:

=====  ======================  =================================================  ==========================================
verb   path                    request columns                                    response columns
=====  ======================  =================================================  ==========================================
POST   ``/v1/jobs/batch_size``  ``job_ids``                                        ``job_ids``, ``batch_sizes``, ``trial_numbers``
POST   ``/v1/reports``         ``job_ids``, ``batch_sizes``, ``trial_numbers``,   ``stop_train``, ``converged``, ``messages``
                               ``time``, ``energy``, ``metric``, ``current_epoch``
POST   ``/v1/trials/end``      ``job_ids``, ``batch_sizes``, ``trial_numbers``    ``failed`` (the trial had not reported)
POST   ``/v1/jobs/delete``     ``job_ids``                                        ``deleted`` (a count)
POST   ``/v1/jobs/reset``      ``job_ids``                                        ``reset`` (a count)
=====  ======================  =================================================  ==========================================

Each entry means what the matching Zeus-protocol call means (``GET
/jobs/batch_size``, ``POST /report``, ``PATCH /trials``, ``DELETE /jobs``),
applied in array order, so a job that appears twice in one batch sees its own
earlier entry (two predictions are two concurrent trials). ``reset`` forgets
a job's trials and what it learned and keeps its registration (its spec, and
its ``mab_seed`` stream from the start; an unseeded job gets a new seed):
trial numbers start again at 1.

**Validation first.** The whole batch is checked before anything changes:
the body's shape and every value's type (strict JSON types: integers are
JSON integers, numbers finite, ``time`` and ``energy`` >= 0), every job and
trial known, no job twice in a delete or reset, and no prediction that
would be refused (a job whose pruning found no converged batch size). The
first problem is answered with 4xx and ``{"message", "index", "job_id",
"field", "value"}`` naming the entry, and no state has changed: 422 for a
malformed body or value, 404 for an unknown job or trial, 409 for a
prediction the job cannot make.

**Durability.** A prediction batch is one journal record (kind
``predicts``, the job ids) and so is a report batch (``reports``); the
response waits for one durability point covering the batch (one fsync under
the default group commit), so recovery replays exactly what was
acknowledged. Predictions are decided together
(:meth:`~banditfleet.serve.zeus_state.ZeusServerState.predict_many`: one
Thompson-sampling kernel call for the jobs in their MAB stage).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from banditfleet.errors import JournalError
from banditfleet.serve.zeus_state import DISPATCHED, FAILED, MAB, ZeusServerError, ZeusServerState

__all__ = [
    "BatchError",
    "batch_routes",
    "predict_batch",
    "report_batch",
    "end_batch",
    "delete_batch",
    "reset_batch",
    "BATCH_PREDICT_PATH",
    "BATCH_REPORT_PATH",
    "BATCH_END_PATH",
    "BATCH_DELETE_PATH",
    "BATCH_RESET_PATH",
    "in_process_predict",
]

BATCH_PREDICT_PATH = "/v1/jobs/batch_size"
BATCH_REPORT_PATH = "/v1/reports"
BATCH_END_PATH = "/v1/trials/end"
BATCH_DELETE_PATH = "/v1/jobs/delete"
BATCH_RESET_PATH = "/v1/jobs/reset"

_TRIAL_COLUMNS = ("job_ids", "batch_sizes", "trial_numbers")
_REPORT_COLUMNS = (*_TRIAL_COLUMNS, "time", "energy", "metric", "current_epoch")


class BatchError(Exception):
    """A refused batch: HTTP ``status`` and the entry it names (no state has changed)."""

    def __init__(self, status: int, message: str, index: int | None = None, job_id: str | None = None,
                 field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.index = index
        self.job_id = job_id
        self.field = field
        self.value = value

    def body(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        elif not isinstance(value, (str, int, float, bool, type(None))):
            value = repr(value)[:200]
        return {"message": self.message, "index": self.index, "job_id": self.job_id, "field": self.field,
                "value": value}


# ---------------------------------------------------------------- parsing
def _columns(body: Any, names: tuple[str, ...]) -> tuple[list[Any], ...]:
    if not isinstance(body, dict):
        raise BatchError(422, f"the body must be a JSON object with the arrays {', '.join(names)}", value=type(body).__name__)
    cols = []
    n = None
    for name in names:
        col = body.get(name)
        if not isinstance(col, list):
            raise BatchError(422, f"'{name}' must be an array", field=name, value=col if col is None else type(col).__name__)
        if n is None:
            n = len(col)
        elif len(col) != n:
            raise BatchError(422, f"'{name}' has {len(col)} entries, '{names[0]}' has {n}: every array must have one "
                             "entry per job", field=name, value=len(col))
        cols.append(col)
    return tuple(cols)


def _job_ids(col: list[Any]) -> list[str]:
    if set(map(type, col)) <= {str}:  # the common case, without a Python step per entry
        return col
    for i, v in enumerate(col):
        if not isinstance(v, str):
            raise BatchError(422, f"job_ids[{i}] must be a string, got {v!r}", index=i, field="job_ids", value=v)
    return col


def _ints(col: list[Any], name: str, ids: list[str], low: int | None = None) -> list[int]:
    for i, v in enumerate(col):
        if not isinstance(v, int) or isinstance(v, bool):
            raise BatchError(422, f"{name}[{i}] of job {ids[i]!r} must be an integer, got {v!r}", i, ids[i], name, v)
        if low is not None and v < low:
            raise BatchError(422, f"{name}[{i}] of job {ids[i]!r} must be >= {low}, got {v}", i, ids[i], name, v)
    return col


def _floats(col: list[Any], name: str, ids: list[str], nonnegative: bool) -> list[float]:
    out = []
    for i, v in enumerate(col):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BatchError(422, f"{name}[{i}] of job {ids[i]!r} must be a number, got {v!r}", i, ids[i], name, v)
        f = float(v)
        if not math.isfinite(f):
            raise BatchError(422, f"{name}[{i}] of job {ids[i]!r} must be finite, got {v!r}", i, ids[i], name, v)
        if nonnegative and f < 0:
            raise BatchError(422, f"{name}[{i}] of job {ids[i]!r} must be >= 0, got {v!r}", i, ids[i], name, v)
        out.append(f)
    return out


def _known(state: ZeusServerState, ids: list[str]) -> None:
    jobs = state.jobs
    for i, job_id in enumerate(ids):
        if job_id not in jobs:
            raise BatchError(404, f"job_ids[{i}]: unknown job {job_id!r}; register it first (POST /jobs)", i, job_id,
                             "job_ids", job_id)


def _no_repeats(ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, job_id in enumerate(ids):
        if job_id in seen:
            raise BatchError(422, f"job_ids[{i}]: job {job_id!r} also appears at index {seen[job_id]}", i, job_id,
                             "job_ids", job_id)
        seen[job_id] = i


# ------------------------------------------------------------- operations
def predict_batch(state: ZeusServerState, body: Any) -> dict[str, list[Any]]:
    """``POST /v1/jobs/batch_size``: the next trial of every job, in order (see the module docstring)."""
    (ids,) = _columns(body, ("job_ids",))
    _job_ids(ids)
    try:
        out_bs, out_tn = state.predict_many(ids)  # checks the whole batch first: a refusal changes nothing
    except ZeusServerError as err:
        i = err.index
        job_id = ids[i]
        if job_id not in state.jobs:
            raise BatchError(404, f"job_ids[{i}]: unknown job {job_id!r}; register it first (POST /jobs)", i, job_id,
                             "job_ids", job_id) from None
        raise BatchError(err.status, f"job_ids[{i}]: job {job_id!r}: {err.message}", i, job_id, "job_ids",
                         job_id) from None
    return {"job_ids": ids, "batch_sizes": out_bs, "trial_numbers": out_tn}


def _trials(state: ZeusServerState, ids: list[str], bss: list[int], tns: list[int]) -> None:
    jobs = state.jobs
    for i, job_id in enumerate(ids):
        trial = jobs[job_id].trials.get(tns[i])
        if trial is None or trial.batch_size != bss[i]:
            raise BatchError(404, f"entry {i}: job {job_id!r} has no trial number {tns[i]} with batch size {bss[i]}",
                             i, job_id, "trial_numbers", tns[i])


def report_batch(state: ZeusServerState, body: Any) -> dict[str, list[Any]]:
    """``POST /v1/reports``: many training results; whether each run stops (see the module docstring)."""
    ids, bss, tns, times, energies, metrics, epochs = _columns(body, _REPORT_COLUMNS)
    _job_ids(ids)
    _ints(bss, "batch_sizes", ids, 1)
    _ints(tns, "trial_numbers", ids, 1)
    times = _floats(times, "time", ids, True)
    energies = _floats(energies, "energy", ids, True)
    metrics = _floats(metrics, "metric", ids, False)
    _ints(epochs, "current_epoch", ids)
    _known(state, ids)
    _trials(state, ids, bss, tns)
    _check_reports(state, ids, bss, tns, times, energies, metrics, epochs)
    stop: list[bool] = []
    conv: list[bool] = []
    msgs: list[str] = []
    results = [{"job_id": job_id, "batch_size": bss[i], "trial_number": tns[i], "time": times[i],
                "energy": energies[i], "metric": metrics[i], "current_epoch": epochs[i]} for i, job_id in enumerate(ids)]
    for r in state.report_many(results):  # one journal record; every entry was checked above
        if isinstance(r, ZeusServerError):
            raise r
        stop.append(r["stop_train"])
        conv.append(r["converged"])
        msgs.append(r["message"])
    return {"stop_train": stop, "converged": conv, "messages": msgs}


def _check_reports(state: ZeusServerState, ids: list[str], bss: list[int], tns: list[int], times: list[float],
                   energies: list[float], metrics: list[float], epochs: list[int]) -> None:
    """Refuse what ``state.report`` would refuse, entry by entry, following the
    batch's own effects (which trials end, each job's minimum cost) without
    changing anything."""
    jobs = state.jobs
    min_cost: dict[str, float | None] = {}
    ended: set[tuple[str, int]] = set()
    for i, job_id in enumerate(ids):
        job = jobs[job_id]
        trial = job.trials[tns[i]]
        if trial.status != DISPATCHED or (job_id, tns[i]) in ended:
            if trial.status == FAILED and trial.converged is None:
                raise BatchError(409, f"entry {i}: job {job_id!r} trial {tns[i]} already ended without a report "
                                 "(failed)", i, job_id, "trial_numbers", tns[i])
            continue  # answered "already reported", nothing changes
        spec = job.spec
        low = min_cost.get(job_id, job.min_cost)
        cost = job.cost(energies[i], times[i])
        within = spec["beta_knob"] is None or low is None or spec["beta_knob"] * low >= cost
        target = spec["target_metric"]
        converged = target <= metrics[i] if spec["higher_is_better_metric"] else target >= metrics[i]
        if within and epochs[i] < spec["max_epochs"] and not converged:
            continue  # keep training: nothing changes
        if state.is_mab(job_id):
            if not state.has_arm(job_id, bss[i]):
                raise BatchError(409, f"entry {i}: job {job_id!r} is in its MAB stage without an arm for batch size "
                                 f"{bss[i]}", i, job_id, "batch_sizes", bss[i])
            if trial.type != MAB:
                raise BatchError(409, f"entry {i}: job {job_id!r} trial {tns[i]} was not issued by the MAB stage, "
                                 "which cannot learn from it", i, job_id, "trial_numbers", tns[i])
        ended.add((job_id, tns[i]))
        if low is None or low > cost:
            min_cost[job_id] = cost


def end_batch(state: ZeusServerState, body: Any) -> dict[str, list[Any]]:
    """``POST /v1/trials/end``: many trials ended; ``failed[i]`` is True where the trial never reported."""
    ids, bss, tns = _columns(body, _TRIAL_COLUMNS)
    _job_ids(ids)
    _ints(bss, "batch_sizes", ids, 1)
    _ints(tns, "trial_numbers", ids, 1)
    _known(state, ids)
    _trials(state, ids, bss, tns)
    failed = []
    jobs = state.jobs
    for i, job_id in enumerate(ids):
        failed.append(jobs[job_id].trials[tns[i]].status == DISPATCHED)
        state.end_trial(job_id, bss[i], tns[i])
    return {"failed": failed}


def delete_batch(state: ZeusServerState, body: Any) -> dict[str, Any]:
    """``POST /v1/jobs/delete``: forget many jobs (each at most once per batch)."""
    (ids,) = _columns(body, ("job_ids",))
    _job_ids(ids)
    _no_repeats(ids)
    _known(state, ids)
    for job_id in ids:
        state.delete_job(job_id)
    return {"deleted": len(ids)}


def reset_batch(state: ZeusServerState, body: Any) -> dict[str, Any]:
    """``POST /v1/jobs/reset``: many jobs back to just registered (spec kept, trials and learning gone)."""
    (ids,) = _columns(body, ("job_ids",))
    _job_ids(ids)
    _no_repeats(ids)
    _known(state, ids)
    for job_id in ids:
        spec = state.jobs[job_id].spec
        state.delete_job(job_id)
        state.register(spec)
    return {"reset": len(ids)}


# ------------------------------------------------------------------ HTTP
def _endpoint(operation: Callable[[ZeusServerState, Any], dict[str, Any]]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        import json

        ctx = request.app.state.bf
        raw = await request.body()
        try:
            try:
                body = json.loads(raw) if raw else None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BatchError(422, f"the body is not valid JSON: {exc}") from None
            result = operation(ctx.state, body)
        except BatchError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        except JournalError as exc:
            return JSONResponse({"message": str(exc)}, status_code=503)
        try:
            await ctx.durable()
        except JournalError as exc:
            return JSONResponse({"message": str(exc)}, status_code=503)
        return JSONResponse(result)

    endpoint.__name__ = operation.__name__
    endpoint.__doc__ = operation.__doc__
    return endpoint


def batch_routes() -> list[BaseRoute]:
    """The ``/v1/`` batch routes (all POST)."""
    return [
        Route(BATCH_PREDICT_PATH, _endpoint(predict_batch), methods=["POST"]),
        Route(BATCH_REPORT_PATH, _endpoint(report_batch), methods=["POST"]),
        Route(BATCH_END_PATH, _endpoint(end_batch), methods=["POST"]),
        Route(BATCH_DELETE_PATH, _endpoint(delete_batch), methods=["POST"]),
        Route(BATCH_RESET_PATH, _endpoint(reset_batch), methods=["POST"]),
    ]


def in_process_predict(n: int) -> tuple[Callable[[], Any], str]:
    """The floor of the batch-predict benchmark: ``predict_batch`` on an in-memory state of ``n``
    jobs registered as the load generator registers them (no HTTP, no JSON, no journal)."""
    import json

    from banditfleet.bench.serve_load import job_spec
    from banditfleet.serve.zeus_protocol import JobSpecFromClient

    state = ZeusServerState()
    ids = [f"f-{i}" for i in range(n)]
    for job_id in ids:
        state.register(JobSpecFromClient.parse_obj(json.loads(job_spec(job_id, "f", {}))).dict())
    body = {"job_ids": ids}
    return (lambda: predict_batch(state, body)), "predict_batch on an in-memory state (no HTTP, JSON or journal)"
