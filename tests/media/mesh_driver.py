"""Media sessions of one call wired through an in-memory signalling relay (no server).

    python tests/media/mesh_driver.py USERS...     (run inside a loopback-only netns)

Every member connects to every other (the lower id offers); the call starts as
VIDEO, then switches to AUDIO. Prints one JSON object with what each member saw.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from typing import Any

from probe import Probe

from ringline.core.enums import MediaType
from ringline.media import MediaOptions, MediaSession, TestPattern, TestTone

WAIT = 30.0


async def main(users: list[str]) -> dict[str, Any]:
    sessions: dict[str, MediaSession] = {}
    probes = {u: Probe() for u in users}
    events: dict[str, list[tuple[str, dict[str, Any]]]] = {u: [] for u in users}
    got_event = asyncio.Event()
    signals: list[tuple[str, str, str]] = []

    async def relay(frm: str, to: str, data: dict[str, Any]) -> None:
        signals.append((frm, to, data["type"]))
        sessions[to].on_signal(frm, json.loads(json.dumps(data)))  # as over the wire

    def emitter(u: str) -> Any:
        def emit(name: str, args: dict[str, Any]) -> None:
            events[u].append((name, args))
            got_event.set()

        return emit

    async def wait_event(u: str, pred: Any) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while True:
                for name, args in events[u]:
                    if pred(name, args):
                        return args
                got_event.clear()
                await got_event.wait()

    for i, u in enumerate(users):
        opts = MediaOptions(
            audio=TestTone(frequency=300 + 100 * i, amplitude=0.4),
            video=TestPattern(width=320, height=240, fps=15),
            sink=probes[u],
            volume_interval=0.2,
        )
        sessions[u] = MediaSession(
            user_id=u,
            call_id="call-1",
            media_type=MediaType.VIDEO,
            options=opts,
            ice_servers=[],
            send_signal=functools.partial(relay, u),
            emit=emitter(u),
        )
    for s in sessions.values():
        await s.start()
    for u, s in sessions.items():
        for other in users:
            if other != u:
                s.add_peer(other)

    out: dict[str, Any] = {"video_phase": {}, "audio_phase": {}}
    for u in users:
        for other in users:
            if other == u:
                continue
            await probes[u].wait_frames(other, "audio", 25, WAIT)
            await probes[u].wait_frames(other, "video", 10, WAIT)
            await wait_event(u, lambda n, a, o=other: n == "on_user_video_available" and a["user_id"] == o)
            vol = await wait_event(
                u, lambda n, a, o=other: n == "on_user_voice_volume_changed" and a["volume_map"].get(o, 0) > 0
            )
            q = await wait_event(
                u,
                lambda n, a, o=other: (
                    n == "on_user_network_quality_changed"
                    and any(x["user_id"] == o and x["quality"] > 0 for x in a["network_quality_list"])
                ),
            )
            st = sessions[u].stats()[other]
            out["video_phase"][f"{u}<-{other}"] = {
                "offerer": st.offerer,
                "state": st.connection_state,
                "level": probes[u].max_level.get(other, 0.0),
                "video_size": probes[u].sizes.get(other),
                "volume": vol["volume_map"][other],
                "quality": next(x["quality"] for x in q["network_quality_list"] if x["user_id"] == other),
                "local_volume": vol["volume_map"][u],
            }

    mark = {u: len(events[u]) for u in users}
    for s in sessions.values():
        await s.set_media_type(MediaType.AUDIO)
    for u in users:
        for other in users:
            if other == u:
                continue
            off = await wait_event(
                u,
                lambda n, a, o=other: (
                    n == "on_user_video_available" and a["user_id"] == o and not a["is_video_available"]
                ),
            )
            before = probes[u].count(other, "audio")
            await probes[u].wait_frames(other, "audio", 25, WAIT)
            st = sessions[u].stats()[other]
            out["audio_phase"][f"{u}<-{other}"] = {
                "video_off_event": off is not None,
                "receiving_video": st.receiving_video,
                "audio_frames_after_switch": probes[u].count(other, "audio") - before,
                "events_after_switch": [n for n, _ in events[u][mark[u] :]][:3],
            }
    # A member that vanishes (no bye, no more packets) is graded DOWN by the others.
    gone = users[-1]
    await sessions[gone].close()
    for u in users[:-1]:
        await wait_event(
            u,
            lambda n, a: (
                n == "on_user_network_quality_changed"
                and any(x["user_id"] == gone and x["quality"] == 6 for x in a["network_quality_list"])
            ),
        )
        out.setdefault("down_seen_by", []).append(u)
    out["signal_types"] = sorted({t for _, _, t in signals})
    out["offers_by"] = sorted({f for f, _, t in signals if t == "offer"})
    for s in sessions.values():
        await s.close()  # idempotent: the vanished one is closed already
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))
