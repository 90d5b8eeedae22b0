"""Runs inside a loopback-only network namespace (tests/sfu/test_recording.py): a real Janus
(loopback shim preloaded), ``ringline serve --sfu`` with its callbacks going to a real
receiver (tests/callback_receiver.py), and two SDK engines made with ``media=`` (each
sending a tone of its own, tests/media/call_driver.py's members).

1. Alice calls Bob (audio, 1v1) with ``CallParams(record=True)``: the call goes through
   the SFU although it has two members; once both publish, each hears ``SECONDS`` s of
   the other's audio there, then Alice hangs up. The server converts the recording; the driver waits for the
   ``Call.CallbackAfterRecordingReady`` callback, lists the recording over REST (by call
   id and by time range) and downloads it into ``OUT`` for the test to probe.
2. Alice calls Bob again without recording: the call stays peer to peer; the admin starts
   recording it over REST (it moves to the SFU), then stops it, then the call ends; its
   recording is made too.

Prints one JSON line. Usage: ``recorded_call_driver.py OUT SECONDS``."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from call_driver import WAIT, Member
from callbackkit import Admin, Receiver, server_args
from janusproc import SECRET, running

from ringline import CallParams, MediaType
from ringline.core.usersig import gen_user_sig
from serverproc import SDK_APP_ID, ServerProcess, free_port
from serverproc import SECRET as APP_SECRET

TMP = Path(tempfile.mkdtemp(prefix="rl-rec-call-"))
READY = "Call.CallbackAfterRecordingReady"


def links(m: Member) -> dict[str, Any]:
    """Whether ``m`` publishes to the SFU, and its connections (SFU feeds, mesh peers)."""
    s = m.engine.media
    if s is None:  # the call's media has not started yet
        return {"publisher": False, "feeds": [], "mesh": []}
    return {
        "publisher": s.publisher is not None,
        "feeds": sorted(p.remote for p in s.peers.values() if type(p).__name__ == "_SfuFeed"),
        "mesh": sorted(p.remote for p in s.peers.values() if type(p).__name__ == "_Peer"),
    }


def publishing(m: Member) -> bool:
    """``m``'s connection to Janus is up (its media reaches Janus from now on)."""
    s = m.engine.media
    return s is not None and s.publisher is not None and s.publisher.pc.connectionState == "connected"


def other(user: str) -> str:
    return "bob" if user == "alice" else "alice"


def recording_events(m: Member, cid: str) -> list[bool]:
    return [
        e.kwargs["is_recording"]
        for e in m.rec.events
        if e.name == "on_call_recording_changed" and e.kwargs["call_id"] == cid
    ]


async def download(admin: Admin, rid: str) -> tuple[int, str, bytes]:
    """``download_recording`` of ``rid``: the HTTP status, the content type and the body."""
    q = {
        "sdkappid": str(SDK_APP_ID),
        "identifier": "administrator",
        "usersig": gen_user_sig(SDK_APP_ID, APP_SECRET, "administrator", 3600, now=int(time.time())),
        "random": "1",
        "contenttype": "json",
    }
    url = admin.server.url + "/v4/call_record_http_srv/download_recording"
    async with admin.session.post(url, params=q, json={"RecordingId": rid}) as r:
        return r.status, r.content_type, await r.read()


async def in_sfu(members: dict[str, Member]) -> None:
    """Wait until every member publishes to the SFU and receives the other there."""
    for u, m in members.items():
        other = next(o for o in members if o != u)
        await m.rec.wait_until(lambda m=m, other=other: links(m)["feeds"] == [other], timeout=WAIT)  # type: ignore[misc]
        await m.probe.wait_frames(other, "audio", 25, WAIT)


async def ready_callback(receiver: Receiver, cid: str) -> dict[str, Any]:
    def hits() -> list[dict[str, Any]]:
        return [
            h for h in receiver.hits if h["command"] == READY and h["event"]["RecordingInfo"]["CallId"] == cid
        ]

    await receiver.wait_until(lambda: bool(hits()), f"{READY} of {cid}", timeout=90)
    return hits()[0]


async def main(out_dir: Path, seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running(TMP / "janus", preload_shim=True) as janus:
        (TMP / "srv").mkdir()
        args = ["--sfu", f"janus={janus.url}", "--sfu-secret", SECRET, *server_args()]
        srv = ServerProcess(TMP / "srv", extra_args=args).start()
        receiver = await Receiver(free_port()).start()
        members = {u: Member(srv, u, f) for u, f in {"alice": 300.0, "bob": 500.0}.items()}
        alice, bob = members["alice"], members["bob"]
        try:
            async with aiohttp.ClientSession() as http:
                admin = Admin(srv, http)
                await admin.subscribe(receiver.url)
                for m in members.values():
                    await m.login()
                # 1. A 1v1 call placed with record=True goes through the SFU and is recorded.
                before = int(time.time())
                cid = await alice.engine.calls(["bob"], MediaType.AUDIO, CallParams(record=True))
                await bob.rec.wait_for("on_call_received", call_id=cid, timeout=WAIT)
                await bob.engine.accept()
                accepted = time.monotonic()  # nothing can be recorded before this
                # Janus records from the members' first packets: once their connection to
                # Janus is up.
                for m in members.values():
                    await m.rec.wait_until(lambda m=m: publishing(m), timeout=WAIT)  # type: ignore[misc]
                t0 = time.monotonic()
                base = {u: m.probe.count(other(u), "audio") for u, m in members.items()}
                await in_sfu(members)
                out["links"] = {u: links(m) for u, m in members.items()}
                for m in members.values():
                    await m.rec.wait_for("on_call_recording_changed", call_id=cid, timeout=WAIT)
                # The call lasts SECONDS of media: until one member has received that much of
                # the other's audio through the room (20 ms frames), the longest track.
                # Counted in media, not on the wall clock, so that a loaded machine whose
                # senders fall behind real time still makes a call of that length.
                frames = round(seconds / 0.02)
                waits = [
                    asyncio.create_task(
                        m.probe.wait_frames(
                            other(u),
                            "audio",
                            max(1, base[u] + frames - m.probe.count(other(u), "audio")),
                            3 * WAIT,
                        )
                    )
                    for u, m in members.items()
                ]
                done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                for task in done:
                    task.result()  # a timeout is the test's failure
                await alice.engine.hangup()
                out["talked_s"] = round(time.monotonic() - t0, 2)
                out["recordable_s"] = round(time.monotonic() - accepted, 2)
                out["received_s"] = {
                    u: round((m.probe.count(other(u), "audio") - base[u]) * 0.02, 2)
                    for u, m in members.items()
                }
                await bob.rec.wait_for("on_call_end", call_id=cid, timeout=WAIT)
                out["events"] = {u: recording_events(m, cid) for u, m in members.items()}
                hit = await ready_callback(receiver, cid)
                out["callback"] = {
                    "event": hit["event"],
                    "std_ok": hit["std_ok"],
                    "tencent_ok": hit["tencent_ok"],
                }
                after = int(time.time())
                listed = await admin.v4("call_record_http_srv/get_recordings", {"CallId": cid})
                out["listed"] = listed
                out["listed_in_range"] = [
                    r["CallId"]
                    for r in (
                        await admin.v4(
                            "call_record_http_srv/get_recordings", {"StartTime": before, "EndTime": after}
                        )
                    )["RecordingList"]
                ]
                out["listed_before"] = (
                    await admin.v4("call_record_http_srv/get_recordings", {"EndTime": before - 1})
                )["TotalNum"]
                status, kind, body = await download(admin, cid)
                (out_dir / f"{cid}.opus").write_bytes(body)
                out["download"] = {"status": status, "type": kind, "size": len(body), "file": f"{cid}.opus"}
                status, kind, body = await download(admin, "no-such-recording")
                out["download_unknown"] = {"status": status, "type": kind, "body": json.loads(body)}
                out["mjr_left"] = sorted(p.name for p in (TMP / "srv" / "recordings" / "mjr").glob("*"))
                # 2. A call that is not recorded stays peer to peer; start and stop over REST.
                cid2 = await alice.engine.calls(["bob"], MediaType.AUDIO)
                await bob.rec.wait_for("on_call_received", call_id=cid2, timeout=WAIT)
                await bob.engine.accept()
                await alice.probe.wait_frames("bob", "audio", 25, WAIT)
                out["links2_before"] = {u: links(m) for u, m in members.items()}
                out["start"] = await admin.v4("call_record_http_srv/start_recording", {"CallId": cid2})
                out["start_again"] = await admin.v4("call_record_http_srv/start_recording", {"CallId": cid2})
                for m in members.values():
                    await m.rec.wait_for(
                        "on_call_recording_changed", call_id=cid2, is_recording=True, timeout=WAIT
                    )
                await in_sfu(members)
                out["links2_recorded"] = {u: links(m) for u, m in members.items()}
                await bob.probe.wait_frames("alice", "audio", 50, WAIT)
                out["stop"] = await admin.v4("call_record_http_srv/stop_recording", {"CallId": cid2})
                for m in members.values():
                    await m.rec.wait_for(
                        "on_call_recording_changed", call_id=cid2, is_recording=False, timeout=WAIT
                    )
                out["heard_after_stop"] = await bob.probe.wait_frames("alice", "audio", 50, WAIT)
                await alice.engine.hangup()
                await bob.rec.wait_for("on_call_end", call_id=cid2, timeout=WAIT)
                out["events2"] = {u: recording_events(m, cid2) for u, m in members.items()}
                out["callback2"] = (await ready_callback(receiver, cid2))["event"]
                out["stop_ended"] = await admin.v4_fail(
                    "call_record_http_srv/stop_recording", {"CallId": cid2}
                )
                # Each recording's callback came once (the receiver saw every request).
                out["ready_hits"] = sorted(
                    h["event"]["RecordingInfo"]["CallId"] for h in receiver.hits if h["command"] == READY
                )
                out["cid"], out["cid2"] = cid, cid2
        finally:
            for m in members.values():
                await m.engine.uninit()
            await receiver.stop()
            srv.kill()
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2])))))
    shutil.rmtree(TMP, ignore_errors=True)  # kept (Janus's and the server's logs) when it failed
