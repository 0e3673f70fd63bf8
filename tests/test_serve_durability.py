"""``banditfleet serve`` under ``kill -9``: every acknowledged effect survives, retries stay consistent.

Several client threads register jobs, ask for batch sizes and report results
against a real server process (``--fsync batch``, the default) while the
test kills it with SIGKILL. The acknowledged responses (status 200/201 the
client received) are the ground truth: after the kill the folder is
recovered and must hold every acknowledged registration, trial (same batch
size and number) and report (same time, energy, convergence). A new server
on the same folder then answers retried reports with what was acknowledged
("already reported", same ``converged``), continues the trial numbers, and
knows every job.
"""

from __future__ import annotations

import random
import signal
import threading
import time

import httpx
import pytest

from serve_support import job_spec, start_server, stop_server

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

N_CLIENTS = 6


def _client_loop(url: str, idx: int, acked: dict, stop: threading.Event) -> None:
    rnd = random.Random(idx)
    job_id = f"test-kill-{idx}"
    spec = job_spec(job_id, batch_sizes=[32, 64, 128, 256], default_batch_size=64, mab_seed=idx,
                    max_epochs=5, window_size=idx % 3)
    log = acked[idx] = {"spec": spec, "registered": False, "trials": {}, "reports": {}}
    try:
        with httpx.Client(base_url=url, timeout=10.0) as c:
            if c.post("/jobs", json=spec).status_code in (200, 201):
                log["registered"] = True
            while not stop.is_set():
                r = c.get("/jobs/batch_size", params={"job_id": job_id})
                assert r.status_code == 200, r.text
                t = r.json()
                log["trials"][t["trial_number"]] = t["batch_size"]
                if rnd.random() < 0.1:
                    assert c.patch("/trials", json=t).status_code == 200
                    log["reports"][t["trial_number"]] = "failed"
                    continue
                result = {**t, "time": rnd.choice([10.0, 11.0, 12.5]), "energy": rnd.choice([1000.0, 1200.0]),
                          "metric": 0.6, "current_epoch": 5}
                if rnd.random() < 0.2:  # an epoch that does not end the run
                    result.update(metric=0.3, current_epoch=2)
                r = c.post("/report", json=result)
                assert r.status_code == 200, r.text
                log["reports"][t["trial_number"]] = (result, r.json())
    except httpx.TransportError:
        return  # the server died under us: whatever was not answered was not acknowledged


def test_kill_9_keeps_every_acknowledged_effect(tmp_path):
    from banditfleet.serve.zeus_state import ZeusServerState

    folder = tmp_path / "state"
    server = start_server(folder)
    acked: dict = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_client_loop, args=(server.url, i, acked, stop)) for i in range(N_CLIENTS)]
    for th in threads:
        th.start()
    # Let traffic flow until enough is acknowledged (bounded), then kill -9 in mid-flight.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(len(v["reports"]) for v in list(acked.values())) >= 40:
            break
        time.sleep(0.05)
    stop_server(server, sig=signal.SIGKILL)
    stop.set()
    for th in threads:
        th.join(30)
    assert server.proc.returncode == -signal.SIGKILL
    assert sum(len(v["reports"]) for v in acked.values()) >= 20, server.log_text()

    # 1. The recovered folder holds every acknowledged effect.
    state = ZeusServerState.open(folder)
    try:
        for idx, log in acked.items():
            if not log["registered"]:
                continue
            job = state.job_state(log["spec"]["job_id"])
            assert job["spec"]["job_id"] == log["spec"]["job_id"]
            for tn, bs in log["trials"].items():
                assert job["trials"][str(tn)][0] == bs, (idx, tn)
            for tn, outcome in log["reports"].items():
                bs, type_, status, t, e, conv = job["trials"][str(tn)]
                if outcome == "failed":
                    assert status == "Failed"
                    continue
                result, resp = outcome
                if resp["stop_train"]:
                    assert (status, t, e, conv) == ("Succeeded", result["time"], result["energy"], resp["converged"])
            assert job["next_trial"] > max(log["trials"], default=0)
    finally:
        state.close()

    # 2. A new server on the folder: retries get the acknowledged answers, numbering continues.
    server = start_server(folder)
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as c:
            for idx, log in acked.items():
                if not log["registered"]:
                    continue
                assert c.post("/jobs", json=log["spec"]).status_code == 200  # known, identical
                for tn, outcome in log["reports"].items():
                    if outcome == "failed":
                        continue
                    result, resp = outcome
                    again = c.post("/report", json=result).json()
                    if resp["stop_train"]:
                        assert again == {"stop_train": True, "converged": resp["converged"],
                                         "message": f"Result for this trial({tn}) is already reported."}
                nxt = c.get("/jobs/batch_size", params={"job_id": log["spec"]["job_id"]}).json()
                assert nxt["trial_number"] > max(log["trials"], default=0)
    finally:
        stop_server(server)
