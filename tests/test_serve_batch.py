"""The /v1/ batch API of ``banditfleet serve``, in process (Starlette's TestClient).

The reference of a batch is the protocol it abbreviates: the same entries
sent one by one through Zeus's single-job endpoints to a twin server on its
own folder. Refused batches must name the entry and leave every job and the
journal exactly as they were.
"""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest
from starlette.testclient import TestClient

from banditfleet.serve.edge import build_app
from serve_support import job_spec


class Server:
    """build_app on a fresh folder, through TestClient."""

    def __init__(self, **kw):
        self._dir = tempfile.TemporaryDirectory(prefix="bf-batch-")
        self.app = build_app(self._dir.name + "/state", fsync="never", **kw)
        self.client = TestClient(self.app)
        self.client.__enter__()

    @property
    def state(self):
        return self.app.state.bf.state

    def post(self, path, body, **kw):
        r = self.client.post(path, content=json.dumps(body), **kw)
        return r.status_code, r.json()

    def snapshot(self):
        st = self.state
        return {k: st.job_state(k) for k in sorted(st.jobs)}, st.folder.journal_bytes

    def close(self):
        self.client.__exit__(None, None, None)
        self._dir.cleanup()


@pytest.fixture
def pair():
    a, b = Server(), Server()
    yield a, b
    a.close()
    b.close()


def _register(servers, n, **overrides):
    ids = [f"test-{i}" for i in range(n)]
    for s in servers:
        for i, job_id in enumerate(ids):
            status, _ = s.post("/jobs", job_spec(job_id, mab_seed=1000 + i, **overrides))
            assert status == 201
    return ids


def _cost_of(bs, k):
    return 100.0 * (1 + 0.3 * abs(np.log2(bs) - 8) + 0.05 * (k % 5))


def test_batches_equal_the_same_calls_one_by_one(pair):
    """Many rounds of batch predict / report / end, with repeated jobs, failures
    and early stops, against the single-job protocol on a twin server."""
    batch, single = pair
    ids = _register(pair, 6, window_size=3, mab_num_explorations=1, num_pruning_rounds=1)
    rng = np.random.default_rng(7)
    for k in range(40):
        chosen = [ids[int(j)] for j in rng.integers(0, len(ids), 8)]  # repeats on purpose
        status, got = batch.post("/v1/jobs/batch_size", {"job_ids": chosen})
        want = [single.client.get("/jobs/batch_size", params={"job_id": j}).json() for j in chosen]
        assert status == 200
        assert got == {"job_ids": chosen, "batch_sizes": [w["batch_size"] for w in want],
                       "trial_numbers": [w["trial_number"] for w in want]}
        # Report most trials (some twice, some above the cost bound, some not converged), fail the rest.
        reports = {k2: [] for k2 in ("job_ids", "batch_sizes", "trial_numbers", "time", "energy", "metric", "current_epoch")}
        ends = {"job_ids": [], "batch_sizes": [], "trial_numbers": []}
        for w in want:
            u = rng.random()
            if u < 0.8:
                t = _cost_of(w["batch_size"], k) * (3.0 if u < 0.05 else 1.0)
                for _ in range(2 if u > 0.7 else 1):
                    for key, v in (("job_ids", w["job_id"]), ("batch_sizes", w["batch_size"]),
                                   ("trial_numbers", w["trial_number"]), ("time", t), ("energy", 200.0 * t),
                                   ("metric", 0.6 if u < 0.75 else 0.4), ("current_epoch", 100 if u >= 0.75 else 1)):
                        reports[key].append(v)
            for key in ends:
                ends[key].append(w[{"job_ids": "job_id", "batch_sizes": "batch_size", "trial_numbers": "trial_number"}[key]])
        status, got = batch.post("/v1/reports", reports)
        assert status == 200, got
        want = [single.post("/report", {"job_id": reports["job_ids"][i], "batch_size": reports["batch_sizes"][i],
                                        "trial_number": reports["trial_numbers"][i], "time": reports["time"][i],
                                        "energy": reports["energy"][i], "metric": reports["metric"][i],
                                        "current_epoch": reports["current_epoch"][i]})
                for i in range(len(reports["job_ids"]))]
        assert all(s == 200 for s, _ in want)
        assert got == {"stop_train": [w["stop_train"] for _, w in want], "converged": [w["converged"] for _, w in want],
                       "messages": [w["message"] for _, w in want]}
        status, got = batch.post("/v1/trials/end", ends)
        assert status == 200
        before = [single.state.job_state(j)["trials"][str(n)][2] for j, n in zip(ends["job_ids"], ends["trial_numbers"])]
        for i in range(len(ends["job_ids"])):
            r = single.client.patch("/trials", content=json.dumps({"job_id": ends["job_ids"][i], "batch_size": ends["batch_sizes"][i],
                                                                    "trial_number": ends["trial_numbers"][i]}))
            assert r.status_code == 200
        # A trial was marked failed exactly where it was still dispatched (a trial ended twice in the batch: the first time).
        seen, expected = set(), []
        for j, n, st in zip(ends["job_ids"], ends["trial_numbers"], before):
            expected.append(st == "Dispatched" and (j, n) not in seen)
            seen.add((j, n))
        assert got == {"failed": expected}
    assert batch.snapshot()[0] == single.snapshot()[0]
    assert any(batch.state.job_state(j)["stage"] == "MAB" for j in ids)


def test_delete_and_reset(pair):
    batch, single = pair
    ids = _register(pair, 3)
    for _ in range(3):
        batch.post("/v1/jobs/batch_size", {"job_ids": ids})
    assert batch.post("/v1/jobs/reset", {"job_ids": ids[:2]}) == (200, {"reset": 2})
    # A reset job numbers its trials from 1 again and decides as a fresh registration does.
    status, got = batch.post("/v1/jobs/batch_size", {"job_ids": ids})
    want = [single.client.get("/jobs/batch_size", params={"job_id": j}).json() for j in ids[:2]]
    assert got["trial_numbers"] == [1, 1, 4]
    assert got["batch_sizes"][:2] == [w["batch_size"] for w in want]
    assert batch.post("/v1/jobs/delete", {"job_ids": [ids[0], ids[2]]}) == (200, {"deleted": 2})
    assert sorted(batch.state.jobs) == [ids[1]]
    status, body = batch.post("/v1/jobs/batch_size", {"job_ids": [ids[0]]})
    assert status == 404 and body["job_id"] == ids[0]


def _bad_batches(ids):
    good_report = {"job_ids": [ids[0]], "batch_sizes": [1024], "trial_numbers": [1], "time": [1.0], "energy": [2.0],
                   "metric": [0.6], "current_epoch": [1]}

    def report(**change):
        body = {k: list(v) for k, v in good_report.items()}
        for k, v in change.items():
            body[k] = v
        return body

    return [
        # (path, body, status, index, field, value)
        ("/v1/jobs/batch_size", [ids[0]], 422, None, None, "list"),
        ("/v1/jobs/batch_size", {"job_ids": ids[0]}, 422, None, "job_ids", "str"),
        ("/v1/jobs/batch_size", {"job_ids": [ids[0], 5]}, 422, 1, "job_ids", 5),
        ("/v1/jobs/batch_size", {"job_ids": [ids[0], ids[1], "nope"]}, 404, 2, "job_ids", "nope"),
        ("/v1/reports", report(batch_sizes=[1024, 1024]), 422, None, "batch_sizes", 2),
        ("/v1/reports", report(time=[float("nan")]), 422, 0, "time", None),
        ("/v1/reports", report(energy=[-1.0]), 422, 0, "energy", -1.0),
        ("/v1/reports", report(metric=["0.6"]), 422, 0, "metric", "0.6"),
        ("/v1/reports", report(current_epoch=[1.5]), 422, 0, "current_epoch", 1.5),
        ("/v1/reports", report(trial_numbers=[0]), 422, 0, "trial_numbers", 0),
        ("/v1/reports", report(trial_numbers=[9]), 404, 0, "trial_numbers", 9),
        ("/v1/reports", report(batch_sizes=[512]), 404, 0, "trial_numbers", 1),
        ("/v1/reports", report(batch_sizes=[True]), 422, 0, "batch_sizes", True),
        ("/v1/trials/end", {"job_ids": [ids[0], ids[1]], "batch_sizes": [1024, 1024], "trial_numbers": [1, 7]}, 404, 1,
         "trial_numbers", 7),
        ("/v1/jobs/delete", {"job_ids": [ids[0], ids[1], ids[0]]}, 422, 2, "job_ids", ids[0]),
        ("/v1/jobs/delete", {"job_ids": [ids[1], "gone"]}, 404, 1, "job_ids", "gone"),
        ("/v1/jobs/reset", {"job_ids": [ids[1], "gone"]}, 404, 1, "job_ids", "gone"),
        ("/v1/jobs/batch_size", "not json", 422, None, None, None),
    ]


def test_refused_batches_name_the_entry_and_change_nothing():
    s = Server()
    try:
        ids = _register([s], 2)
        s.post("/v1/jobs/batch_size", {"job_ids": ids})
        before = s.snapshot()
        for path, body, status, index, field, value in _bad_batches(ids):
            if body == "not json":
                r = s.client.post(path, content=b"{nope")
                got_status, got = r.status_code, r.json()
            else:
                got_status, got = s.post(path, body)
            assert got_status == status, (path, body, got)
            assert got["index"] == index and got["field"] == field, (path, body, got)
            if value is not None and not isinstance(value, float):
                assert got["value"] == value, (path, body, got)
            if index is not None and isinstance(body, dict) and isinstance(body["job_ids"][index], str):
                assert got["job_id"] == body["job_ids"][index]
                assert repr(got["job_id"]) in got["message"]
            assert s.snapshot() == before, (path, body)
    finally:
        s.close()


def test_a_batch_with_a_job_that_cannot_predict_is_refused_whole():
    """A job whose every batch size failed has no converged batch size: Zeus answers
    409 to its prediction; the batch is refused before the other jobs get trials."""
    s = Server()
    try:
        ids = _register([s], 2, batch_sizes=[32], default_batch_size=32)
        _, t = s.post("/v1/jobs/batch_size", {"job_ids": [ids[0]]})
        assert s.post("/v1/reports", {"job_ids": [ids[0]], "batch_sizes": [32], "trial_numbers": [1], "time": [1.0],
                                      "energy": [1.0], "metric": [0.1], "current_epoch": [100]})[0] == 200
        before = s.snapshot()
        status, body = s.post("/v1/jobs/batch_size", {"job_ids": [ids[1], ids[0]]})
        assert status == 409 and body["index"] == 1 and body["job_id"] == ids[0]
        assert s.snapshot() == before
    finally:
        s.close()
