"""contrib/haproxy/ringline.cfg, the load balancer of docs/cluster.md, with the real HAProxy.

* ``haproxy -c`` accepts the file as shipped.
* The same file, its bind and servers pointed at a 2-node cluster on 127.0.0.1, carries a
  complete call between two Python SDK engines that both connect through it (leastconn
  puts them on different nodes), with its ``/healthz`` checks on.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterproc import ClusterProcess
from needs import missing
from ringline import CallEngine, MediaType
from ringline.testing import RecordingObserver
from serverproc import SDK_APP_ID, free_port, unique

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "contrib" / "haproxy" / "ringline.cfg"

pytestmark = pytest.mark.timeout(120)


def _haproxy() -> str:
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        missing("haproxy is not installed; ./scripts/test installs it (apt-get install haproxy)")
    return binary


def test_the_shipped_config_is_valid() -> None:
    proc = subprocess.run([_haproxy(), "-c", "-f", str(CFG)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration file is valid" in proc.stdout + proc.stderr


def _local_config(port: int, nodes: list[str]) -> str:
    """The shipped file with its bind on 127.0.0.1:``port`` and one server per node."""
    text = CFG.read_text()
    text = text.replace("maxconn 100000", "maxconn 1000")
    text, n = re.subn(r"(?m)^    bind :80$", f"    bind 127.0.0.1:{port}", text)
    assert n == 1
    text, n = re.subn(r"(?m)^    server node\d .*\n", "", text)
    assert n == 3
    servers = "".join(f"    server node{i} {url.removeprefix('http://')}\n" for i, url in enumerate(nodes))
    return text.rstrip("\n") + "\n" + servers


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    c = ClusterProcess(tmp_path / "cluster", 2).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def proxy(tmp_path: Path, cluster: ClusterProcess) -> Iterator[str]:
    binary = _haproxy()
    port = free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_local_config(port, cluster.urls))
    check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import time

        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError((tmp_path / "haproxy.log").read_text()) from None
                time.sleep(0.1)  # polling a starting process: there is no event to await
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


async def test_a_call_through_haproxy_in_front_of_two_nodes(cluster: ClusterProcess, proxy: str) -> None:
    engines: list[CallEngine] = []
    recs: list[RecordingObserver] = []
    users = [unique("hp"), unique("hp")]
    try:
        for u in users:
            e = CallEngine(proxy, device_id=f"{u}-d")
            rec = RecordingObserver()
            e.add_observer(rec)
            await e.init(SDK_APP_ID, u, cluster.sig(u))
            engines.append(e)
            recs.append(rec)
        a, b = engines
        cid = await a.calls([users[1]], MediaType.AUDIO)
        await recs[1].wait_for("on_call_received", call_id=cid)
        await b.accept()
        await recs[0].wait_for("on_call_begin", call_id=cid)
        await recs[1].wait_for("on_call_begin", call_id=cid)
        await a.hangup()
        await recs[1].wait_for("on_call_end", call_id=cid)
        await recs[0].wait_for("on_call_end", call_id=cid)
        # leastconn spread the two WebSockets over both nodes: one of them was relayed
        healths = [cluster.health(i) for i in range(2)]
        assert sorted(h["cluster"]["role"] for h in healths) == ["edge", "owner"]
    finally:
        for e in engines:
            await e.uninit()
