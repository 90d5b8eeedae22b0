"""``ringline serve``, ``ringline usersig`` and ``ringline callback-secrets``. Every flag is
also ``RINGLINE_<FLAG>``."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from .core.errors import LocalCallError
from .core.usersig import DEFAULT_EXPIRE, gen_user_sig
from .server.config import (
    AppIdentity,
    Settings,
    check_ice_transport_policy,
    check_recording,
    check_sfu,
    check_turn,
    load_callback_secrets,
    load_identity,
    parse_ice_servers,
)
from .server.logs import LOG_FORMATS, configure_logging

__all__ = ["main"]


def _env(name: str, default: str) -> str:
    return os.environ.get("RINGLINE_" + name.upper().replace("-", "_"), default)


class _Parser(argparse.ArgumentParser):
    """Bad input is one line on stderr and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _number(
    convert: Callable[[str], float], low: float, high: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a number from ``low`` (excluded if ``above``) to ``high``."""
    kind = "a whole number" if convert is int else "a number"

    def check(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if (
            value is None
            or value != value
            or value < low
            or (above and value == low)
            or (high is not None and value > high)
        ):
            bound = f"above {low:g}" if above else f"at least {low:g}"
            bound += f" and at most {high:g}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"expected {kind} {bound}, got {text!r}")
        return value

    return check


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {text!r}")
    return level


def _log_format(text: str) -> str:
    fmt = text.strip().lower()
    if fmt not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"expected {' or '.join(LOG_FORMATS)}, got {text!r}")
    return fmt


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ringline", description="Self-hostable audio/video calling.")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = Settings()

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--data-dir",
            default=_env("data_dir", d.data_dir),
            help="folder for the SQLite store and app.json (default ./ringline-data)",
        )
        sp.add_argument(
            "--sdk-app-id",
            type=_number(int, 0, 2**32 - 1),
            default=_env("sdk_app_id", "0"),
            help="app id (default: generated once, kept in the data folder)",
        )
        sp.add_argument(
            "--secret-key",
            default=_env("secret_key", ""),
            help="secret key for user sigs (default: generated once, kept in the data folder)",
        )

    s = sub.add_parser("serve", help="run the call server")
    common(s)
    s.add_argument("--host", default=_env("host", d.host))
    s.add_argument(
        "--port", type=_number(int, 0, 65535), default=_env("port", str(d.port)), help="0: any free port"
    )
    s.add_argument(
        "--db",
        default=_env("db", ""),
        help="store URL: sqlite:///path or postgresql://user@host/db (default: SQLite in the data folder)",
    )
    s.add_argument(
        "--db-schema",
        default=_env("db_schema", ""),
        help="PostgreSQL schema of the tables, created if missing (default ringline)",
    )
    s.add_argument("--admin-identifier", default=_env("admin_identifier", d.admin_identifier))
    s.add_argument(
        "--heartbeat-interval",
        type=_number(float, 0, above=True),
        default=_env("heartbeat_interval", str(d.heartbeat_interval)),
    )
    s.add_argument(
        "--heartbeat-grace",
        type=_number(float, 0, above=True),
        default=_env("heartbeat_grace", str(d.heartbeat_grace)),
    )
    s.add_argument(
        "--sig-grace",
        type=_number(float, 0),
        default=_env("sig_grace", str(d.sig_grace)),
        help="seconds a device may stay after its sig expired (default 60)",
    )
    s.add_argument("--log-level", type=_log_level, default=_env("log_level", d.log_level))
    s.add_argument(
        "--log-format",
        type=_log_format,
        default=_env("log_format", d.log_format),
        help="console (readable lines, default) or json (one JSON object per line)",
    )
    s.add_argument(
        "--node-id",
        default=_env("node_id", d.node_id),
        help="this server's name in logs and metrics (default: <host name>:<port>, the port bound)",
    )
    s.add_argument(
        "--metrics",
        action="store_true",
        default=_env("metrics", "").lower() in ("1", "true", "yes"),
        help="serve Prometheus metrics at GET /metrics (see docs/operations.md)",
    )
    s.add_argument(
        "--metrics-token",
        default=_env("metrics_token", ""),
        help="with --metrics: GET /metrics needs the header 'Authorization: Bearer <token>'",
    )
    s.add_argument(
        "--cluster",
        default=_env("cluster", ""),
        metavar="NATS_URL",
        help="join the cluster that meets at this NATS server (nats://host:4222); needs "
        "--db postgresql://… shared by every node (see docs/cluster.md)",
    )
    s.add_argument(
        "--public-url",
        default=_env("public_url", ""),
        metavar="URL",
        help="with --cluster: the base URL other nodes reach this one at (default http://<host>:<port>)",
    )
    s.add_argument(
        "--cluster-lease",
        type=_number(float, 0, above=True),
        default=_env("cluster_lease", "3"),
        metavar="SECONDS",
        help="with --cluster: how long the node owning the calls keeps them without renewing "
        "its lease; failover takes about this long (default 3)",
    )
    _callback_flags(s)
    s.add_argument(
        "--callback-workers",
        default=_env("callback_workers", "auto"),
        metavar="N",
        help="deliver callbacks from N processes of their own (0: from the server's event loop); "
        "default auto: 1 process, started when callbacks are first queued, on a machine with "
        "more than one core and a file or PostgreSQL store, without --cluster; else 0",
    )
    _media_flags(s)
    _limit_flags(s, d)

    c = sub.add_parser(
        "callback-secrets",
        help="print the callback token and webhook secret(s) your receiver verifies with",
    )
    common(c)
    _callback_flags(c)

    u = sub.add_parser("usersig", help="print a user sig for the configured app")
    common(u)
    u.add_argument("user_id")
    u.add_argument(
        "--expire",
        type=_number(int, 1),
        default=DEFAULT_EXPIRE,
        help="validity in seconds (default 180 days)",
    )
    u.add_argument(
        "--create",
        action="store_true",
        help="make a new app (id and secret key) in the data folder if it has none; the server must "
        "then use that folder",
    )
    return p


def _callback_flags(sp: argparse.ArgumentParser) -> None:
    d = Settings()
    sp.add_argument(
        "--callback-token",
        default=_env("callback_token", ""),
        help="token of the Tencent-style Sign on callbacks (default: generated once, kept in data folder)",
    )
    sp.add_argument(
        "--webhook-secret",
        action="append",
        default=None,
        help="whsec_ secret of the Standard Webhooks signature; give it twice while rotating, new first "
        "(env: comma-separated; default: generated once, kept in the data folder)",
    )
    sp.add_argument(
        "--callback-give-up-after",
        type=_number(float, float("-inf")),
        default=_env("callback_give_up_after", str(d.callback_give_up_after / 3600)),
        help="hours after an event when retrying its callback stops (default 24)",
    )
    sp.add_argument(
        "--callback-retention",
        type=_number(float, float("-inf")),
        default=_env("callback_retention", str(d.callback_retention / 3600)),
        help="hours delivered callbacks stay listed before they are purged; failed ones stay until "
        "redelivered (default 168 = 7 days; the outbox holds about callbacks/s x this many rows)",
    )
    sp.add_argument(
        "--callback-retry-delays",
        default=_env("callback_retry_delays", ",".join(f"{x:g}" for x in d.callback_retry_delays)),
        help="comma-separated caps in seconds of the random wait after attempt 1, 2, ...; the last "
        "repeats (default %(default)s)",
    )


#: More delivery processes than this only contend for the store.
MAX_CALLBACK_WORKERS = 16


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _in_memory(db: str) -> bool:
    return db.lower().startswith("sqlite:") and (db.rstrip("/").lower() == "sqlite:" or ":memory:" in db)


def _callback_workers(value: str, db: str, cluster: str = "") -> tuple[int, bool] | str:
    """(worker count, started on demand), or the error to print. ``auto``: one worker
    started when callbacks are first queued, where it can help (more than one core, a
    store other processes can open, a single node: in a cluster every node delivers,
    and a dead node's own claims are handed back at once); else delivery on the
    server's event loop."""
    if value.strip().lower() == "auto":
        return (1, True) if _cores() > 1 and not _in_memory(db) and not cluster else (0, False)
    try:
        n = int(value)
    except ValueError:
        return f"expected auto or a whole number of processes from 0 to {MAX_CALLBACK_WORKERS}, got {value!r}"
    if not 0 <= n <= MAX_CALLBACK_WORKERS:
        return f"expected auto or 0 to {MAX_CALLBACK_WORKERS} processes, got {n}"
    if n and _in_memory(db):
        return "worker processes cannot share an in-memory SQLite store; use a file (default) or PostgreSQL"
    return n, False


def _webhook_secrets(args: argparse.Namespace) -> tuple[str, ...]:
    given: list[str] = args.webhook_secret or [
        x.strip() for x in _env("webhook_secret", "").split(",") if x.strip()
    ]
    return tuple(given)


def _media_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--ice-server",
        action="append",
        default=None,
        metavar="URL",
        help="STUN/TURN server clients use for media (stun:, turn:, turns:); repeat for several "
        "(env RINGLINE_ICE_SERVERS: comma-separated; default none: media only between host addresses)",
    )
    sp.add_argument("--ice-username", default=_env("ice_username", ""), help="username for the TURN servers")
    sp.add_argument(
        "--ice-credential", default=_env("ice_credential", ""), help="credential for the TURN servers"
    )
    sp.add_argument(
        "--ice-transport-policy",
        default=_env("ice_transport_policy", "all"),
        metavar="all|relay",
        help="relay: clients send media only through the TURN servers (hides users' addresses from "
        "each other; needs a turn: --ice-server) (env RINGLINE_ICE_TRANSPORT_POLICY; default all)",
    )
    sp.add_argument(
        "--turn-url",
        action="append",
        default=None,
        metavar="URL",
        help="TURN server (turn:, turns:) run with coturn's use-auth-secret: each device gets its own "
        "credential for it at login and resume; repeat for several (env RINGLINE_TURN_URLS: comma-separated)",
    )
    sp.add_argument(
        "--turn-secret",
        default=_env("turn_secret", ""),
        metavar="SECRET",
        help="the TURN server's static-auth-secret; needs --turn-url (env RINGLINE_TURN_SECRET)",
    )
    sp.add_argument(
        "--turn-ttl",
        type=_positive(float, "--turn-ttl"),
        default=_env("turn_ttl", "86400"),
        metavar="SECONDS",
        help="how long a TURN credential stays valid after the login or resume that gave it; at least "
        "the longest call (env RINGLINE_TURN_TTL; default 86400)",
    )
    sp.add_argument(
        "--sfu",
        action="append",
        default=None,
        metavar="janus=URL",
        help="Janus (VideoRoom) HTTP API that group calls go through, e.g. "
        "janus=http://127.0.0.1:8088/janus; repeat for several (env RINGLINE_SFU: comma-separated; "
        "default none: group calls are a full mesh; see docs/sfu.md)",
    )
    sp.add_argument(
        "--sfu-secret",
        default=_env("sfu_secret", ""),
        metavar="SECRET",
        help="Janus's api_secret and the VideoRoom's admin_key; needs --sfu (env RINGLINE_SFU_SECRET)",
    )
    sp.add_argument(
        "--sfu-min-members",
        default=_env("sfu_min_members", "3"),
        metavar="N",
        help="with --sfu: calls of at least N members (2 to 9) get an SFU room "
        "(env RINGLINE_SFU_MIN_MEMBERS; default 3)",
    )
    sp.add_argument(
        "--record-calls",
        action="store_true",
        default=_env("record_calls", "").lower() in ("1", "true", "yes"),
        help="record every call (needs --sfu; env RINGLINE_RECORD_CALLS; default: only calls placed "
        "with params.record or started over REST; see docs/recording.md)",
    )
    sp.add_argument(
        "--recordings",
        default=_env("recordings", ""),
        metavar="DIR",
        help="where recordings go; Janus writes its .mjr files under DIR/mjr, so it must run on this "
        "machine or share the folder (env RINGLINE_RECORDINGS; default DATA_DIR/recordings)",
    )
    sp.add_argument(
        "--recording-retention-days",
        type=float,
        default=_env("recording_retention_days", "0"),
        metavar="N",
        help="delete recordings older than N days (env RINGLINE_RECORDING_RETENTION_DAYS; default 0: keep)",
    )
    sp.add_argument(
        "--dev",
        action="store_true",
        default=_env("dev", "").lower() in ("1", "true", "yes"),
        help="development mode: POST /dev/usersig mints a user sig for ANY user id. Never in production",
    )


def _limit_flags(sp: argparse.ArgumentParser, d: Settings) -> None:
    """Connection limits (docs/protocol.md "Limits"); each must be > 0."""
    for flag, typ, default, what in (
        ("--login-timeout", float, d.login_timeout, "seconds a WebSocket may stay open without a login"),
        ("--max-unauthenticated", int, d.max_unauthenticated, "WebSockets one address may hold unlogged"),
        ("--header-timeout", float, d.header_timeout, "seconds for an HTTP request's headers to arrive"),
        ("--rate-limit", float, d.rate_limit_per_s, "frames per second one WebSocket may send"),
        ("--max-unacked", int, d.max_unacked, "pushes a device may leave unacknowledged"),
    ):
        name = flag[2:]
        sp.add_argument(
            flag,
            type=_positive(typ, flag),
            default=_env(name, str(default)),
            help=f"{what} (env RINGLINE_{name.upper().replace('-', '_')}; default {default:g})",
        )


def _positive(typ: type[float] | type[int], flag: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = typ(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{flag} must be a number > 0, got {text!r}")
        return value

    return parse


def _fail(message: str) -> int:
    """Print ``message`` as the one line of a config error; the exit code to return."""
    print("ringline: " + " ".join(message.split()), file=sys.stderr)
    return 2


def _no_app(data_dir: str, consequence: str, fix: str = "") -> str | None:
    """The one-line refusal of a command that needs the server's data folder, when
    ``data_dir`` holds no app (``app.json``); None when it does. Such a command never
    makes an app behind the operator's back (only ``serve`` and ``usersig --create`` do)."""
    app_json = Path(data_dir, "app.json").resolve()
    if app_json.exists():
        return None
    return (
        f"no app in {app_json.parent} ({app_json.name} is missing), so {consequence}: pass the "
        f"server's data folder with --data-dir (or RINGLINE_DATA_DIR){fix}"
    )


def _usersig(args: argparse.Namespace) -> int:
    folder = Path(args.data_dir).resolve()
    given = bool(args.sdk_app_id and args.secret_key)
    if not given and not args.create:
        refused = _no_app(
            args.data_dir,
            "a sig from here would not work on your server",
            ", or --create to make a new app there",
        )
        if refused is not None:
            return _fail(refused)
    try:
        # An app given by flags needs no folder: none is read or written.
        ident = (
            AppIdentity(args.sdk_app_id, args.secret_key)
            if given
            else load_identity(args.data_dir, args.sdk_app_id, args.secret_key)
        )
        sig = gen_user_sig(
            ident.sdk_app_id, ident.secret_key, args.user_id, args.expire, now=int(time.time())
        )
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read the app of {folder}: {exc}")
    except LocalCallError as exc:
        return _fail(exc.message)
    made = "new app" if ident.generated else "app"
    where = "given by --sdk-app-id/--secret-key" if given else f"of {folder}"
    print(f"ringline usersig: {made} {ident.sdk_app_id} {where}", file=sys.stderr)
    print(sig)
    return 0


def _program() -> str:
    """How this program was started, as the operator can type it again from here:
    ``ringline`` when that is on the PATH, else the path (``.venv/bin/ringline``)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) != "ringline":
        return "ringline"  # python -m ringline.cli, or embedded: the installed name
    found = shutil.which("ringline")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "ringline"
    rel = os.path.relpath(argv0)
    return argv0 if rel.startswith("..") else rel


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv`` (default: the process's arguments); its exit code."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while reading the configuration: nothing started yet
        print("ringline: interrupted; nothing is left running", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "usersig":
        return _usersig(args)
    if args.cmd == "callback-secrets" and not (args.callback_token and _webhook_secrets(args)):
        refused = _no_app(args.data_dir, "it is not where your server keeps its callback secrets")
        if refused is not None:
            return _fail(refused)
    try:
        ident = None
        if args.cmd == "serve":  # the server makes its app on its first start
            ident = load_identity(args.data_dir, args.sdk_app_id, args.secret_key)
        cb = load_callback_secrets(args.data_dir, args.callback_token, _webhook_secrets(args))
    except OSError as exc:
        return _fail(f"--data-dir {args.data_dir}: {exc.strerror or exc} ({exc.filename or args.data_dir})")
    except ValueError as exc:
        return _fail(str(exc))
    if args.callback_give_up_after < 1:
        print("ringline: --callback-give-up-after must be at least 1 hour", file=sys.stderr)
        return 2
    try:
        delays = tuple(float(x) for x in args.callback_retry_delays.split(",") if x.strip())
        if not delays or any(b < a for a, b in itertools.pairwise(delays)) or delays[-1] <= 0:
            raise ValueError
    except ValueError:
        print(
            "ringline: --callback-retry-delays must be comma-separated seconds that never decrease, "
            f"the last > 0, e.g. 1,5,30,120 (got {args.callback_retry_delays!r})",
            file=sys.stderr,
        )
        return 2
    if args.cmd == "serve":
        from .server.store.postgres import check_schema_name

        try:
            check_schema_name(args.db_schema or "ringline")
        except ValueError as exc:
            return _fail(f"--db-schema: {exc}")
        try:
            ice = parse_ice_servers(args.ice_server or _env("ice_servers", "").split(","))
        except ValueError as exc:
            print(f"ringline: --ice-server: {exc}", file=sys.stderr)
            return 2
        turn = tuple(u.strip() for u in args.turn_url or _env("turn_urls", "").split(",") if u.strip())
        try:
            check_turn(turn, args.turn_secret)
        except ValueError as exc:
            return _fail(str(exc))
        try:
            min_members = int(args.sfu_min_members)
        except ValueError:
            return _fail(f"--sfu-min-members must be a whole number from 2 to 9, got {args.sfu_min_members}")
        sfu_entries = tuple(e.strip() for e in args.sfu or _env("sfu", "").split(",") if e.strip())
        try:
            sfu_urls = check_sfu(sfu_entries, args.sfu_secret, min_members)
            check_recording(args.record_calls, sfu_urls, args.recording_retention_days)
        except ValueError as exc:
            return _fail(str(exc))
        try:
            policy = check_ice_transport_policy(args.ice_transport_policy, ice + turn)
        except ValueError as exc:
            print(f"ringline: --ice-transport-policy: {exc}", file=sys.stderr)
            return 2
    if args.cmd == "serve" and (args.cluster or args.public_url):
        problem = _cluster_problem(args.cluster, args.public_url, args.db)
        if problem is not None:
            return _fail(problem)
    workers, on_demand = 0, False
    if args.cmd == "serve":
        checked = _callback_workers(args.callback_workers, args.db, args.cluster)
        if isinstance(checked, str):
            print(f"ringline: --callback-workers: {checked}", file=sys.stderr)
            return 2
        workers, on_demand = checked
    if args.callback_retention < 0:
        print("ringline: --callback-retention must be >= 0 hours", file=sys.stderr)
        return 2
    if args.cmd == "callback-secrets":
        print(f"callback token:  {cb.token}")
        for sec in cb.webhook_secrets:
            print(f"webhook secret:  {sec}")
        return 0
    assert ident is not None  # serve
    # Without --node-id, serve() names the node once its port is bound (<host name>:<port>).
    node_id = args.node_id or ""
    configure_logging(args.log_level, args.log_format, node_id=node_id)
    settings = Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        sdk_app_id=ident.sdk_app_id,
        secret_key=ident.secret_key,
        db=args.db,
        db_schema=args.db_schema,
        admin_identifier=args.admin_identifier,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_grace=args.heartbeat_grace,
        sig_grace=args.sig_grace,
        log_level=args.log_level,
        log_format=args.log_format,
        node_id=node_id,
        metrics=args.metrics or bool(args.metrics_token),
        metrics_token=args.metrics_token,
        callback_token=cb.token,
        webhook_secrets=cb.webhook_secrets,
        callback_give_up_after=args.callback_give_up_after * 3600,
        callback_retry_delays=delays,
        callback_retention=args.callback_retention * 3600,
        callback_workers=workers,
        callback_workers_on_demand=on_demand,
        ice_servers=ice,
        ice_username=args.ice_username,
        ice_credential=args.ice_credential,
        ice_transport_policy=policy,
        turn_urls=tuple(dict.fromkeys(turn)),
        turn_secret=args.turn_secret,
        turn_ttl=args.turn_ttl,
        sfu_urls=sfu_urls,
        sfu_secret=args.sfu_secret,
        sfu_min_members=min_members,
        record_calls=args.record_calls,
        recordings_dir=args.recordings,
        recording_retention_days=args.recording_retention_days,
        dev=args.dev,
        cluster=args.cluster,
        public_url=args.public_url.rstrip("/"),
        cluster_lease=float(args.cluster_lease),
        login_timeout=args.login_timeout,
        max_unauthenticated=args.max_unauthenticated,
        header_timeout=args.header_timeout,
        rate_limit_per_s=args.rate_limit,
        max_unacked=args.max_unacked,
    )
    from .server.app import StartupError, serve

    def listening(bound: list[tuple[str, int]]) -> None:
        _banner(args, settings, ident, cb.generated, bound)

    run: Callable[..., object] = asyncio.run
    try:
        import uvloop
    except ImportError:
        pass
    else:
        run = uvloop.run
    try:
        run(serve(settings, ident, on_listening=listening))
    except StartupError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        # Ctrl-C before the server listened (once it listens, SIGINT drains and returns):
        # serve() has undone what it started; say so in one line, as for any stop.
        print("ringline: interrupted before the server started; nothing is left running", file=sys.stderr)
        return 130
    return 0


def _cluster_problem(cluster: str, public_url: str, db: str) -> str | None:
    """What is wrong with the cluster flags (one line with the fix), or None."""
    from urllib.parse import urlsplit

    if public_url and not cluster:
        return "--public-url is for a cluster node: add --cluster nats://host:4222"
    try:
        u = urlsplit(cluster)
        u.port  # noqa: B018  (raises for a bad port)
    except ValueError:
        return f"--cluster must be a NATS URL like nats://127.0.0.1:4222, got {cluster!r}"
    if u.scheme not in ("nats", "tls") or not u.hostname:
        return f"--cluster must be a NATS URL like nats://127.0.0.1:4222, got {cluster!r}"
    if not db.startswith(("postgresql://", "postgres://")):
        return "--cluster needs --db postgresql://…: every node of a cluster shares one PostgreSQL database"
    if public_url:
        try:
            p = urlsplit(public_url)
            p.port  # noqa: B018
        except ValueError:
            p = None
        if p is None or p.scheme not in ("http", "https") or not p.hostname or p.path not in ("", "/"):
            return f"--public-url must be a base URL like http://10.0.0.5:8080, got {public_url!r}"
    return None


def _banner(
    args: argparse.Namespace,
    settings: Settings,
    ident: AppIdentity,
    new_secrets: bool,
    bound: list[tuple[str, int]],
) -> None:
    """What the operator sees once the server listens: where, which app, and the
    commands to go on with (as they can type them from here)."""
    here = ", ".join(f"http://[{h}]:{p}" if ":" in h else f"http://{h}:{p}" for h, p in bound)
    kept = os.path.join(args.data_dir, "app.json")
    new = f" (new app id and secret key kept in {kept})" if ident.generated else ""
    print(f"Ringline on {here}  app {ident.sdk_app_id}{new}", file=sys.stderr)
    prog = _program()
    print(f"Mint a user sig with: {prog} usersig USER_ID --data-dir {args.data_dir}", file=sys.stderr)
    if new_secrets:
        print(
            f"Callback signing secrets generated; show them with: {prog} callback-secrets "
            f"--data-dir {args.data_dir}",
            file=sys.stderr,
        )
    if settings.dev:
        print(
            "DEVELOPMENT MODE (--dev): POST /dev/usersig hands out a user sig for any user id. "
            "Never run this in production.",
            file=sys.stderr,
        )


if __name__ == "__main__":
    raise SystemExit(main())
