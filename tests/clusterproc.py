"""A cluster of real ``ringline serve --cluster`` processes for the tests.

:class:`ClusterProcess` makes a fresh PostgreSQL database, optionally its own
``nats-server`` (so a test may kill it without touching the others), and N nodes on
free ports. It looks like a :class:`~serverproc.ServerProcess` to the tests that take a
``server`` (``url``, ``sig``, ``stop``, ``log``) and adds ``urls``, ``url_for(i)`` (users
spread over the nodes) and the nodes themselves.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from needs import PG_DSN, missing, require_nats
from serverproc import ServerProcess, free_port


def _pg(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except OSError as exc:
        missing(f"PostgreSQL is absent at {PG_DSN} ({exc}); run ./scripts/test (it starts it)")


class NatsProcess:
    """A nats-server of one test, on a free port of 127.0.0.1 (kill and start it again)."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            missing("nats-server is not installed; ./scripts/test installs it (apt-get install nats-server)")
        self.binary = binary
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> NatsProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "nats.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-a", "127.0.0.1", "-p", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)  # polling a starting process: there is no event to await
        raise RuntimeError("nats-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class ClusterProcess:
    """``n`` nodes sharing one fresh database (dropped by :meth:`stop`/:meth:`kill`).

    The nodes listen on ``host`` (by default 127.0.0.1), which is also the address the
    other nodes relay to; PostgreSQL and NATS stay on 127.0.0.1."""

    def __init__(
        self,
        data_dir: Path,
        n: int = 3,
        *,
        lease: float = 1.5,
        own_nats: bool = False,
        own_pg: bool = False,
        heartbeat_grace: float = 4.0,
        host: str = "127.0.0.1",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.db_name = "ringline_cl_" + uuid.uuid4().hex[:12]
        self.pg: PostgresProcess | None = PostgresProcess(data_dir / "pg") if own_pg else None
        self.db = self.pg.url if self.pg is not None else PG_DSN.rsplit("/", 1)[0] + "/" + self.db_name
        self.lease = lease
        self.nats: NatsProcess | None = NatsProcess(data_dir / "nats") if own_nats else None
        self.nats_url = self.nats.url if self.nats is not None else require_nats()
        self.nodes: list[ServerProcess] = []
        for i in range(n):
            self.nodes.append(
                ServerProcess(
                    data_dir / f"n{i}",
                    db=self.db,
                    heartbeat_grace=heartbeat_grace,
                    host=host,
                    extra_args=(
                        "--cluster",
                        self.nats_url,
                        "--node-id",
                        f"n{i}",
                        "--cluster-lease",
                        str(lease),
                        *extra_args,
                    ),
                )
            )

    def start(self) -> ClusterProcess:
        if self.pg is not None:
            self.pg.init().start()
        else:
            _pg(f'CREATE DATABASE "{self.db_name}"')
        if self.nats is not None:
            self.nats.start()
        for node in self.nodes:
            node.start()
        return self

    # what tests of a single server use
    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def url_for(self, i: int) -> str:
        """The node the ``i``-th user connects to: users are spread round robin."""
        return self.nodes[i % len(self.nodes)].url

    def sig(self, user_id: str, expire: int = 86400) -> str:
        return self.nodes[0].sig(user_id, expire)

    def log(self) -> str:
        return "\n".join(f"--- {n.args[n.args.index('--node-id') + 1]}\n{n.log()}" for n in self.nodes)

    def health(self, i: int) -> dict[str, Any]:
        with urllib.request.urlopen(self.nodes[i].url + "/healthz", timeout=3) as r:
            return dict(json.loads(r.read()))

    def owner(self) -> int | None:
        """The index of the node that owns the calls now, by the nodes' own word."""
        for i, n in enumerate(self.nodes):
            if n.proc is None or n.proc.poll() is not None:
                continue
            try:
                if self.health(i)["cluster"]["role"] == "owner":
                    return i
            except OSError:
                continue
        return None

    def stop(self) -> int:
        codes = [n.stop() for n in self.nodes]
        self._drop()
        return max(codes, key=abs)

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()
        self._drop()

    def _drop(self) -> None:
        if self.nats is not None:
            self.nats.kill()
        if self.pg is not None:
            self.pg.kill()
        else:
            _pg(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


async def wait_owner(cluster: ClusterProcess, not_node: int, deadline_s: float) -> tuple[int, float]:
    """The node that owns the calls once ``not_node`` lost them, and how long it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < deadline_s:
        o = await asyncio.to_thread(cluster.owner)
        if o is not None and o != not_node:
            return o, time.monotonic() - t0
        await asyncio.sleep(0.05)  # polling other processes' state: no event to await
    raise AssertionError(f"no node took over within {deadline_s} s: {cluster.log()}")


def connections(users: list[tuple[Any, Any, Any]]) -> list[object]:
    """The connection each engine uses now (to tell, later, that it reconnected)."""
    return [e._session._conn if e._session is not None else None for e, _, _ in users]


async def moved(users: list[tuple[Any, Any, Any]], before: list[object]) -> None:
    """Wait until every engine has reconnected (a connection other than ``before``) and
    resumed: it is online again."""
    from ringline.client._session import Phase

    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        now = connections(users)
        if all(
            c is not None and c is not b and e._session.phase is Phase.ONLINE
            for (e, _, _), c, b in zip(users, now, before, strict=True)
        ):
            return
        await asyncio.sleep(0.05)  # the SDK has no public reconnect event to await
    raise AssertionError(
        "the engines did not reconnect: "
        + repr([(e.server_url, e._session and e._session.phase) for e, _, _ in users])
    )


class PostgresProcess:
    """A PostgreSQL server of one test (its own data folder and port on 127.0.0.1), so a
    test may stop and restart it without touching the others. Runs as the ``postgres``
    user when started as root (PostgreSQL refuses root)."""

    def __init__(self, data_dir: Path) -> None:
        import glob
        import os

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            missing("PostgreSQL's server programs are not installed; ./scripts/test installs postgresql")
        self.bin = Path(bins[-1]).parent
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> PostgresProcess:
        import os
        import shutil as sh

        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as:
            sh.chown(self.data_dir, "postgres", "postgres")
            os.chmod(self.data_dir, 0o700)
            for parent in self.data_dir.parents:  # the postgres user must reach its folder
                if str(parent).startswith("/tmp/") or str(parent) == "/tmp":
                    os.chmod(parent, os.stat(parent).st_mode | 0o711)
        self._run(str(self.bin / "initdb"), "-D", str(self.data_dir / "pg"), "-U", "postgres", "--auth=trust")
        return self

    def start(self) -> PostgresProcess:
        opts = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data_dir / "pg"),
            "-o",
            opts,
            "-w",
            "-l",
            str(self.data_dir / "pg.log"),
            "start",
        )
        return self

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data_dir / "pg"), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        import contextlib

        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(
                str(self.bin / "pg_ctl"), "-D", str(self.data_dir / "pg"), "-m", "immediate", "-w", "stop"
            )
