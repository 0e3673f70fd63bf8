"""The load generator of the ``serve`` benchmark cases, run in its own process.

``python -m banditfleet.bench.serve_load --host 127.0.0.1 --port P`` reads
one JSON command per line on standard input and answers each with one JSON
line on standard output. It simulates training runs the way Zeus's client
(``zeus.optimizer.batch_size.client.BatchSizeOptimizer``) drives a
batch-size-optimizer server: one keep-alive HTTP/1.1 connection per
simulated job, and per training run (a *cycle*) ``GET /jobs/batch_size``,
``POST /report`` and ``PATCH /trials``, with JSON bodies posted without a
Content-Type header, as that client posts them.

It speaks HTTP/1.1 itself over asyncio streams (uvloop when installed):
a request is one preformatted ``bytes`` write and a response is read by its
``Content-Length``. A general-purpose client (httpx, aiohttp) spends several
times the CPU per request, and on a 2-core machine the load generator
would then be the bottleneck. Every answer carries the process CPU seconds
the command took, so a benchmark can show the generator's CPU next to the
server's.

Commands (one JSON object per line):

* ``{"op": "register", "prefix": "p", "jobs": N, "spec": {...}}``: register
  jobs ``p-0 .. p-(N-1)`` (``POST /jobs``, 64 at a time).
* ``{"op": "cycles", "prefix": "p", "jobs": C, "per_job": K}``: C simulated
  jobs run concurrently, each K training-run cycles one after another;
  answers the wall and CPU seconds, the cycles, and the latency in seconds
  of every request by kind (``get``, ``report``, ``end``).
* ``{"op": "post", "path": "/v1/...", "body": {...}, "repeat": R, "concurrency": Q}``:
  the same POST R times from Q connections; answers wall, CPU and latencies.
* ``{"op": "quit"}``.

A non-2xx answer is counted in ``errors`` (with the first few bodies) and
the simulated job goes on with its next cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

__all__ = ["main", "Connection", "cycle_bodies"]

#: The cost model of the simulated runs: seconds per epoch and watts by batch size.
_TIME_PER_EPOCH = 100.0
_WATTS = 200.0


class Connection:
    """One keep-alive HTTP/1.1 connection: ``request`` writes one request and reads its answer.

    A connection the server closed while it was idle (uvicorn closes idle
    keep-alive connections after a few seconds) is opened again and the
    request sent once more: the server never saw it.
    """

    def __init__(self, host: str, port: int, token: str | None = None) -> None:
        self._addr = (host, port)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._host = f"Host: {host}:{port}\r\n".encode()
        self._extra = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""

    @classmethod
    async def open(cls, host: str, port: int, token: str | None = None) -> Connection:
        conn = cls(host, port, token)
        await conn._connect()
        return conn

    async def _connect(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader, self._writer = await asyncio.open_connection(*self._addr)

    async def request(self, method: bytes, target: bytes, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; return (status, body). The body is sent without a Content-Type."""
        head = b"%s %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n" % (method, target, self._host, self._extra, len(body))
        for attempt in (0, 1):
            try:
                self._writer.write(head + body)
                status_line = await self._reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            if attempt:
                raise ConnectionError("server closed the connection")
            await self._connect()
        reader = self._reader
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                parts.append(await reader.readexactly(size))
                await reader.readline()
            return status, b"".join(parts)
        return status, (await reader.readexactly(length) if length else b"")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def job_spec(job_id: str, prefix: str, spec: dict[str, Any]) -> bytes:
    """The registration body Zeus's client posts (``JobSpecFromClient``), as JSON bytes."""
    body = {
        "job_id": job_id,
        "job_id_prefix": prefix,
        "batch_sizes": [8, 16, 32, 64, 128, 256, 512, 1024],
        "default_batch_size": 128,
        "eta_knob": 0.5,
        "beta_knob": 2.0,
        "target_metric": 0.5,
        "higher_is_better_metric": True,
        "max_epochs": 100,
        "num_pruning_rounds": 2,
        "window_size": 0,
        "mab_prior_mean": 0.0,
        "mab_prior_precision": 0.0,
        "mab_num_explorations": 2,
        "mab_seed": 1,
        "max_power": 3000.0,
        "number_of_gpus": 4,
        "gpu_model": "A100",
    }
    body.update(spec)
    return json.dumps(body).encode()


def cycle_bodies(job_id: str, batch_size: int, trial_number: int, k: int) -> tuple[bytes, bytes]:
    """The report (one epoch that reaches the target metric) and end-of-trial bodies of one run."""
    # Energy and time depend on the batch size (a smooth optimum near 128)
    # and a little on the run, so the bandit has something to learn.
    scale = 1.0 + 0.3 * abs((batch_size.bit_length() - 8)) + 0.01 * (k % 7)
    t = _TIME_PER_EPOCH * scale
    report = (
        '{"job_id":"%s","batch_size":%d,"trial_number":%d,"time":%r,"energy":%r,"metric":0.6,"current_epoch":1}'
        % (job_id, batch_size, trial_number, t, t * _WATTS)
    ).encode()
    end = ('{"job_id":"%s","batch_size":%d,"trial_number":%d}' % (job_id, batch_size, trial_number)).encode()
    return report, end


class _Errors:
    def __init__(self) -> None:
        self.count = 0
        self.samples: list[str] = []

    def add(self, what: str, status: int, body: bytes) -> None:
        self.count += 1
        if len(self.samples) < 5:
            self.samples.append(f"{what}: {status} {body[:300]!r}")


class Generator:
    """Connections to one server and the commands run over them."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host, self.port, self.token = host, port, token
        self._pool: list[Connection] = []

    async def _connections(self, n: int) -> list[Connection]:
        while len(self._pool) < n:
            self._pool.extend(await asyncio.gather(*(Connection.open(self.host, self.port, self.token)
                                                     for _ in range(min(n - len(self._pool), 256)))))
        return self._pool[:n]

    async def register(self, prefix: str, jobs: int, spec: dict[str, Any]) -> dict[str, Any]:
        conns = await self._connections(min(jobs, 64))
        errors = _Errors()

        async def one(conn: Connection, lo: int) -> None:
            for i in range(lo, jobs, len(conns)):
                status, body = await conn.request(b"POST", b"/jobs", job_spec(f"{prefix}-{i}", prefix, spec))
                if status not in (200, 201):
                    errors.add("register", status, body)

        await asyncio.gather(*(one(c, i) for i, c in enumerate(conns)))
        return {"registered": jobs, "errors": errors.count, "error_samples": errors.samples}

    async def cycles(self, prefix: str, jobs: int, per_job: int) -> dict[str, Any]:
        conns = await self._connections(jobs)
        lat_get: list[float] = []
        lat_report: list[float] = []
        lat_end: list[float] = []
        errors = _Errors()
        clock = time.perf_counter

        async def run(conn: Connection, i: int) -> None:
            job_id = f"{prefix}-{i}"
            get_target = f"/jobs/batch_size?job_id={job_id}".encode()
            for k in range(per_job):
                t0 = clock()
                status, body = await conn.request(b"GET", get_target)
                t1 = clock()
                lat_get.append(t1 - t0)
                if status != 200:
                    errors.add("get", status, body)
                    continue
                trial = json.loads(body)
                report, end = cycle_bodies(job_id, trial["batch_size"], trial["trial_number"], k)
                status, body = await conn.request(b"POST", b"/report", report)
                t2 = clock()
                lat_report.append(t2 - t1)
                if status != 200:
                    errors.add("report", status, body)
                status, body = await conn.request(b"PATCH", b"/trials", end)
                lat_end.append(clock() - t2)
                if status != 200:
                    errors.add("end", status, body)

        c0 = time.process_time()
        t0 = clock()
        await asyncio.gather(*(run(c, i) for i, c in enumerate(conns)))
        wall = clock() - t0
        return {"wall": wall, "cpu": time.process_time() - c0, "cycles": jobs * per_job,
                "latency": {"get": lat_get, "report": lat_report, "end": lat_end},
                "errors": errors.count, "error_samples": errors.samples}

    async def post(self, path: str, body: Any, repeat: int, concurrency: int) -> dict[str, Any]:
        conns = await self._connections(concurrency)
        data = json.dumps(body).encode()
        target = path.encode()
        lat: list[float] = []
        errors = _Errors()
        sizes: list[int] = []
        clock = time.perf_counter

        async def run(conn: Connection, lo: int) -> None:
            for _ in range(lo, repeat, len(conns)):
                t0 = clock()
                status, answer = await conn.request(b"POST", target, data)
                lat.append(clock() - t0)
                sizes.append(len(answer))
                if not 200 <= status < 300:
                    errors.add(path, status, answer)

        c0 = time.process_time()
        t0 = clock()
        await asyncio.gather(*(run(c, i) for i, c in enumerate(conns)))
        return {"wall": clock() - t0, "cpu": time.process_time() - c0, "latency": lat, "requests": repeat,
                "response_bytes": sizes[:1], "errors": errors.count, "error_samples": errors.samples}

    def close(self) -> None:
        for c in self._pool:
            c.close()
        self._pool.clear()


async def _serve_commands(gen: Generator) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd.get("op")
        try:
            if op == "quit":
                break
            if op == "register":
                answer = await gen.register(cmd["prefix"], int(cmd["jobs"]), cmd.get("spec", {}))
            elif op == "cycles":
                answer = await gen.cycles(cmd["prefix"], int(cmd["jobs"]), int(cmd["per_job"]))
            elif op == "post":
                answer = await gen.post(cmd["path"], cmd["body"], int(cmd["repeat"]), int(cmd.get("concurrency", 1)))
            elif op == "reconnect":
                gen.close()
                answer = {}
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # noqa: BLE001 - answered to the controlling process
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    gen.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the load-generator process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m banditfleet.bench.serve_load")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default=None, help="bearer token sent with every request")
    args = parser.parse_args(argv)
    try:
        import uvloop  # type: ignore[import-not-found]

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_serve_commands(Generator(args.host, args.port, args.token)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
