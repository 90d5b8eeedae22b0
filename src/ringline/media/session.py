"""The media of one call: a full mesh of aiortc peer connections.

One :class:`MediaSession` per call of a device, made when the device's leg begins and
closed when it ends. It implements the negotiation contract shared with the browser
engine (docs/media-python.md, "Negotiation")::

    pair (a, b) of connected members, a < b (string order)
      a = offerer:  transceivers [audio sendrecv, video sendrecv|inactive]
                    createOffer ─► setLocalDescription ─► signal {type: offer, sdp}
      b = answerer: setRemoteDescription ─► attach tracks, set directions
                    createAnswer ─► setLocalDescription ─► signal {type: answer, sdp}
      renegotiation (media switch): the offerer re-offers; an answerer that wants a
      change sends {type: renegotiate} and the offerer re-offers.
      {type: candidate} adds a trickled remote candidate (null = end of candidates);
      aiortc gathers before answering, so its own SDP carries all its candidates.
      {type: bye}: the remote closed the connection.

Starting over (docs/media.md §1-§2): when a connection fails (aiortc reports
``failed``, or closes it by itself when ICE consent expires), the offerer makes a
brand new ``RTCPeerConnection`` and a fresh offer (aiortc has no ICE restart), after
a back-off of :data:`RESTART_DELAYS`; it gives up after that many attempts in a row
that never connected (a log line and ``on_error``). The answerer answers a fresh
offer with a brand new connection too, and when its own connection fails it asks
with ``{type: renegotiate, restart: true}``. When the device's connection to the
server comes back (:meth:`MediaSession.reconnected`) what may have been lost is sent
again; after a new login (the session could not be resumed) each pair starts over.

Each peer connection has exactly one audio and one video transceiver, in that order;
video is ``inactive`` in audio calls. Signalling messages of one peer are handled in
order by that peer's own task, so the engine's event delivery never waits for ICE.

What is measured and reported through ``emit`` (an event name and its wire
arguments, which the engine delivers to its observers in order with the others):

* ``on_user_voice_volume_changed`` every ``volume_interval`` s: the local user's
  level (as sent) and each remote user's (as decoded), see :mod:`.levels`;
* ``on_user_network_quality_changed`` every 2 s from ``getStats()``, see :mod:`.quality`;
* ``on_user_audio_available`` / ``on_user_video_available``: ``True`` when the first
  frame of a remote track decodes, ``False`` when the remote stops sending it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aioice.ice
import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from ringline.core.enums import MediaType, NetworkQuality
from ringline.core.errors import ErrorCode

from .levels import LevelMeter, frame_energy
from .options import MediaOptions, TestPattern, TestTone
from .quality import QUALITY_INTERVAL, QualityTracker, link_stats, worst
from .sinks import Kind, MediaSink
from .sources import (
    FileAudioTrack,
    GeneratorAudioTrack,
    GeneratorVideoTrack,
    PatternVideoTrack,
    ToneTrack,
    silence_like,
)

__all__ = [
    "ASK_DELAY",
    "RESTART_DELAYS",
    "Emit",
    "MediaSession",
    "PeerStats",
    "SendSignal",
    "SfuRequest",
    "ice_configuration",
]

log = logging.getLogger("ringline.media")

#: ``emit(event_name, wire_args)``: hand an observer event to the engine.
Emit = Callable[[str, dict[str, Any]], None]
#: ``await send_signal(to_user_id, data)``: relay a signalling message.
SendSignal = Callable[[str, dict[str, Any]], Awaitable[None]]
#: ``await sfu_request(data)``: a media request for the call's SFU room (the server's
#: ``sfu`` op, docs/sfu.md); its result.
SfuRequest = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

_OUT_QUEUE: Final = 8  # frames buffered per outgoing track before the oldest is dropped
_KINDS: Final[tuple[Kind, Kind]] = ("audio", "video")

#: Seconds the offerer waits before each new connection to a member whose connection
#: failed; after ``len(RESTART_DELAYS)`` attempts in a row that never connected it
#: gives up (until this device reconnects to the server, or a new call).
RESTART_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
#: Seconds an answerer whose connection failed waits for the offerer's new offer
#: before it asks for one (``{type: renegotiate, restart: true}``).
ASK_DELAY: float = 2.0


# ---------------------------------------------------------------- ICE on loopback-only hosts

_host_addresses = aioice.ice.get_host_addresses


def _host_addresses_or_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice's host addresses, or 127.0.0.1 when the host has no other interface.

    aioice never offers 127.0.0.1, so on a machine (or network namespace) with only
    ``lo`` nothing could connect, not even two members on that machine. Elsewhere the
    answer is unchanged.
    """
    found = _host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    if not found and use_ipv4:
        return ["127.0.0.1"]
    return found


aioice.ice.get_host_addresses = _host_addresses_or_loopback


def ice_configuration(
    ice_servers: list[Mapping[str, Any]], ice_transport_policy: str = "all"
) -> RTCConfiguration:
    """The aiortc configuration for the server's ``ice_servers`` list and
    ``ice_transport_policy`` (``"relay"``: only TURN relay candidates; anything else: all).

    An empty list gives ``iceServers=[]``: only host candidates, nothing leaves the
    host (aiortc would add a public STUN server for ``None``).
    """
    servers = []
    for s in ice_servers:
        urls = s.get("urls")
        if not urls:
            continue
        servers.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
    policy = RTCIceTransportPolicy.RELAY if ice_transport_policy == "relay" else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


# ---------------------------------------------------------------- local media


def _audio_track(spec: Any, loop: bool) -> MediaStreamTrack | None:
    if spec is None:
        return None
    if isinstance(spec, TestTone):
        return ToneTrack(spec.frequency, spec.amplitude)
    if isinstance(spec, str | os.PathLike):
        return FileAudioTrack(spec, loop=loop)
    if isinstance(spec, MediaStreamTrack):
        return spec
    if hasattr(spec, "__aiter__"):
        return GeneratorAudioTrack(spec)
    if callable(spec):
        return _audio_track(spec(), loop)
    raise TypeError(f"MediaOptions.audio: cannot play {type(spec).__name__}; see MediaOptions")


def _video_track(spec: Any) -> MediaStreamTrack | None:
    if spec is None:
        return None
    if isinstance(spec, TestPattern):
        return PatternVideoTrack(spec.width, spec.height, spec.fps)
    if isinstance(spec, str | os.PathLike):
        player = MediaPlayer(os.fspath(spec), loop=True)
        if player.video is None:
            raise ValueError(f"MediaOptions.video: {spec!r} has no video stream")
        return player.video
    if isinstance(spec, MediaStreamTrack):
        return spec
    if hasattr(spec, "__aiter__"):
        return GeneratorVideoTrack(spec)
    if callable(spec):
        return _video_track(spec())
    raise TypeError(f"MediaOptions.video: cannot show {type(spec).__name__}; see MediaOptions")


def _copy_frame(frame: Any) -> Any:
    """A deep copy of an ``av.AudioFrame`` / yuv420p ``av.VideoFrame`` with its timing."""
    out: Any
    if isinstance(frame, av.AudioFrame):
        out = av.AudioFrame.from_ndarray(
            frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
        )
        out.sample_rate = frame.sample_rate
    else:
        out = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


def _ice_ufrag(sdp: str) -> str | None:
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.split(":", 1)[1].strip()
    return None


class _OutTrack(MediaStreamTrack):
    """What one peer connection sends: frames pushed by a :class:`_Feed`."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._q: asyncio.Queue[Any] = asyncio.Queue()

    def push(self, frame: Any) -> None:
        q = self._q
        while q.qsize() >= _OUT_QUEUE:
            q.get_nowait()
        q.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._q.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            self._q.put_nowait(None)
        super().stop()


class _Feed:
    """Reads one local source and fans its frames out to every peer's track.

    A muted microphone sends silence of the same shape, so the connection and its
    statistics go on; a closed camera sends nothing (the source is still read). The local audio level
    is measured here, as sent.
    """

    def __init__(self, kind: Kind, source: MediaStreamTrack | None, meter: LevelMeter | None) -> None:
        self.kind = kind
        self.source = source
        self.meter = meter
        self.enabled = True
        self.outs: set[_OutTrack] = set()
        self.frames = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.source is not None and not self.running:
            self._task = asyncio.create_task(self._pump(), name=f"ringline-media-{self.kind}-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pump(self) -> None:
        assert self.source is not None
        while True:
            try:
                frame: Any = await self.source.recv()
            except MediaStreamError:
                if self.kind == "video":
                    log.info("local video source ended")
                    return
                log.info("local audio source ended; sending silence")
                self.source = ToneTrack(amplitude=0.0)
                continue
            self.frames += 1
            if self.kind == "audio":
                if not self.enabled:
                    frame = silence_like(frame)
                elif self.meter is not None:
                    energy, n = frame_energy(frame.to_ndarray(), len(frame.layout.channels))
                    self.meter.add_energy(energy, n, time.monotonic())
            else:
                if not self.enabled:
                    continue  # camera off: nothing is sent, as replaceTrack(null) in browsers
                if frame.format.name != "yuv420p":
                    frame = frame.reformat(format="yuv420p")  # once here, not in every encoder
            # Each connection encodes in its own thread and encoders touch their input
            # (libvpx crashes on a frame shared by two of them): one copy per extra peer.
            for i, out in enumerate(self.outs):
                out.push(frame if i == 0 else _copy_frame(frame))


# ---------------------------------------------------------------- one remote user


@dataclass(frozen=True, slots=True)
class PeerStats:
    """What is known of one remote user's connection (see :meth:`MediaSession.stats`)."""

    user_id: str
    offerer: bool
    connection_state: str
    quality: NetworkQuality
    rtt_ms: float | None
    loss_pct: float | None
    jitter_ms: float | None
    volume: int
    audio_frames: int
    video_frames: int
    receiving_audio: bool
    receiving_video: bool
    #: connections to this user that were replaced by a new one in this call
    restarts: int = 0


class _Peer:
    """The peer connection to one remote user and its signalling, handled in order by
    its own task (:meth:`_run`).

    A connection that fails is not repaired in place: the session replaces the whole
    object by a new one (``previous`` = the one it replaces, whose counters it carries).
    """

    def __init__(self, session: MediaSession, remote: str, previous: _Peer | None = None) -> None:
        self.session = session
        self.remote = remote
        self.offerer = session.user_id < remote
        self.pc = RTCPeerConnection(session.configuration)
        self.out = {"audio": _OutTrack("audio"), "video": _OutTrack("video")}
        self.meter = LevelMeter()
        self.tracker = QualityTracker(time.monotonic())
        self.quality = NetworkQuality.UNKNOWN
        self.rtt_ms: float | None = None
        self.loss_pct: float | None = None
        self.jitter_ms: float | None = None
        self.frames = {"audio": 0, "video": 0}
        self.receiving = {"audio": False, "video": False}
        #: connections to this user made before this one in this call
        self.restarts = 0
        #: ICE ufrags of the remote side of the connections this one replaced: an
        #: answer carrying one of them answers an offer of a replaced connection
        self.stale_ufrags: set[str] = set()
        if previous is not None:
            # the same counters, not a copy: a frame the old connection still hands to
            # the sinks after this one was made counts too
            self.frames = previous.frames
            self.receiving = dict(previous.receiving)
            self.restarts = previous.restarts + 1
            self.stale_ufrags = set(previous.stale_ufrags)
            old = previous._remote_ufrag()
            if old:
                self.stale_ufrags.add(old)
        #: closed to make way for a new connection to the same user (sinks stay open)
        self.replaced = False
        #: the session scheduled what follows a failure (restart or ask) for this one
        self.failure_handled = False
        self._awaiting_frame = {"audio": False, "video": False}
        self._candidates: list[Any] = []
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._offering = False
        self._offer_again = False
        self._asked_restart = False
        self._awaiting_offer = False  # answerer: asked for an offer, none came yet
        self._unsent: dict[str, Any] | None = None  # the last negotiation message lost
        self._readers: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        for kind in _KINDS:
            session.feeds[kind].outs.add(self.out[kind])

    def __repr__(self) -> str:
        role = "offerer" if self.offerer else "answerer"
        return f"<peer {self.session.user_id}->{self.remote} ({role}) {self.pc.connectionState}>"

    @property
    def broken(self) -> bool:
        """The connection failed, or aiortc closed it by itself (ICE consent expired,
        the remote shut DTLS down): no media can flow on it any more."""
        return not self.closed and self.pc.connectionState in ("failed", "closed")

    # -------------------------------------------------------------- task

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ringline-media-peer-{self.remote}")
        if self.offerer:
            self.post("negotiate")

    def post(self, what: str, data: Any = None) -> None:
        if not self.closed:
            self._inbox.put_nowait((what, data))

    def hand_over(self, new: _Peer) -> None:
        """Give the signals still queued here (sent after the offer that replaces this
        connection, e.g. trickled candidates) to the new connection."""
        while not self._inbox.empty():
            what, data = self._inbox.get_nowait()
            if what == "signal":
                new.post(what, data)

    async def _run(self) -> None:
        while not self.closed:
            what, data = await self._inbox.get()
            try:
                if what == "negotiate":
                    await self._offer()
                elif what == "signal":
                    await self._on_signal(data)
                elif what == "resend":
                    await self._resend()
                elif what == "ask_restart":
                    await self._ask_restart(force=bool(data))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%r: handling %s %r failed", self, what, data if what != "signal" else "")

    async def close(self, *, say_bye: bool) -> None:
        if self.closed:
            return
        self.closed = True
        for kind in _KINDS:
            self.session.feeds[kind].outs.discard(self.out[kind])
            self.out[kind].stop()
        if say_bye:
            await self.session.signal(self.remote, {"type": "bye"})
        me = asyncio.current_task()  # a "bye" is handled on the peer's own task: it ends by itself
        tasks = [t for t in (self._task, *self._readers) if t is not None and t is not me]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        with contextlib.suppress(Exception):
            await self.pc.close()
        self.receiving = {"audio": False, "video": False}

    # -------------------------------------------------------------- negotiation

    async def _send(self, data: dict[str, Any]) -> bool:
        """Signal ``data``; a lost offer, answer or renegotiate is remembered, to be
        sent again when the connection to the server is back (:meth:`_resend`)."""
        ok = await self.session.signal(self.remote, data)
        if data.get("type") in ("offer", "answer", "renegotiate"):
            self._unsent = None if ok else data
        return ok

    def _ensure_transceivers(self) -> None:
        """Offerer: exactly [audio, video], made once."""
        if not self.pc.getTransceivers():
            self.pc.addTransceiver(self.out["audio"], direction="sendrecv")
            self.pc.addTransceiver(self.out["video"], direction=self.session.video_direction)

    def _transceiver(self, kind: Kind) -> Any:
        for t in self.pc.getTransceivers():
            if t.kind == kind:
                return t
        return None

    def _apply_directions(self) -> None:
        audio, video = self._transceiver("audio"), self._transceiver("video")
        if audio is not None:
            audio.direction = "sendrecv"
        if video is not None:
            video.direction = self.session.video_direction

    async def _offer(self) -> None:
        if self.closed:
            return
        if not self.offerer:
            if self.pc.remoteDescription is not None:
                self._awaiting_offer = True
                await self._send({"type": "renegotiate"})
            return
        if self._offering or self.pc.signalingState != "stable":
            self._offer_again = True  # after the answer to the offer in flight
            return
        self._ensure_transceivers()
        self._apply_directions()
        self._offering = True
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        await self._send({"type": "offer", "sdp": self.pc.localDescription.sdp})

    async def _offer_sent_again(self, why: str) -> None:
        """Offerer: send the offer still waiting for its answer once more (the same
        SDP: an answerer that got it already answers it again, which is harmless)."""
        desc = self.pc.localDescription
        if self.pc.signalingState == "have-local-offer" and desc is not None:
            log.info("%r: %s; sending the offer again", self, why)
            await self._send({"type": "offer", "sdp": desc.sdp})

    async def _resend(self) -> None:
        """The connection to the server is back after a drop: send again what may have
        been lost with it (a signal is not kept by the server across its restart)."""
        if self.offerer:
            await self._offer_sent_again("an offer was waiting for its answer across a reconnect")
            return
        unsent = self._unsent
        if unsent is not None and unsent.get("type") == "answer":
            desc = self.pc.localDescription
            if self.pc.signalingState == "stable" and desc is not None and desc.type == "answer":
                log.info("%r: the answer was lost with the connection; sending it again", self)
                await self._send({"type": "answer", "sdp": desc.sdp})
        elif unsent is not None and unsent.get("type") == "renegotiate":
            await self._send(unsent)
        elif self._awaiting_offer:
            await self._send({"type": "renegotiate"})

    async def _ask_restart(self, *, force: bool) -> None:
        """Answerer: ask the offerer for a new connection (once per connection unless
        ``force``)."""
        if self.offerer or self.closed or (self._asked_restart and not force):
            return
        self._asked_restart = True
        self._awaiting_offer = True
        log.info("%r: asking %s for a new connection", self, self.remote)
        await self._send({"type": "renegotiate", "restart": True})

    async def _on_signal(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "offer" and isinstance(data.get("sdp"), str):
            if self.offerer:
                log.warning(
                    "%r: offer from %s ignored (%s offers to it)", self, self.remote, self.session.user_id
                )
                return
            if self.broken or (
                _ice_ufrag(data["sdp"]) != self._remote_ufrag() and self.pc.remoteDescription is not None
            ):
                # A new connection from the offerer (it started over), or any offer once
                # ours is dead (an offerer that renegotiates without starting over, e.g.
                # a browser asked with renegotiate): answer it from a brand new one.
                log.info("%r: offer for a new connection; replacing ours", self)
                await self.session.restart_peer(self.remote, data)
                return
            self._awaiting_offer = False
            self._unsent = None
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
            for k in _KINDS:
                t = self._transceiver(k)
                if t is not None and t.sender.track is None:
                    t.sender.replaceTrack(self.out[k])
            self._apply_directions()
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            await self._send({"type": "answer", "sdp": self.pc.localDescription.sdp})
            await self._flush_candidates()
            self._negotiated()
        elif kind == "answer" and isinstance(data.get("sdp"), str):
            ufrag = _ice_ufrag(data["sdp"])
            if ufrag is not None and ufrag in self.stale_ufrags:
                log.info("%r: answer to an offer of a replaced connection ignored", self)
                return
            if not self.offerer or self.pc.signalingState != "have-local-offer":
                if self.offerer and ufrag is not None and ufrag == self._remote_ufrag():
                    log.debug("%r: answer to an offer sent twice ignored", self)
                else:
                    log.warning("%r: unexpected answer ignored", self)
                return
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
            self._offering = False
            await self._flush_candidates()
            self._negotiated()
            if self._offer_again:
                self._offer_again = False
                await self._offer()
        elif kind == "candidate":
            self._candidates.append(data)
            if self.pc.remoteDescription is not None:
                await self._flush_candidates()
        elif kind == "renegotiate":
            if not self.offerer:
                return
            if data.get("restart") is True:
                if self.pc.remoteDescription is None:
                    # This connection's offer has not been answered: it is the new
                    # connection asked for (or it was lost on the way).
                    await self._offer_sent_again(f"{self.remote} asked for a new connection")
                else:
                    self.session.restart(self.remote, f"{self.remote} asked for a new connection")
                return
            await self._offer()
        elif kind == "bye":
            log.info("%r: the remote closed the connection", self)
            await self.session.drop_peer(self.remote, say_bye=False)
        else:
            log.debug("%r: ignoring signal type %r", self, kind)

    def _remote_ufrag(self) -> str | None:
        desc = self.pc.remoteDescription
        return _ice_ufrag(desc.sdp) if desc is not None else None

    async def _flush_candidates(self) -> None:
        pending, self._candidates = self._candidates, []
        for data in pending:
            text = data.get("candidate")
            if not text:  # null or "" = end of candidates
                with contextlib.suppress(Exception):
                    await self.pc.addIceCandidate(None)
                continue
            try:
                line = str(text).removeprefix("candidate:")
                cand = candidate_from_sdp(line)
                cand.sdpMid = data.get("sdpMid")
                cand.sdpMLineIndex = data.get("sdpMLineIndex")
                await self.pc.addIceCandidate(cand)
            except Exception as exc:
                log.debug("%r: unusable candidate %r: %s", self, text, exc)

    def _negotiated(self) -> None:
        """After each offer/answer: what the remote sends now (availability)."""
        for k in _KINDS:
            t = self._transceiver(k)
            sending = t is not None and t.currentDirection in ("recvonly", "sendrecv")
            if sending and not self.receiving[k]:
                self._awaiting_frame[k] = True  # announced when its first frame decodes
            elif not sending and self.receiving[k]:
                self.session.availability(self.remote, k, False)
            if not sending:
                self._awaiting_frame[k] = False
            self.receiving[k] = sending

    # -------------------------------------------------------------- received media

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.create_task(self._read(track), name=f"ringline-media-{self.remote}-{track.kind}")
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    def _on_state(self) -> None:
        log.info("%r", self)
        if self.closed:
            return  # closed here: nothing to do
        state = self.pc.connectionState
        if state == "connected":
            self.session.peer_connected(self)
        elif state in ("failed", "closed"):
            self.session.peer_failed(self)

    async def _read(self, track: MediaStreamTrack) -> None:
        kind: Kind = "audio" if track.kind == "audio" else "video"
        self.session.sink_started(self.remote, kind)
        try:
            while True:
                try:
                    frame: Any = await track.recv()
                except MediaStreamError:
                    return
                self.frames[kind] += 1
                if kind == "audio":
                    energy, n = frame_energy(frame.to_ndarray(), len(frame.layout.channels))
                    self.meter.add_energy(energy, n, time.monotonic())
                if self._awaiting_frame[kind]:
                    self._awaiting_frame[kind] = False
                    self.session.availability(self.remote, kind, True)
                for sink in self.session.sinks:
                    try:
                        sink.frame(self.remote, kind, frame)
                    except Exception:
                        log.exception("sink %r failed on a %s frame of %s", sink, kind, self.remote)
        finally:
            # Only closing for good ends the sinks' track: a broken connection (aiortc
            # ended its tracks) is replaced by a new one and the track goes on; if none
            # comes, drop_peer ends it when the member leaves or the call ends.
            if self.closed and not self.replaced:
                self.session.sink_ended(self.remote, kind)

    async def measure(self) -> None:
        try:
            report = await self.pc.getStats()
        except Exception as exc:  # a connection closing under us
            log.debug("%r: getStats failed: %s", self, exc)
            return
        s = self.tracker.update(link_stats(report, time.monotonic(), self.pc.iceConnectionState))
        self.quality, self.rtt_ms = s.quality, s.rtt_ms
        self.loss_pct, self.jitter_ms = s.loss_pct, s.jitter_ms


# ---------------------------------------------------------------- through an SFU


class _SfuFeed(_Peer):
    """What one other member publishes in the call's SFU room, received on a connection
    of its own (docs/sfu.md): Janus offers, this side answers; nothing is sent on it.
    It stands where a mesh connection to that member would (``session.peers``), so
    sinks, volume, quality and stats are the same."""

    def __init__(self, session: MediaSession, remote: str) -> None:
        super().__init__(session, remote)
        self.offerer = False
        for kind in _KINDS:  # receive only
            session.feeds[kind].outs.discard(self.out[kind])

    def __repr__(self) -> str:
        return f"<sfu feed {self.remote}->{self.session.user_id} {self.pc.connectionState}>"

    def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe(), name=f"ringline-media-sfu-{self.remote}")

    def post(self, what: str, data: Any = None) -> None:
        pass  # no mesh signalling on this connection

    async def _subscribe(self) -> None:
        request = self.session.sfu_request
        assert request is not None
        try:
            got = await request({"type": "subscribe", "feed": self.remote})
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=str(got["sdp"]), type="offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            self._negotiated()
            if self.session.media_type is not MediaType.VIDEO:  # a video stream that carries nothing
                self.receiving["video"] = self._awaiting_frame["video"] = False
            await request({"type": "start", "feed": self.remote, "sdp": self.pc.localDescription.sdp})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            call = self.session.call_id
            log.warning("call %s: cannot receive %s through the SFU: %s", call, self.remote, exc)

    def _on_state(self) -> None:
        log.info("%r", self)
        if not self.closed and self.pc.connectionState == "connected":
            self.session.connected()
        elif not self.closed and self.pc.connectionState == "failed":
            log.warning("call %s: the SFU connection for %s failed", self.session.call_id, self.remote)


class _SfuPublisher:
    """This device's media sent once to the call's SFU room (docs/sfu.md)."""

    def __init__(self, session: MediaSession) -> None:
        self.session = session
        self.pc = RTCPeerConnection(session.configuration)
        self.out = {"audio": _OutTrack("audio"), "video": _OutTrack("video")}
        self.pc.on("connectionstatechange", self._on_state)
        for kind in _KINDS:
            session.feeds[kind].outs.add(self.out[kind])
        #: the offer has a video stream (a video call with a camera)
        self.has_video = False
        #: Janus answered the offer
        self.published = False
        #: what the SFU was last told about this device's video (configure)
        self.relaying_video = True

    async def publish(self) -> list[str]:
        """Offer, get Janus's answer through the server; the members already publishing."""
        request = self.session.sfu_request
        assert request is not None
        self.pc.addTransceiver(self.out["audio"], direction="sendonly")
        if self.session.media_type is MediaType.VIDEO and self.session.feeds["video"].source is not None:
            self.pc.addTransceiver(self.out["video"], direction="sendonly")
            self.has_video = True
        await self.pc.setLocalDescription(await self.pc.createOffer())
        got = await request({"type": "publish", "sdp": self.pc.localDescription.sdp})
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=str(got["sdp"]), type="answer"))
        self.published = True
        return [str(u) for u in got.get("feeds", [])]

    async def relay_video(self, on: bool) -> None:
        """Tell the SFU to relay this device's video again (``on``) or to stop relaying
        it (a switch to audio: the video feed stops too). Nothing to say before the
        publish answer came (:meth:`publish` then says it), nor when nothing publishes
        video (a call that started as audio: video is not added to the room later)."""
        request = self.session.sfu_request
        if request is None or not self.published or not self.has_video or self.relaying_video is on:
            return
        self.relaying_video = on
        try:
            await request({"type": "configure", "video": on})
        except Exception as exc:
            log.warning(
                "call %s: cannot %s video in the SFU: %s",
                self.session.call_id,
                "relay" if on else "stop",
                exc,
            )

    def _on_state(self) -> None:
        log.info("call %s: SFU publisher %s", self.session.call_id, self.pc.connectionState)
        if self.pc.connectionState == "connected":
            self.session.connected()

    async def close(self) -> None:
        for kind in _KINDS:
            self.session.feeds[kind].outs.discard(self.out[kind])
            self.out[kind].stop()
        with contextlib.suppress(Exception):
            await self.pc.close()


# ---------------------------------------------------------------- the call


class MediaSession:
    """The media of one call on this device.

    The engine makes it on ``on_call_begin`` and then tells it what happens:
    :meth:`add_peer` for every connected member (``on_user_join``),
    :meth:`drop_peer` when one leaves, :meth:`set_media_type` on a switch,
    :meth:`on_signal` for each relayed message, :meth:`set_microphone` /
    :meth:`set_camera` for the device toggles, :meth:`reconnected` when the
    device's connection to the server is back after a drop, and :meth:`close` when
    the call ends. Call :meth:`start` once before anything else.

    A connection that fails is replaced by a new one (see the module docstring);
    sinks do not see it: a remote user's track goes on after a gap.
    """

    def __init__(
        self,
        *,
        user_id: str,
        call_id: str,
        media_type: MediaType,
        options: MediaOptions,
        ice_servers: list[Mapping[str, Any]],
        send_signal: SendSignal,
        emit: Emit,
        ice_transport_policy: str = "all",
    ) -> None:
        self.user_id = user_id
        self.call_id = call_id
        self.media_type = media_type
        self.options = options
        # The stricter of the server's policy and the app's (MediaOptions) wins.
        relay = "relay" in (ice_transport_policy, options.ice_transport_policy)
        #: ``"relay"`` (media only through TURN) or ``"all"``.
        self.ice_transport_policy = "relay" if relay else "all"
        if relay and not any(str(s.get("urls", "")).startswith(("turn:", "turns:")) for s in ice_servers):
            log.warning("call %s: relay-only media but the server announced no TURN server", call_id)
        self.configuration = ice_configuration(ice_servers, self.ice_transport_policy)
        self._send_signal = send_signal
        self._emit = emit
        self.sinks: list[MediaSink] = options.sinks
        self.local_meter = LevelMeter()
        audio = _audio_track(options.audio, options.audio_loop) or ToneTrack(amplitude=0.0)
        video = _video_track(options.video)
        # Tracks the app handed over stay the app's to stop; the ones made here are ours.
        self._own_sources = [
            t
            for t, spec in ((audio, options.audio), (video, options.video))
            if t is not None and t is not spec
        ]
        self.feeds: dict[Kind, _Feed] = {
            "audio": _Feed("audio", audio, self.local_meter),
            "video": _Feed("video", video, None),
        }
        self.peers: dict[str, _Peer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()  # replaced connections being closed
        self._failures: dict[str, int] = {}  # new connections in a row that did not connect
        self._given_up: set[str] = set()
        self._sink_open: set[tuple[str, Kind]] = set()
        self._live = False
        self.closed = False
        #: set by :meth:`use_sfu`: the call's media goes through its SFU room
        self.sfu_request: SfuRequest | None = None
        self.publisher: _SfuPublisher | None = None

    def __repr__(self) -> str:
        return f"<MediaSession {self.call_id} {self.user_id} {self.media_type.name} peers={list(self.peers)}>"

    # -------------------------------------------------------------- what the engine calls

    async def start(self) -> None:
        """Start the periodic volume and quality reports. The local sources start
        when the first connection is up, so that a greeting is heard from its start."""
        for coro, name in ((self._volume_loop(), "volume"), (self._quality_loop(), "quality")):
            task = asyncio.create_task(coro, name=f"ringline-media-{name}")
            self._tasks.add(task)

    def add_peer(self, user_id: str) -> None:
        """``user_id`` is a connected member: connect to it (the lower id offers)."""
        if self.closed or user_id == self.user_id or user_id in self.peers or self.sfu_request:
            return
        peer = self.peers[user_id] = _Peer(self, user_id)
        log.info("call %s: media to %s (%s)", self.call_id, user_id, "offer" if peer.offerer else "answer")
        peer.start()

    async def drop_peer(self, user_id: str, *, say_bye: bool = False) -> None:
        """``user_id`` left: close its connection (``say_bye`` tells it so)."""
        self._failures.pop(user_id, None)
        self._given_up.discard(user_id)
        peer = self.peers.pop(user_id, None)
        if peer is not None:
            await peer.close(say_bye=say_bye)
        for kind in _KINDS:  # also a track a replaced connection left open
            self.sink_ended(user_id, kind)

    async def restart_peer(self, user_id: str, offer: Mapping[str, Any]) -> None:
        """Replace the connection to ``user_id`` by a brand new one answering ``offer``
        (the offerer started over)."""
        old = self.peers.get(user_id)
        if old is None or self.closed:
            self.on_signal(user_id, offer)
            return
        new = self._replace(old)
        new.post("signal", offer)
        old.hand_over(new)
        new.start()

    def restart(self, user_id: str, why: str, *, now: bool = False) -> None:
        """Offerer: replace the connection to ``user_id`` by a brand new one with a
        fresh offer, after the back-off of :data:`RESTART_DELAYS` (``now``: at once).
        Gives up, with a log line and ``on_error``, after that many attempts in a row
        that never connected."""
        peer = self.peers.get(user_id)
        if self.closed or peer is None or not peer.offerer or (peer.failure_handled and not now):
            return
        n = self._failures.get(user_id, 0)
        if n >= len(RESTART_DELAYS):
            if user_id not in self._given_up:
                self._given_up.add(user_id)
                message = (
                    f"call {self.call_id}: the media connection to {user_id} failed {n} times "
                    f"in a row ({why}); giving up: it is tried again when this device "
                    "reconnects to the server, or in a new call"
                )
                log.error("%s", message)
                self.emit("on_error", {"code": int(ErrorCode.SIGNALING_SEND_FAIL), "message": message})
            return
        self._failures[user_id] = n + 1
        peer.failure_handled = True
        if now:
            log.info("call %s: media to %s: %s; a new connection now", self.call_id, user_id, why)
            self._replace(peer).start()
            return
        delay = RESTART_DELAYS[n]
        log.warning(
            "call %s: media to %s: %s; a new connection in %g s (attempt %d of %d)",
            self.call_id,
            user_id,
            why,
            delay,
            n + 1,
            len(RESTART_DELAYS),
        )
        self._later(delay, self._restart_if_current, peer)

    def use_sfu(self, request: SfuRequest) -> None:
        """The call has an SFU room for this device (``on_sfu``, docs/sfu.md): close the
        mesh connections, publish once through the room and receive every member who
        publishes there (:meth:`sfu_feed`), on a task of its own. Again (a new room after
        Janus restarted): start over in it."""
        if self.closed:
            return
        self.sfu_request = request
        old = list(self.peers.values())  # the mesh, or the connections of an older room
        task = asyncio.create_task(self._use_sfu(old), name="ringline-media-sfu-publish")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _use_sfu(self, old: list[_Peer]) -> None:
        for peer in old:
            if self.peers.get(peer.remote) is peer:
                await self.drop_peer(peer.remote)
        if self.publisher is not None:
            await self.publisher.close()
        self.publisher = _SfuPublisher(self)
        try:
            feeds = await self.publisher.publish()
        except Exception as exc:
            log.warning("call %s: cannot publish through the SFU: %s", self.call_id, exc)
            return
        log.info("call %s: media through the SFU; publishing: %s", self.call_id, feeds)
        if self.media_type is not MediaType.VIDEO:  # switched to audio while publishing
            await self.publisher.relay_video(False)
        for user_id in feeds:
            self.sfu_feed(user_id)

    def leave_sfu(self, members: list[str]) -> None:
        """The call went back to the mesh (``on_sfu`` with no room): close the SFU
        connections and connect to each of ``members`` (the members connected now)."""
        if self.closed or self.sfu_request is None:
            return
        self.sfu_request = None
        old = list(self.peers.values())
        publisher, self.publisher = self.publisher, None

        async def back() -> None:
            if publisher is not None:
                await publisher.close()
            for peer in old:
                if self.peers.get(peer.remote) is peer:
                    await self.drop_peer(peer.remote)
            for user_id in members:
                self.add_peer(user_id)
                new = self.peers.get(user_id)
                # An offer that came while this side was still in the room was ignored:
                # ask for one (an offerer whose offer is still unanswered sends it again).
                if new is not None and not new.offerer:
                    new.post("ask_restart", True)

        task = asyncio.create_task(back(), name="ringline-media-sfu-leave")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def sfu_feed(self, user_id: str) -> None:
        """``user_id``'s media reached the SFU (``on_sfu_feed``): receive it."""
        if self.closed or self.sfu_request is None or user_id == self.user_id or user_id in self.peers:
            return
        feed = self.peers[user_id] = _SfuFeed(self, user_id)
        feed.start()

    def on_signal(self, from_user_id: str, data: Mapping[str, Any]) -> None:
        """A message relayed from ``from_user_id``; an offer from a member not yet
        connected here creates its connection."""
        if self.closed or not isinstance(data, Mapping) or self.sfu_request is not None:
            return
        peer = self.peers.get(from_user_id)
        if peer is None:
            if data.get("type") != "offer":
                log.debug(
                    "call %s: %s signal from %s before its offer; ignored",
                    self.call_id,
                    data.get("type"),
                    from_user_id,
                )
                return
            self.add_peer(from_user_id)
            peer = self.peers[from_user_id]
        peer.post("signal", data)

    async def set_media_type(self, media_type: MediaType) -> None:
        """The call switched: start or stop video, and renegotiate where this side offers."""
        if self.closed or media_type is self.media_type or media_type is MediaType.UNKNOWN:
            return
        self.media_type = media_type
        if media_type is MediaType.VIDEO:
            if self._live:
                self.feeds["video"].start()
        else:
            await self.feeds["video"].stop()
        if self.sfu_request is not None:
            await self._sfu_media_type()
            return
        for peer in self.peers.values():
            peer.post("negotiate")  # the offerer offers; the answerer asks for an offer

    async def _sfu_media_type(self) -> None:
        """A switch in a call through the SFU (docs/sfu.md): the video feed was stopped
        (or started) above; the SFU is told to stop (or go on) relaying this device's
        video, and the receiving connections stop (or go on) showing the others' video.
        No renegotiation: the connections keep their streams."""
        video = self.media_type is MediaType.VIDEO
        if self.publisher is not None:
            await self.publisher.relay_video(video)
        for peer in list(self.peers.values()):
            if not isinstance(peer, _SfuFeed):
                continue
            t = peer._transceiver("video")
            if video:
                if (
                    t is not None
                    and t.currentDirection in ("recvonly", "sendrecv")
                    and not peer.receiving["video"]
                ):
                    peer.receiving["video"] = peer._awaiting_frame["video"] = True  # told at its first frame
            elif peer.receiving["video"]:
                peer.receiving["video"] = peer._awaiting_frame["video"] = False
                self.availability(peer.remote, "video", False)

    def set_microphone(self, on: bool) -> None:
        """Open (``True``) or close the microphone: closed sends silence."""
        self.feeds["audio"].enabled = on
        if not on:
            self.local_meter.reset()

    def set_camera(self, on: bool) -> None:
        """Open or close the camera: closed sends black frames."""
        self.feeds["video"].enabled = on

    def reconnected(self, resumed: bool) -> None:
        """This device's connection to the server is back after a drop.

        ``resumed``: the session was resumed, so only signals in flight may be lost
        (a server restart does not keep them): each connection sends again what may
        have been lost (an offer not answered yet, a lost answer or renegotiate), and
        a failed connection is replaced now. Otherwise (logged in again) every pair
        starts over: the offerer makes a new connection with a fresh offer, the
        answerer asks for one (``{type: renegotiate, restart: true}``). Failures
        counted so far are forgotten: the network may be what failed.
        """
        if self.closed:
            return
        how = "the session was resumed" if resumed else "logged in again"
        for user_id, peer in list(self.peers.items()):
            self._failures.pop(user_id, None)
            self._given_up.discard(user_id)
            if peer.offerer and (not resumed or peer.broken):
                self.restart(user_id, f"reconnected to the server ({how})", now=True)
            elif not peer.offerer and (not resumed or peer.broken):
                peer.post("ask_restart", True)
            else:
                peer.post("resend")

    async def close(self) -> None:
        """Close every connection and stop the sources and reports (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for user_id in list(self.peers):
            await self.drop_peer(user_id)
        if self.publisher is not None:
            await self.publisher.close()
        if self._closing:
            await asyncio.wait(list(self._closing))
        for feed in self.feeds.values():
            await feed.stop()
        for track in self._own_sources:
            track.stop()
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
        log.info("call %s: media closed", self.call_id)

    # -------------------------------------------------------------- reading

    def stats(self) -> dict[str, PeerStats]:
        """The latest measures per remote user (updated every 2 s and per frame)."""
        now = time.monotonic()
        return {
            u: PeerStats(
                user_id=u,
                offerer=p.offerer,
                connection_state=p.pc.connectionState,
                quality=p.quality,
                rtt_ms=p.rtt_ms,
                loss_pct=p.loss_pct,
                jitter_ms=p.jitter_ms,
                volume=p.meter.volume(now),
                audio_frames=p.frames["audio"],
                video_frames=p.frames["video"],
                receiving_audio=p.receiving["audio"],
                receiving_video=p.receiving["video"],
                restarts=p.restarts,
            )
            for u, p in self.peers.items()
        }

    def local_volume(self) -> int:
        """The local user's volume (0..100) as sent; 0 while the microphone is closed."""
        if not self.feeds["audio"].enabled:
            return 0
        return self.local_meter.volume(time.monotonic())

    @property
    def frames_sent(self) -> dict[str, int]:
        """Local frames read from each source so far."""
        return {k: f.frames for k, f in self.feeds.items()}

    # -------------------------------------------------------------- internals

    @property
    def video_direction(self) -> str:
        if self.media_type is not MediaType.VIDEO:
            return "inactive"
        return "sendrecv" if self.feeds["video"].source is not None else "recvonly"

    def connected(self) -> None:
        """A connection is up: start the local sources (once)."""
        if self.closed or self._live:
            return
        self._live = True
        self.feeds["audio"].start()
        if self.media_type is MediaType.VIDEO:
            self.feeds["video"].start()

    def peer_connected(self, peer: _Peer) -> None:
        if self.peers.get(peer.remote) is not peer:
            return
        if self._failures.pop(peer.remote, None) is not None or peer.restarts:
            log.info("call %s: media to %s connected again", self.call_id, peer.remote)
        self._given_up.discard(peer.remote)
        self.connected()

    def peer_failed(self, peer: _Peer) -> None:
        """``peer``'s connection failed (or aiortc closed it by itself). The offerer
        starts over; the answerer waits :data:`ASK_DELAY` s for the offerer's new
        offer, then asks for it."""
        if self.closed or self.peers.get(peer.remote) is not peer:
            return
        if peer.offerer:
            self.restart(peer.remote, f"the connection is {peer.pc.connectionState}")
        elif not peer.failure_handled:
            peer.failure_handled = True
            log.warning(
                "call %s: media to %s: the connection is %s; waiting for %s to start over",
                self.call_id,
                peer.remote,
                peer.pc.connectionState,
                peer.remote,
            )
            self._later(ASK_DELAY, self._ask_if_current, peer)

    def _replace(self, old: _Peer) -> _Peer:
        """A brand new connection to ``old.remote`` in place of ``old`` (not started);
        ``old`` is closed in the background."""
        new = self.peers[old.remote] = _Peer(self, old.remote, previous=old)
        old.replaced = True
        task = asyncio.create_task(old.close(say_bye=False), name=f"ringline-media-close-{old.remote}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return new

    def _restart_if_current(self, peer: _Peer) -> None:
        if not self.closed and self.peers.get(peer.remote) is peer:
            self._replace(peer).start()

    def _ask_if_current(self, peer: _Peer) -> None:
        if not self.closed and self.peers.get(peer.remote) is peer:
            peer.post("ask_restart", False)

    def _later(self, delay: float, fn: Callable[[_Peer], None], peer: _Peer) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            fn(peer)

        task = asyncio.create_task(run(), name=f"ringline-media-later-{peer.remote}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def signal(self, to: str, data: dict[str, Any]) -> bool:
        """Relay ``data`` to ``to``; False (logged) if it could not be sent."""
        try:
            await self._send_signal(to, data)
        except Exception as exc:
            log.warning("call %s: signal %s to %s failed: %s", self.call_id, data.get("type"), to, exc)
            return False
        return True

    def emit(self, name: str, args: dict[str, Any]) -> None:
        if not self.closed:
            self._emit(name, {"call_id": self.call_id, **args})

    def availability(self, user_id: str, kind: Kind, available: bool) -> None:
        self.emit(f"on_user_{kind}_available", {"user_id": user_id, f"is_{kind}_available": available})

    def sink_started(self, user_id: str, kind: Kind) -> None:
        """A track of ``user_id`` arrived: the sinks hear of it unless a connection
        this one replaced had it already."""
        if (user_id, kind) not in self._sink_open:
            self._sink_open.add((user_id, kind))
            self.sink_call(self.sinks, "track_started", user_id, kind)

    def sink_ended(self, user_id: str, kind: Kind) -> None:
        if (user_id, kind) in self._sink_open:
            self._sink_open.discard((user_id, kind))
            self.sink_call(self.sinks, "track_ended", user_id, kind)

    def sink_call(self, sinks: list[MediaSink], method: str, user_id: str, kind: Kind) -> None:
        for sink in sinks:
            try:
                getattr(sink, method)(user_id, kind)
            except Exception:
                log.exception("sink %r failed in %s(%s, %s)", sink, method, user_id, kind)

    async def _volume_loop(self) -> None:
        interval = self.options.volume_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            volumes = {self.user_id: self.local_volume()}
            for u, p in self.peers.items():
                volumes[u] = p.meter.volume(now)
            self.emit("on_user_voice_volume_changed", {"volume_map": volumes})

    async def _quality_loop(self) -> None:
        while True:
            await asyncio.sleep(QUALITY_INTERVAL)
            peers = list(self.peers.values())
            if not peers:
                continue
            for p in peers:
                await p.measure()
            mine = worst(p.quality for p in peers)
            entries = [{"user_id": self.user_id, "quality": int(mine)}]
            entries += [{"user_id": p.remote, "quality": int(p.quality)} for p in peers]
            self.emit("on_user_network_quality_changed", {"network_quality_list": entries})
