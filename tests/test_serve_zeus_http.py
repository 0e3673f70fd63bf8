"""``banditfleet serve`` as a real process, driven over HTTP the way Zeus's own tests drive Zeus's server.

One server process (on a free loopback port, stopped by its PID) serves the
module. The first group ports the scenarios of Zeus's
``tests/optimizer/batch_size/test_server.py`` with an HTTP client on
banditfleet's URL in place of FastAPI's ``TestClient``; the expected batch
sizes and trial numbers are derived from the pruning rules (docs/serve.md),
not read from banditfleet. The second drives simulated training runs through
Zeus's unchanged client, ``zeus.optimizer.batch_size.client.BatchSizeOptimizer``,
with pynvml and ``ZeusMonitor`` mocked as Zeus's ``test_client.py`` does.
The third checks the protocol details clients rely on.
"""

from __future__ import annotations

import json
import random
import signal
from unittest import mock

import httpx
import pytest

from serve_support import job_spec, start_server, stop_server

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

REGISTER_JOB_URL = DELETE_JOB_URL = "/jobs"
GET_NEXT_BATCH_SIZE_URL = "/jobs/batch_size"
REPORT_RESULT_URL = "/report"
REPORT_END_URL = "/trials"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("serve") / "state")
    yield srv
    code = stop_server(srv)
    # uvicorn shuts down gracefully on SIGTERM, then exits by the same signal.
    assert code in (0, -signal.SIGTERM), srv.log_text()
    assert "Application shutdown complete" in srv.log_text()
    # The shutdown checkpointed: a new generation whose journal is empty.
    assert (srv.folder / "checkpoint-000001.bfckpt").exists()
    assert (srv.folder / "journal-000001.bfj").stat().st_size == 0


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10.0) as c:
        yield c


# --------------------------------------------------- Zeus's test_server.py scenarios
def test_register_job(client):
    cfg = job_spec("test-register_job")
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 200
    cfg["default_batch_size"] = 512
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 409


@pytest.mark.parametrize(
    "change",
    [{"default_batch_size": 128}, {"default_batch_size": 0}, {"max_epochs": 0}, {"batch_sizes": []},
     {"eta_knob": 1.1}, {"beta_knob": 0}, {"job_id": "other-1"}, {"number_of_gpus": 0}, {"gpu_model": ""},
     {"max_power": 0}, {"num_pruning_rounds": -1}, {"mab_num_explorations": -1}],
)
def test_register_job_validation_error(client, change):
    r = client.post(REGISTER_JOB_URL, json={**job_spec("test-validation"), **change})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "body"


def test_predict(client):
    cfg = job_spec("test-predict")
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    for n in (1, 2):  # the second is a concurrent submission: the default batch size again
        r = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]})
        assert r.status_code == 200
        assert r.json() == {"job_id": cfg["job_id"], "batch_size": cfg["default_batch_size"], "trial_number": n}


def test_report(client):
    cfg = job_spec("test-report")
    client.post(REGISTER_JOB_URL, json=cfg)
    t = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()
    r = client.post(REPORT_RESULT_URL, json={**t, "time": 14.438, "energy": 3000.123, "metric": 0.55, "current_epoch": 98})
    assert r.status_code == 200 and r.json()["converged"] is True and r.json()["stop_train"] is True
    t = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()
    # cost 0.5*6000 + 0.5*3000*30 = 48000 > 2 * (0.5*3000.123 + 0.5*3000*14.438): early stop
    r = client.post(REPORT_RESULT_URL, json={**t, "time": 30, "energy": 6000, "metric": 0.55, "current_epoch": 98})
    assert r.status_code == 200 and r.json()["converged"] is False and r.json()["stop_train"] is True
    assert "cost upper bound" in r.json()["message"]


def test_exploration_stage(client):
    cfg = job_spec("test-exploration_stage")
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    rnd = random.Random(5)
    cur_default_bs = cfg["default_batch_size"]
    bss = sorted(cfg["batch_sizes"])
    trial_number = 1
    # Naive model of the job's minimum cost (strictly smaller replaces), for concurrent submissions.
    min_cost, min_bs = None, cfg["default_batch_size"]
    for _ in range(cfg["num_pruning_rounds"]):
        idx = bss.index(cur_default_bs)
        down = sorted(bss[: idx + 1], reverse=True)
        up = sorted(bss[idx + 1 :])
        new_bss = []
        for bs_list in (down, up):
            for bs in bs_list:
                r = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]})
                assert r.status_code == 200
                assert r.json()["batch_size"] == bs and r.json()["trial_number"] == trial_number
                trial_number += 1
                # A concurrent submission gets the cheapest batch size so far (the default before any report).
                r = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]})
                assert r.status_code == 200
                assert r.json()["batch_size"] == min_bs
                assert r.json()["trial_number"] == trial_number
                trial_number += 1
                time, converged = 14.438, rnd.choice([True, True, False])
                if bs == 1024:
                    converged = True
                if bs == 512:  # the cheapest: the next round's default
                    converged, time = True, 12
                if converged:
                    new_bss.append(bs)
                r = client.post(REPORT_RESULT_URL, json={
                    "job_id": cfg["job_id"], "batch_size": bs, "error": False, "trial_number": trial_number - 2,
                    "time": time, "energy": 3000.123, "metric": 0.55 if converged else 0.33,
                    "current_epoch": 98 if converged else 100})
                assert r.status_code == 200 and r.json()["converged"] == converged and r.json()["stop_train"] is True
                cost = 0.5 * 3000.123 + 0.5 * 3000 * time
                if min_cost is None or min_cost > cost:
                    min_cost, min_bs = cost, bs
                if not converged:
                    break
        bss = sorted(new_bss)
        cur_default_bs = 512


def test_mab_stage(client):
    cfg = job_spec("test-mab_stage")
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    seen = set()
    for _ in range(30):
        t = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()
        seen.add(t["batch_size"])
        assert client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).status_code == 200
        r = client.post(REPORT_RESULT_URL, json={**t, "error": False, "time": 15.123, "energy": 3000.123,
                                                 "max_power": 300, "metric": 0.55, "current_epoch": 98})
        assert r.status_code == 200 and r.json() == {"stop_train": True, "converged": True, "message": "Train succeeded"}
    assert seen <= set(cfg["batch_sizes"])


def test_end_trial(client):
    cfg = job_spec("test-end_trial")
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    t = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()
    assert client.patch(REPORT_END_URL, json=t).status_code == 200
    # The failed exploration is explored again.
    t2 = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()
    assert (t2["batch_size"], t2["trial_number"]) == (t["batch_size"], 2)
    r = client.post(REPORT_RESULT_URL, json={**t2, "time": 15.123, "energy": 3000.123, "metric": 0.55, "current_epoch": 98})
    assert r.status_code == 200
    assert client.patch(REPORT_END_URL, json=t2).status_code == 200
    # A report for the failed trial: "already reported but converged is not set".
    r = client.post(REPORT_RESULT_URL, json={**t, "time": 1, "energy": 1, "metric": 0.55, "current_epoch": 1})
    assert r.status_code == 400 and "converged is not set" in r.json()["message"]
    r = client.patch(REPORT_END_URL, json={**t, "trial_number": 99})
    assert r.status_code == 404 and r.json()["message"].startswith("Could not find the trial")


def test_delete_job(client):
    cfg = job_spec("test-delete_job")
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    assert client.delete(DELETE_JOB_URL, params={"job_id": cfg["job_id"]}).status_code == 200
    assert client.post(REGISTER_JOB_URL, json=cfg).status_code == 201
    # Trial numbers start again after a deletion.
    assert client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()["trial_number"] == 1
    assert client.delete(DELETE_JOB_URL, params={"job_id": cfg["job_id"]}).status_code == 200
    r = client.delete(DELETE_JOB_URL, params={"job_id": "UNKNOWN"})
    assert r.status_code == 404 and r.json() == {"message": "No job was deleted."}


# ------------------------------------------------------------- protocol details
def test_json_without_content_type_and_unknown_fields(client, server):
    cfg = job_spec("test-raw", some_future_field=[1, 2])
    r = httpx.post(server.url + REGISTER_JOB_URL, content=json.dumps(cfg).encode())  # no Content-Type
    assert r.status_code == 201
    body = r.json()
    assert "some_future_field" not in body
    expected = dict(cfg)
    del expected["some_future_field"]
    expected["batch_sizes"] = sorted(expected["batch_sizes"])
    # The echo has every field with its validated type (ints for the int fields, floats for the float fields).
    assert body == {**expected, "max_power": 3000.0, "beta_knob": 2.0, "mab_prior_mean": 0.0, "mab_prior_precision": 0.0}
    assert isinstance(body["max_power"], float) and isinstance(body["default_batch_size"], int)


def test_generated_job_id_and_prefix(client):
    r = client.post(REGISTER_JOB_URL, json=job_spec(None, job_id_prefix="gen"))
    assert r.status_code == 201
    job_id = r.json()["job_id"]
    assert job_id.startswith("gen-") and len(job_id) == len("gen-") + 8
    assert client.post(REGISTER_JOB_URL, json={**job_spec(None, job_id_prefix="gen"), "job_id": job_id}).status_code == 200


def test_repeated_report_is_already_reported(client):
    cfg = job_spec("test-repeat")
    client.post(REGISTER_JOB_URL, json=cfg)
    t = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": cfg["job_id"]}).json()
    result = {**t, "time": 10, "energy": 100, "metric": 0.3, "current_epoch": 100}
    first = client.post(REPORT_RESULT_URL, json=result).json()
    assert first["stop_train"] is True and first["converged"] is False
    again = client.post(REPORT_RESULT_URL, json={**result, "metric": 0.9}).json()
    assert again == {"stop_train": True, "converged": False,
                     "message": f"Result for this trial({t['trial_number']}) is already reported."}


def test_errors_have_zeus_shapes(client):
    r = client.get(GET_NEXT_BATCH_SIZE_URL, params={"job_id": "never-registered"})
    assert r.status_code == 400 and r.json() == {"message": "Unknown job(never-registered). Please register the job first"}
    r = client.get(GET_NEXT_BATCH_SIZE_URL)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "job_id"]
    r = client.post(REPORT_RESULT_URL, content=b"{not json")
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = client.put(REGISTER_JOB_URL, json={})
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
    r = client.get("/nowhere")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


# --------------------------------------------- Zeus's client (test_client.py), unchanged
@pytest.fixture
def zeus_env(server):
    """Zeus's BatchSizeOptimizer class and a mocked 4-GPU monitor, with pynvml mocked as Zeus's test_client.py does."""
    from zeus.monitor.energy import Measurement, ZeusMonitor
    from zeus.optimizer.batch_size.client import BatchSizeOptimizer

    import zeus.device.gpu as gpu_module

    monitor = mock.MagicMock(spec=ZeusMonitor)
    monitor.gpu_indices = [0, 1, 2, 3]
    monitor.end_window.return_value = Measurement(time=EPOCH_TIME, gpu_energy=dict(enumerate(EPOCH_ENERGY)))
    patches = [
        mock.patch("pynvml.nvmlInit"),
        mock.patch("pynvml.nvmlDeviceGetName", return_value="Tesla V100"),
        mock.patch("pynvml.nvmlDeviceGetCount", return_value=4),
        mock.patch("pynvml.nvmlDeviceGetHandleByIndex", return_value=0),
        mock.patch("pynvml.nvmlDeviceGetPowerManagementLimitConstraints", return_value=[100000, 300000]),
        mock.patch("atexit.register"),
        mock.patch.object(gpu_module, "_gpus", None),
    ]
    for p in patches:
        p.start()
    try:
        yield BatchSizeOptimizer, monitor, server.url
    finally:
        for p in reversed(patches):
            p.stop()


@pytest.fixture
def zeus_client(zeus_env, client):
    """As ``zeus_env``, with the client's module-level ``httpx.post/get/patch`` going through one
    keep-alive ``httpx.Client`` (each module-level call would build a new TLS context: ~0.2 s)."""
    with mock.patch("httpx.post", side_effect=client.post), mock.patch("httpx.get", side_effect=client.get), \
            mock.patch("httpx.patch", side_effect=client.patch):
        yield zeus_env


EPOCH_TIME = 37.24807469360
EPOCH_ENERGY = [4264.87199999392, 4367.186999991536, 4342.869000002742, 4158.034000009298]


def _stop_epoch(min_cost_epochs: int, beta: float, max_power: float = 1200.0, eta: float = 0.5) -> int:
    """Naive model of the client's accumulation and the early-stop rule: the first epoch whose
    cumulative cost exceeds ``beta`` times the cost of ``min_cost_epochs`` epochs."""
    def cost_after(k: int) -> float:
        t = e = 0.0
        for _ in range(k):
            t += EPOCH_TIME
            e += sum(EPOCH_ENERGY)
        return eta * e + (1 - eta) * max_power * t

    bound = beta * cost_after(min_cost_epochs)
    k = 1
    while cost_after(k) <= bound:
        k += 1
    return k


def _zeus_job(job_id: str, **overrides):
    from zeus.optimizer.batch_size.common import JobSpec

    spec = job_spec(job_id, **overrides)
    for k in ("max_power", "number_of_gpus", "gpu_model"):
        del spec[k]
    return JobSpec.parse_obj(spec)


def test_zeus_client_register(zeus_env):
    """Through the client's own module-level httpx calls (no patching of the transport)."""
    BSO, monitor, url = zeus_env
    job = _zeus_job("test-client_register")
    for _ in range(2):  # the second registration finds the identical job
        bso = BSO(monitor, url, job)
        assert bso.job.max_power == 300 * len(monitor.gpu_indices)
        assert bso.job.job_id == "test-client_register"


def test_zeus_client_batch_sizes(zeus_client):
    from zeus.optimizer.batch_size.exceptions import ZeusBSOTrainFailError

    BSO, monitor, url = zeus_client
    job = _zeus_job("test-client_batch_sizes")
    bso = BSO(monitor, url, job)
    assert bso.get_batch_size() == 1024 and bso.current_batch_size == 1024
    bso.on_train_begin()
    bso.on_evaluate(0.1)
    bso.on_evaluate(0.2)
    bso.on_evaluate(0.6)  # converged after 3 epochs: min cost is 3 epochs' cost
    bso = BSO(monitor, url, job)
    assert bso.get_batch_size() == 512
    bso.on_train_begin()
    with pytest.raises(ZeusBSOTrainFailError, match="cost upper bound"):
        for _ in range(job.max_epochs - 10):  # 7 epochs cost more than 2 x 3 epochs
            bso.on_evaluate(0.3)
    assert bso.cur_epoch == _stop_epoch(3, job.beta_knob)
    bso = BSO(monitor, url, job)
    assert bso.get_batch_size() == 2048  # 512 failed: the downward list stops, upward goes on


def test_zeus_client_converge_fail(zeus_client):
    from zeus.optimizer.batch_size.exceptions import ZeusBSOTrainFailError

    BSO, monitor, url = zeus_client
    job = _zeus_job("test-client_converge_fail")
    job.beta_knob = None  # no early stop
    bso = BSO(monitor, url, job)
    bso.on_train_begin()
    assert bso.get_batch_size() == 1024
    with pytest.raises(ZeusBSOTrainFailError, match="Train failed to converge within max_epoch"):
        for _ in range(job.max_epochs + 10):
            bso.on_evaluate(0.3)
    assert bso.cur_epoch == job.max_epochs
    bso = BSO(monitor, url, job)
    assert bso.get_batch_size() == 2048


def test_zeus_client_distributed(zeus_client):
    from zeus.optimizer.batch_size.exceptions import ZeusBSOBadOperationError, ZeusBSOTrainFailError

    BSO, monitor, url = zeus_client
    job = _zeus_job("test-client_distributed")
    clients = [BSO(monitor, url, job, rank=i) for i in range(4)]
    for c in clients[1:]:
        with pytest.raises(ZeusBSOBadOperationError):
            c.get_batch_size()
    bs = clients[0].get_batch_size()
    for c in clients[1:]:
        c.current_batch_size = bs
        c.trial_number = clients[0].trial_number
    with pytest.raises(ZeusBSOTrainFailError, match="Train failed to converge within max_epoch"):
        for _ in range(job.max_epochs + 10):
            clients[0].on_evaluate(0.3)
    for c in clients[1:]:
        with pytest.raises(ZeusBSOTrainFailError, match="is already reported."):
            c.on_evaluate(0.3)


def test_zeus_client_failed_run_then_report_end(zeus_client, server):
    """A run that dies before reporting: the client's exit hook (PATCH /trials) marks it failed."""
    BSO, monitor, url = zeus_client
    job = _zeus_job("test-client_crash")
    registered = []
    with mock.patch("atexit.register", side_effect=registered.append):
        bso = BSO(monitor, url, job)
        assert bso.get_batch_size() == 1024
    assert len(registered) == 1
    registered[0]()  # what atexit would run: PATCH /trials
    bso = BSO(monitor, url, job)
    assert bso.get_batch_size() == 1024 and bso.trial_number == 2  # explored again
