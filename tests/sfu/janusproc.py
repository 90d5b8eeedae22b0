"""A real Janus Gateway (Debian ``janus`` 1.1.x) for the tests: its own config folder in a
temporary directory, the HTTP transport on a free port of 127.0.0.1, the admin API with an
admin secret, and only the VideoRoom plugin (string room ids, an ``admin_key``).

``JanusProcess(folder).start()`` writes the configs, starts ``janus`` in the foreground
and waits until ``GET /janus/info`` answers; :meth:`JanusProcess.stop` ends it by its
PID (SIGTERM, then SIGKILL). With ``prefix`` (``ip netns exec NAME``, tests/media/netns.py)
it runs inside a loopback-only network namespace with :func:`shim` preloaded: Janus (libnice)
skips interfaces flagged loopback when it gathers ICE candidates, and the shim clears that
flag so that it offers 127.0.0.1 candidates there. On a host with a real network interface
no shim is needed (``ice_enforce_list`` names that interface, or ``""``: every one).
``host``: the address its HTTP API listens on (in that namespace); ``turn_rest_api``: the
URL Janus asks for TURN credentials (with the SFU secret as its key, docs/sfu.md).

``scripts/test`` installs ``janus`` and ``gcc`` (for the shim) when they are absent; here a
missing one goes through :func:`needs.missing` (skipped on a developer's machine, a failure
under CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from needs import missing
from serverproc import free_port

HERE = Path(__file__).resolve().parent

#: The videoroom plugin's ``admin_key`` (and Janus's ``api_secret``): ``ringline serve
#: --sfu-secret`` of the tests.
SECRET = "test-sfu-secret"
#: The admin API's ``admin_secret``.
ADMIN_SECRET = "test-janus-admin"
#: How long Janus keeps the packets it sent for retransmission (its ``min_nack_queue``,
#: 500 ms by default). On a small shared machine a member's process may stall for a
#: second or two and lose packets in its socket; aiortc's video then waits for the lost
#: one, which only a retransmission answering its NACK brings back.
NACK_QUEUE_MS = 3000

_LIBS = "/usr/lib/x86_64-linux-gnu/janus"
_PLUGINS_OFF = "audiobridge duktape echotest lua nosip recordplay sip streaming textroom videocall voicemail"
_TRANSPORTS_OFF = "mqtt nanomsg pfunix rabbitmq websockets"
_EVENTS_OFF = "gelfevh mqttevh nanomsgevh rabbitmqevh sampleevh wsevh"


def _libdir() -> str:
    for cand in (_LIBS, "/usr/lib/janus", "/usr/lib/aarch64-linux-gnu/janus"):
        if Path(cand, "plugins", "libjanus_videoroom.so").exists():
            return cand
    missing("Janus's VideoRoom plugin is not installed (apt-get install janus; ./scripts/test does)")


def janus_binary() -> str:
    found = shutil.which("janus") or ("/usr/bin/janus" if Path("/usr/bin/janus").exists() else None)
    if found is None:
        missing("janus (Janus WebRTC Gateway) is not installed: apt-get install janus (./scripts/test does)")
    return found


def shim(folder: Path) -> Path:
    """Build tests/sfu/noloopflag.c into ``folder``; the shared object's path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        missing("gcc is needed to build the Janus loopback shim: apt-get install gcc (./scripts/test does)")
    out = folder / "noloopflag.so"
    if not out.exists():
        subprocess.run(
            [gcc, "-shared", "-fPIC", "-O2", "-o", str(out), str(HERE / "noloopflag.c"), "-ldl"],
            check=True,
            capture_output=True,
        )
    return out


def _libs(names: str) -> str:
    return ",".join(f"libjanus_{n}.so" for n in names.split())


class JanusProcess:
    """One Janus in the foreground, configured in ``folder``. ``url``: its HTTP API
    (``http://127.0.0.1:PORT/janus``); ``admin_url``: its admin API."""

    def __init__(
        self,
        folder: Path,
        *,
        prefix: Sequence[str] = (),
        preload_shim: bool = False,
        port: int = 0,
        admin_port: int = 0,
        rtp_ports: tuple[int, int] = (20000, 20400),
        session_timeout: int = 60,
        host: str = "127.0.0.1",
        ice_enforce_list: str = "lo",
        turn_rest_api: str = "",
    ) -> None:
        self.folder = folder
        self.prefix = list(prefix)
        self.preload_shim = preload_shim
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.rtp_ports = rtp_ports
        self.session_timeout = session_timeout
        self.host = host
        self.ice_enforce_list = ice_enforce_list
        self.turn_rest_api = turn_rest_api
        self.url = f"http://{host}:{self.port}/janus"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}/admin"
        self.log_path = folder / "janus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_configs(self) -> Path:
        conf = self.folder / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        libs = _libdir()
        nat = "nice_debug = false"
        if self.ice_enforce_list:
            nat += f'  ice_enforce_list = "{self.ice_enforce_list}"'
        if self.turn_rest_api:
            nat += f'\n\tturn_rest_api = "{self.turn_rest_api}"  turn_rest_api_key = "{SECRET}"'
        (conf / "janus.jcfg").write_text(
            f"""general: {{
\tconfigs_folder = "{conf}"
\tplugins_folder = "{libs}/plugins"
\ttransports_folder = "{libs}/transports"
\tevents_folder = "{libs}/events"
\tloggers_folder = "{libs}/loggers"
\tdebug_level = 4
\tserver_name = "ringline-test-janus"
\tsession_timeout = {self.session_timeout}
\tapi_secret = "{SECRET}"
\tadmin_secret = "{ADMIN_SECRET}"
}}
media: {{ rtp_port_range = "{self.rtp_ports[0]}-{self.rtp_ports[1]}"  min_nack_queue = {NACK_QUEUE_MS} }}
nat: {{
\t{nat}
}}
plugins: {{ disable = "{_libs(_PLUGINS_OFF)}" }}
transports: {{ disable = "{_libs(_TRANSPORTS_OFF)}" }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
events: {{ broadcast = false  disable = "{_libs(_EVENTS_OFF)}" }}
"""
        )
        (conf / "janus.transport.http.jcfg").write_text(
            f"""general: {{
\tjson = "plain"  base_path = "/janus"  http = true  port = {self.port}  ip = "{self.host}"  https = false
}}
admin: {{
\tadmin_base_path = "/admin"  admin_http = true  admin_port = {self.admin_port}  admin_ip = "127.0.0.1"
\tadmin_https = false
}}
"""
        )
        (conf / "janus.plugin.videoroom.jcfg").write_text(
            f"""general: {{ admin_key = "{SECRET}"  string_ids = true }}
"""
        )
        return conf

    def start(self, timeout: float = 30.0) -> JanusProcess:
        binary = janus_binary()
        conf = self.write_configs()
        env = dict(os.environ)
        cmd = [*self.prefix]
        if self.preload_shim:  # for janus alone, not for ip(8)
            cmd += ["env", f"LD_PRELOAD={shim(self.folder)}"]
        cmd += [binary, "-C", str(conf / "janus.jcfg"), "-F", str(conf), "-o"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            if (self._info_in_netns() if self.prefix else self.info()) is not None:
                return self
            time.sleep(0.1)  # polling a process that has no readiness signal
        self.stop()
        raise RuntimeError(f"janus did not answer /janus/info within {timeout} s:\n{self.log()[-3000:]}")

    def info(self) -> dict[str, Any] | None:
        """``GET /janus/info`` (root namespace only), or None while it does not answer."""
        try:
            with urllib.request.urlopen(self.url + "/info", timeout=2) as r:
                body: dict[str, Any] = json.loads(r.read())
                return body
        except OSError:
            return None

    def _info_in_netns(self) -> str | None:
        got = subprocess.run(
            [
                *self.prefix,
                "python3",
                "-c",
                f"import urllib.request as u; print(u.urlopen('{self.url}/info', timeout=2).read().decode())",
            ],
            capture_output=True,
            text=True,
        )
        return got.stdout if got.returncode == 0 and "janus" in got.stdout else None

    def admin(self, request: str, **fields: Any) -> dict[str, Any]:
        """One admin API request (root namespace only), e.g. ``admin("list_sessions")``."""
        body = {
            "janus": request,
            "transaction": f"t{time.monotonic_ns()}",
            "admin_secret": ADMIN_SECRET,
            **fields,
        }
        req = urllib.request.Request(
            self.admin_url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM by PID, SIGKILL after 10 s; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@contextlib.contextmanager
def running(folder: Path, **kw: Any) -> Iterator[JanusProcess]:
    j = JanusProcess(folder, **kw).start()
    try:
        yield j
    finally:
        j.stop()
