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
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import candidate_from_sdp

from ringline.core.enums import MediaType, NetworkQuality

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

__all__ = ["Emit", "MediaSession", "PeerStats", "SendSignal", "ice_configuration"]

log = logging.getLogger("ringline.media")

#: ``emit(event_name, wire_args)``: hand an observer event to the engine.
Emit = Callable[[str, dict[str, Any]], None]
#: ``await send_signal(to_user_id, data)``: relay a signalling message.
SendSignal = Callable[[str, dict[str, Any]], Awaitable[None]]

_OUT_QUEUE: Final = 8  # frames buffered per outgoing track before the oldest is dropped
_KINDS: Final[tuple[Kind, Kind]] = ("audio", "video")


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


def ice_configuration(ice_servers: list[Mapping[str, Any]]) -> RTCConfiguration:
    """The aiortc configuration for the server's ``ice_servers`` list.

    An empty list gives ``iceServers=[]``: only host candidates, nothing leaves the
    host (aiortc would add a public STUN server for ``None``).
    """
    servers = []
    for s in ice_servers:
        urls = s.get("urls")
        if not urls:
            continue
        servers.append(RTCIceServer(urls=urls, username=s.get("username"), credential=s.get("credential")))
    return RTCConfiguration(iceServers=servers)


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


class _Peer:
    """The peer connection to one remote user and its signalling, handled in order by
    its own task (:meth:`_run`)."""

    def __init__(self, session: MediaSession, remote: str) -> None:
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
        self._awaiting_frame = {"audio": False, "video": False}
        self._candidates: list[Any] = []
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._offering = False
        self._offer_again = False
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

    # -------------------------------------------------------------- task

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ringline-media-peer-{self.remote}")
        if self.offerer:
            self.post("negotiate")

    def post(self, what: str, data: Any = None) -> None:
        if not self.closed:
            self._inbox.put_nowait((what, data))

    async def _run(self) -> None:
        while not self.closed:
            what, data = await self._inbox.get()
            try:
                if what == "negotiate":
                    await self._offer()
                elif what == "signal":
                    await self._on_signal(data)
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
                await self.session.signal(self.remote, {"type": "renegotiate"})
            return
        if self._offering or self.pc.signalingState != "stable":
            self._offer_again = True  # after the answer to the offer in flight
            return
        self._ensure_transceivers()
        self._apply_directions()
        self._offering = True
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        await self.session.signal(self.remote, {"type": "offer", "sdp": self.pc.localDescription.sdp})

    async def _on_signal(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "offer" and isinstance(data.get("sdp"), str):
            if _ice_ufrag(data["sdp"]) != self._remote_ufrag() and self.pc.remoteDescription is not None:
                # A new connection from the offerer (it restarted or lost ours): start over.
                log.info("%r: new offer from a new connection; replacing ours", self)
                await self.session.restart_peer(self.remote, data)
                return
            if self.offerer:
                log.warning(
                    "%r: offer from %s ignored (%s offers to it)", self, self.remote, self.session.user_id
                )
                return
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
            for k in _KINDS:
                t = self._transceiver(k)
                if t is not None and t.sender.track is None:
                    t.sender.replaceTrack(self.out[k])
            self._apply_directions()
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
            await self.session.signal(self.remote, {"type": "answer", "sdp": self.pc.localDescription.sdp})
            await self._flush_candidates()
            self._negotiated()
        elif kind == "answer" and isinstance(data.get("sdp"), str):
            if not self.offerer or self.pc.signalingState != "have-local-offer":
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
            if self.offerer:
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
        if self.pc.connectionState == "connected":
            self.session.connected()

    async def _read(self, track: MediaStreamTrack) -> None:
        kind: Kind = "audio" if track.kind == "audio" else "video"
        sinks = self.session.sinks
        self.session.sink_call(sinks, "track_started", self.remote, kind)
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
                for sink in sinks:
                    try:
                        sink.frame(self.remote, kind, frame)
                    except Exception:
                        log.exception("sink %r failed on a %s frame of %s", sink, kind, self.remote)
        finally:
            self.session.sink_call(sinks, "track_ended", self.remote, kind)

    async def measure(self) -> None:
        try:
            report = await self.pc.getStats()
        except Exception as exc:  # a connection closing under us
            log.debug("%r: getStats failed: %s", self, exc)
            return
        s = self.tracker.update(link_stats(report, time.monotonic(), self.pc.iceConnectionState))
        self.quality, self.rtt_ms = s.quality, s.rtt_ms
        self.loss_pct, self.jitter_ms = s.loss_pct, s.jitter_ms


# ---------------------------------------------------------------- the call


class MediaSession:
    """The media of one call on this device.

    The engine makes it on ``on_call_begin`` and then tells it what happens:
    :meth:`add_peer` for every connected member (``on_user_join``),
    :meth:`drop_peer` when one leaves, :meth:`set_media_type` on a switch,
    :meth:`on_signal` for each relayed message, :meth:`set_microphone` /
    :meth:`set_camera` for the device toggles, and :meth:`close` when the call ends.
    Call :meth:`start` once before anything else.
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
    ) -> None:
        self.user_id = user_id
        self.call_id = call_id
        self.media_type = media_type
        self.options = options
        self.configuration = ice_configuration(ice_servers)
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
        self._live = False
        self.closed = False

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
        if self.closed or user_id == self.user_id or user_id in self.peers:
            return
        peer = self.peers[user_id] = _Peer(self, user_id)
        log.info("call %s: media to %s (%s)", self.call_id, user_id, "offer" if peer.offerer else "answer")
        peer.start()

    async def drop_peer(self, user_id: str, *, say_bye: bool = False) -> None:
        """``user_id`` left: close its connection (``say_bye`` tells it so)."""
        peer = self.peers.pop(user_id, None)
        if peer is not None:
            await peer.close(say_bye=say_bye)

    async def restart_peer(self, user_id: str, offer: Mapping[str, Any]) -> None:
        """Replace the connection to ``user_id`` by a new one answering ``offer``."""
        await self.drop_peer(user_id)
        self.on_signal(user_id, offer)

    def on_signal(self, from_user_id: str, data: Mapping[str, Any]) -> None:
        """A message relayed from ``from_user_id``; an offer from a member not yet
        connected here creates its connection."""
        if self.closed or not isinstance(data, Mapping):
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
        for peer in self.peers.values():
            peer.post("negotiate")  # the offerer offers; the answerer asks for an offer

    def set_microphone(self, on: bool) -> None:
        """Open (``True``) or close the microphone: closed sends silence."""
        self.feeds["audio"].enabled = on
        if not on:
            self.local_meter.reset()

    def set_camera(self, on: bool) -> None:
        """Open or close the camera: closed sends black frames."""
        self.feeds["video"].enabled = on

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

    async def signal(self, to: str, data: dict[str, Any]) -> None:
        try:
            await self._send_signal(to, data)
        except Exception as exc:
            log.warning("call %s: signal %s to %s failed: %s", self.call_id, data.get("type"), to, exc)

    def emit(self, name: str, args: dict[str, Any]) -> None:
        if not self.closed:
            self._emit(name, {"call_id": self.call_id, **args})

    def availability(self, user_id: str, kind: Kind, available: bool) -> None:
        self.emit(f"on_user_{kind}_available", {"user_id": user_id, f"is_{kind}_available": available})

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
