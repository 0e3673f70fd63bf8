"""Server and load-generator processes for the ``serve`` benchmark cases and tests.

Everything here runs on 127.0.0.1, on ports the kernel hands out, and every
process started is stopped by its PID (SIGTERM, then SIGKILL after a grace
period). CPU seconds of a process are read from ``/proc/PID/stat`` so a
benchmark can report the server's CPU next to the load generator's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "free_port",
    "ServerProcess",
    "LoadGenerator",
    "start_banditfleet_server",
    "start_zeus_server",
    "zeus_server_missing",
    "zeus_server_python",
    "process_cpu_seconds",
]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (from ``/proc``; None where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    # Fields after the command: state is [0]; utime and stime are the 14th and 15th of the line.
    return (int(fields[11]) + int(fields[12])) / ticks


def _stop(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


class ServerProcess:
    """An HTTP server in a child process, listening on ``host:port``."""

    def __init__(self, argv: list[str], port: int, host: str = "127.0.0.1", env: dict[str, str] | None = None,
                 log: str | os.PathLike | None = None, name: str = "server") -> None:
        self.argv, self.port, self.host, self.name = argv, port, host, name
        self._log_path = Path(log) if log is not None else None
        self._log = open(self._log_path, "ab") if self._log_path is not None else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log_tail(self, chars: int = 2000) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout: float = 120.0) -> ServerProcess:
        """Wait until the port accepts connections; raise with the log's tail if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not listen on {self.host}:{self.port} within {timeout} s: {self.log_tail()}")

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.proc.pid)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        _stop(self.proc, grace)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


#: Environment variable naming the Python interpreter that runs Zeus's server.
ZEUS_PYTHON_ENV = "BANDITFLEET_ZEUS_PYTHON"

_ZEUS_PROBE = (
    "import os; os.environ['ZEUS_BSO_DATABASE_URL'] = 'sqlite+aiosqlite:///:memory:'; "
    "import zeus, uvicorn, aiosqlite, sqlalchemy; "
    "assert zeus.__version__ == '0.16.0', 'zeus ' + zeus.__version__ + ' is not 0.16.0'; "
    "import zeus.optimizer.batch_size.server.router"
)


def zeus_server_python() -> tuple[str | None, str | None]:
    """(interpreter that can run Zeus 0.16.0's server, None) or (None, why not).

    Zeus 0.16.0's server needs FastAPI with pydantic v1 models (FastAPI
    < 0.100 with ``pydantic<2``, or one of the 0.119-0.12x releases that still
    accept ``pydantic.v1`` models), SQLAlchemy with aiosqlite and greenlet,
    python-dotenv and uvicorn; its seeded generators only persist on
    numpy < 2. Such an environment usually conflicts with banditfleet's own,
    so the interpreter is ``$BANDITFLEET_ZEUS_PYTHON`` when set (see
    docs/performance.md for the one-line setup), else this interpreter if it
    can import the server.
    """
    candidates = [os.environ[ZEUS_PYTHON_ENV]] if os.environ.get(ZEUS_PYTHON_ENV) else [sys.executable]
    why = ""
    for python in candidates:
        try:
            probe = subprocess.run([python, "-c", _ZEUS_PROBE], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"{python}: {exc}"
            continue
        if probe.returncode == 0:
            return python, None
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        why = f"{python} cannot import Zeus 0.16.0's server ({last})"
    return None, why + f"; set {ZEUS_PYTHON_ENV} to a Python with zeus==0.16.0's server (docs/performance.md)"


def zeus_server_missing() -> str | None:
    """Why Zeus 0.16.0's server cannot run here, or None when it can."""
    return zeus_server_python()[1]


def start_zeus_server(workdir: str | os.PathLike, port: int | None = None, python: str | None = None) -> ServerProcess:
    """Zeus 0.16.0's server on a fresh SQLite file in ``workdir``, one uvicorn worker, ready.

    ``python``: the interpreter (default: :func:`zeus_server_python`'s).
    """
    if python is None:
        python, why = zeus_server_python()
        if python is None:
            raise RuntimeError(why)
    port = port or free_port()
    db = Path(workdir) / "zeus-bso.db"
    # The launcher is a plain script (stdlib, zeus, sqlalchemy, uvicorn), so
    # it runs in an interpreter without banditfleet.
    argv = [python, str(Path(__file__).with_name("_zeus_server.py")), "--db", str(db), "--port", str(port)]
    env = dict(os.environ)
    env.pop("ZEUS_BSO_DATABASE_URL", None)
    return ServerProcess(argv, port, env=env, log=Path(workdir) / "zeus-server.log", name="zeus server").wait_ready()


def start_banditfleet_server(folder: str | os.PathLike, port: int | None = None, extra: list[str] | None = None,
                             log: str | os.PathLike | None = None) -> ServerProcess:
    """``banditfleet serve --folder FOLDER`` on 127.0.0.1, ready (the kernels may compile on first start)."""
    port = port or free_port()
    argv = [sys.executable, "-m", "banditfleet", "serve", "--folder", str(folder), "--host", "127.0.0.1",
            "--port", str(port), *(extra or [])]
    log = log if log is not None else Path(folder).parent / (Path(folder).name + "-server.log")
    return ServerProcess(argv, port, log=log, name="banditfleet serve").wait_ready(timeout=300)


class LoadGenerator:
    """The load generator (``banditfleet.bench.serve_load``) in its own process, driven by JSON lines."""

    def __init__(self, port: int, host: str = "127.0.0.1", token: str | None = None) -> None:
        argv = [sys.executable, "-m", "banditfleet.bench.serve_load", "--host", host, "--port", str(port)]
        if token:
            argv += ["--token", token]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def command(self, **cmd: Any) -> dict[str, Any]:
        """Send one command; return its answer (raises RuntimeError on a failed command)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited with code {self.proc.poll()}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"load generator: {answer['error']}")
        return answer

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _stop(self.proc, 5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
