"""Support for the ``banditfleet serve`` tests: server processes, and Zeus's own server as the reference.

* :func:`start_server` runs ``banditfleet serve`` as a real process on a free
  loopback port and :func:`stop_server` stops it by its PID.
* :class:`ZeusReference` runs Zeus 0.16.0's FastAPI server in-process on a
  fresh SQLite file. Zeus persists a seeded job's generator with
  ``Generator.__getstate__()``, which returns None on numpy 2, so on numpy 2
  its seeded decisions would come from the clock. For the tests only, the
  reference's two modules that build generators get a ``default_rng`` whose
  generators return ``bit_generator.state`` from ``__getstate__`` (what
  ``__setstate__``, unchanged, already accepts, and what later Zeus versions
  store): nothing else of the reference changes.
* :func:`reference_skip_reason` says why the reference cannot run here (its
  server dependencies missing), or None.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A ``banditfleet serve`` child process; ``url`` is its base URL."""

    def __init__(self, proc: subprocess.Popen, port: int, folder: Path, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.folder = folder
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


def start_server(folder: Path, *extra: str, timeout: float = 120.0) -> ServerProcess:
    """Start ``banditfleet serve --folder folder`` on a free port; return once it answers."""
    import httpx

    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bf-serve-", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "banditfleet", "serve", "--folder", str(folder), "--port", str(port), *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT),
        )
    server = ServerProcess(proc, port, Path(folder), log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"banditfleet serve exited with {proc.returncode}:\n{server.log_text()}")
        try:
            # A request every server answers at once (422: no job_id) without changing state.
            httpx.get(server.url + "/jobs/batch_size", timeout=2.0)
            return server
        except httpx.TransportError:
            if time.monotonic() > deadline:
                stop_server(server, sig=signal.SIGKILL)
                raise RuntimeError(f"banditfleet serve did not answer within {timeout} s:\n{server.log_text()}")
            time.sleep(0.1)


def stop_server(server: ServerProcess, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send ``sig`` to the server's PID and wait for it to exit (SIGKILL after ``timeout``)."""
    proc = server.proc
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    return proc.returncode


# ----------------------------------------------------------------- the reference
def reference_skip_reason() -> Optional[str]:
    """Why Zeus's server cannot run in-process here, or None."""
    try:
        import aiosqlite  # noqa: F401
        import fastapi  # noqa: F401
        import sqlalchemy.ext.asyncio  # noqa: F401
        import zeus  # noqa: F401
    except ImportError as exc:
        return f"Zeus 0.16.0's server needs fastapi<0.128, sqlalchemy[asyncio] and aiosqlite (the test extra): {exc}"
    os.environ.setdefault("ZEUS_BSO_DATABASE_URL", "sqlite+aiosqlite:///" + os.path.join(tempfile.gettempdir(), "bf-zeus-unused.db"))
    try:
        from zeus.optimizer.batch_size.server import router  # noqa: F401
    except Exception as exc:  # e.g. PydanticV1NotSupportedError on fastapi>=0.128
        return f"Zeus 0.16.0's server does not load here ({type(exc).__name__}: {exc}); it needs fastapi<0.128"
    return None


class _PersistableGenerator(np.random.Generator):
    """A Generator whose ``__getstate__`` is its bit generator's state (numpy 2 returns None)."""

    def __getstate__(self) -> dict[str, Any]:  # type: ignore[override]
        return self.bit_generator.state


def _default_rng(seed: Any = None) -> np.random.Generator:
    return _PersistableGenerator(np.random.PCG64(seed))


class _NumpyWithPersistableRng(types.ModuleType):
    """``numpy`` for the reference's modules, except ``random.default_rng``."""

    def __init__(self) -> None:
        super().__init__("numpy")
        self.random = types.SimpleNamespace(default_rng=_default_rng, Generator=np.random.Generator)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


_PATCHED = False


def _patch_reference_rng() -> None:
    global _PATCHED
    if _PATCHED:
        return
    from zeus.optimizer.batch_size.server.job import commands
    from zeus.optimizer.batch_size.server.services import service

    shim = _NumpyWithPersistableRng()
    service.np = shim  # get_random_choices / get_normal / _get_generator
    commands.np = shim  # CreateJob.from_job_config (the initial state)
    _PATCHED = True


class ZeusReference:
    """Zeus 0.16.0's server app on a fresh SQLite database, called through FastAPI's TestClient.

    ``request(method, path, **kwargs)`` returns ``(status, JSON body)``.
    Use as a context manager.
    """

    def __init__(self) -> None:
        reason = reference_skip_reason()
        if reason is not None:
            raise RuntimeError(reason)
        _patch_reference_rng()
        from fastapi.testclient import TestClient
        from zeus.optimizer.batch_size.server import router
        from zeus.optimizer.batch_size.server.database.db_connection import DatabaseSessionManager, get_db_session
        from zeus.optimizer.batch_size.server.database.schema import Base

        self._dir = tempfile.TemporaryDirectory(prefix="bf-zeus-ref-")
        sm = DatabaseSessionManager(f"sqlite+aiosqlite:///{self._dir.name}/zeus.db", {"echo": False})

        async def create() -> None:
            async with sm._engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)

        asyncio.run(create())

        async def session():
            async with sm.session() as s:
                yield s

        router.app.dependency_overrides[get_db_session] = session
        self._sm = sm
        self.app = router.app
        self.client = TestClient(router.app)
        self.client.__enter__()

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        r = self.client.request(method, path, **kwargs)
        return r.status_code, r.json()

    def tables(self) -> dict[str, dict[str, Any]]:
        """Every job's rows in the reference's database: stage, minimum cost, generator
        state, trials (by number) and arms (by batch size), read with sqlite3."""
        import sqlite3

        con = sqlite3.connect(f"{self._dir.name}/zeus.db")
        try:
            jobs = {}
            for job_id, stage, min_cost, min_bs, rng in con.execute(
                    'SELECT job_id, stage, min_cost, min_cost_batch_size, mab_random_generator_state FROM "Job"'):
                jobs[job_id] = {"stage": stage, "min_cost": min_cost, "min_cost_batch_size": min_bs,
                                "rng": None if rng is None else json.loads(rng), "trials": {}, "arms": {}}
            for row in con.execute('SELECT job_id, trial_number, batch_size, type, status, time, energy, converged FROM "Trial"'):
                conv = None if row[7] is None else bool(row[7])
                jobs[row[0]]["trials"][row[1]] = [row[2], row[3], row[4], row[5], row[6], conv]
            for row in con.execute('SELECT job_id, batch_size, param_mean, param_precision, reward_precision, num_observations FROM "GaussianTsArmState"'):
                jobs[row[0]]["arms"][row[1]] = [row[2], row[3], row[4], row[5]]
            return jobs
        finally:
            con.close()

    def close(self) -> None:
        self.client.__exit__(None, None, None)

        async def dispose() -> None:
            await self._sm.close()

        asyncio.run(dispose())
        self._dir.cleanup()

    def __enter__(self) -> "ZeusReference":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BanditfleetInProcess:
    """banditfleet's app on a fresh folder through Starlette's TestClient; same interface as :class:`ZeusReference`."""

    def __init__(self, folder: Optional[str] = None, fsync: str = "never") -> None:
        from starlette.testclient import TestClient

        from banditfleet.serve.app import create_app

        self._dir = None
        if folder is None:
            self._dir = tempfile.TemporaryDirectory(prefix="bf-serve-")
            folder = self._dir.name + "/state"
        self.app = create_app(folder, fsync=fsync)
        self.client = TestClient(self.app)
        self.client.__enter__()

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        r = self.client.request(method, path, **kwargs)
        return r.status_code, r.json()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        if self._dir is not None:
            self._dir.cleanup()

    def __enter__(self) -> "BanditfleetInProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def job_spec(job_id: Optional[str], **overrides: Any) -> dict[str, Any]:
    """A registration body like the one Zeus's tests use (7 batch sizes, 4 GPUs of 3000 W in all)."""
    spec = {
        "job_id": job_id,
        "job_id_prefix": "test",
        "default_batch_size": 1024,
        "batch_sizes": [32, 64, 256, 512, 1024, 4096, 2048],
        "eta_knob": 0.5,
        "beta_knob": 2,
        "target_metric": 0.5,
        "higher_is_better_metric": True,
        "max_epochs": 100,
        "num_pruning_rounds": 2,
        "window_size": 5,
        "mab_prior_mean": 0,
        "mab_prior_precision": 0,
        "mab_seed": 123456,
        "mab_num_explorations": 2,
        "max_power": 3000,
        "number_of_gpus": 4,
        "gpu_model": "A100",
    }
    spec.update(overrides)
    return spec


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
