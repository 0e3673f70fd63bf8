"""Run Zeus 0.16.0's batch-size-optimizer server on SQLite, for the ``serve`` benchmark cases.

``python -m banditfleet.bench._zeus_server --db PATH --port P`` creates the
server's tables in the SQLite file ``PATH`` (as Zeus's own tests do, with
``Base.metadata.create_all``) and serves
``zeus.optimizer.batch_size.server.router:app`` on 127.0.0.1 with one
uvicorn worker, its access log off and Zeus's log level at WARN (its
per-report INFO line would otherwise cost it time that banditfleet's server
does not spend). Needs ``zeus[bso-server]``'s dependencies (fastapi,
sqlalchemy, aiosqlite, python-dotenv) and uvicorn.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m banditfleet.bench._zeus_server")
    parser.add_argument("--db", required=True, help="SQLite file (created)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ["ZEUS_BSO_DATABASE_URL"] = f"sqlite+aiosqlite:///{args.db}"
    os.environ.setdefault("ZEUS_BSO_LOG_LEVEL", "WARN")
    from sqlalchemy import create_engine

    from zeus.optimizer.batch_size.server.database.schema import Base

    engine = create_engine(f"sqlite:///{args.db}")
    Base.metadata.create_all(engine)
    engine.dispose()
    import uvicorn

    uvicorn.run("zeus.optimizer.batch_size.server.router:app", host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
