"""Call recordings: Janus's per-stream ``.mjr`` files of a call made into one file.

Janus's VideoRoom, with recording on, writes one ``.mjr`` per published stream
(``videoroom-<room>-user-<user id>-<µs>-audio-0.mjr``, ``…-video-1.mjr``). After the call
:func:`convert` turns each into a plain file with ``janus-pp-rec`` (``.opus``, ``.webm`` …)
and mixes them with one ``ffmpeg`` run into one file per call in a recordings folder:
every member's audio mixed (``amix``), each track delayed by when its first packet came
(the ``.mjr`` header's ``u``) so the members stay in step; for a call with video, the
members' videos side by side (``hstack``, each scaled to 320×240 and delayed the same way)
in a WebM (VP8 + Opus); for an audio call an Ogg Opus file.

:class:`RecordingJobs` makes the conversion durable: a JSON state file per call in the
recordings folder (``<call id>.job.json``), a conversion that fails (or was cut off by a
restart) is retried with backoff up to ``max_attempts`` times, and one that still fails
ends ``failed`` in its state file with each attempt's error, logged and reported to
``on_failed``. The hub submits a call's folder when its recorded SFU room is destroyed
and runs the jobs (docs/recording.md).

The pure parts (names, headers, command lines, job state transitions) are apart from the
ones that run processes (:func:`run_tool`, :func:`convert`, :class:`RecordingJobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("ringline.recording")

__all__ = [
    "ConversionError",
    "Job",
    "Recording",
    "RecordingJobs",
    "Tools",
    "Track",
    "convert",
    "mix_command",
    "parse_track_name",
    "pp_rec_command",
    "read_mjr_header",
    "tools_missing",
]

Media = Literal["audio", "video"]
JobState = Literal["pending", "converting", "ready", "failed"]

#: ``videoroom-<room>-user-<user id>-<µs>-<kind>[-<mindex>].mjr`` (Janus 1.x; 0.x has no
#: mindex). The room is matched lazily, the user id greedily: a user id may hold ``-``
#: (and even ``-user-``), a room id may not hold ``-user-``.
_JANUS_NAME = re.compile(
    r"^videoroom-(?P<room>.+?)-user-(?P<user>.+)-(?P<ts>\d+)-(?P<kind>audio|video|data)(?:-(?P<mindex>\d+))?\.mjr$"
)
#: What a call id must look like to name a file.
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: The extension ``janus-pp-rec`` is asked for, per codec of the ``.mjr`` header.
PP_EXTENSIONS = {"opus": "opus", "vp8": "webm", "vp9": "webm", "pcmu": "wav", "pcma": "wav", "g722": "wav"}

#: Each video's size in the mixed file's side-by-side layout.
TILE_W, TILE_H = 320, 240


class ConversionError(Exception):
    """A conversion step failed: ``tool`` (``janus-pp-rec``, ``ffmpeg``, ``ffprobe``,
    ``mjr``, ``folder``), what it said (``output``, its tail), and its exit code if it ran."""

    def __init__(self, tool: str, message: str, output: str = "", returncode: int | None = None) -> None:
        self.tool = tool
        self.output = output[-2000:]
        self.returncode = returncode
        text = f"{tool}: {message}"
        if self.output.strip():
            text += "\n" + self.output.strip()
        super().__init__(text)


@dataclass(frozen=True)
class Track:
    """One recorded stream: its ``.mjr``, the member's user id, its kind, its codec and
    when its first packet was written (µs since the epoch, from the header)."""

    path: Path
    user_id: str
    kind: Literal["audio", "video"]
    codec: str = ""
    first_us: int = 0


@dataclass(frozen=True)
class Recording:
    """A call's recording: ``id`` (the call id), the file, its duration (s, by ffprobe),
    size (bytes) and media (``audio`` or ``video``)."""

    id: str
    path: str
    duration: float
    size: int
    media: Media


@dataclass(frozen=True)
class Tools:
    """Where the programs are (found on ``PATH`` by default) and how long each run may take."""

    pp_rec: str = "janus-pp-rec"
    ffmpeg: str = "ffmpeg"
    ffprobe: str = "ffprobe"
    timeout: float = 300.0


# ---- pure parts ------------------------------------------------------------------------


def parse_track_name(name: str) -> tuple[str, Literal["audio", "video"]] | None:
    """The user id and kind of a Janus VideoRoom recording's file name, or None (not a
    recording's name, or a data channel's)."""
    m = _JANUS_NAME.match(name)
    if m is None or m["kind"] == "data":
        return None
    kind: Literal["audio", "video"] = "audio" if m["kind"] == "audio" else "video"
    return m["user"], kind


def parse_mjr_header(data: bytes) -> dict[str, Any]:
    """The JSON header at the start of an ``.mjr`` (``MJR00002``, a 2-byte big-endian
    length, the JSON: ``t`` a/v/d, ``c`` codec, ``s`` created and ``u`` first packet, µs).
    Raises :class:`ConversionError` (tool ``mjr``) when it is not one."""
    if len(data) < 10 or not data.startswith(b"MJR0000"):
        raise ConversionError("mjr", "not a Janus recording (no MJR header)")
    size = int.from_bytes(data[8:10], "big")
    try:
        header = json.loads(data[10 : 10 + size])
    except ValueError as e:
        raise ConversionError("mjr", f"unreadable header: {e}") from None
    if not isinstance(header, dict):
        raise ConversionError("mjr", "unreadable header: not an object")
    return header


def read_mjr_header(path: Path) -> dict[str, Any]:
    """:func:`parse_mjr_header` of ``path``'s first bytes."""
    with open(path, "rb") as f:
        return parse_mjr_header(f.read(4096))


def pp_rec_command(pp_rec: str, src: Path, dst: Path) -> list[str]:
    """``janus-pp-rec`` turning one ``.mjr`` into ``dst`` (its extension picks the format)."""
    return [pp_rec, "-o", str(src), str(dst)]


def offsets(tracks: Sequence[Track]) -> list[float]:
    """Each track's start (s) after the earliest one's first packet."""
    firsts = [t.first_us for t in tracks]
    base = min(firsts, default=0)
    return [round((f - base) / 1e6, 3) for f in firsts]


def mix_command(
    ffmpeg: str,
    audio: Sequence[tuple[Path, float]],
    video: Sequence[tuple[Path, float]],
    out: Path,
) -> list[str]:
    """One ``ffmpeg`` run: every audio (path, start in s) delayed and mixed with ``amix``;
    with videos, them side by side (``hstack``, each TILE_W×TILE_H, delayed) in VP8 + Opus,
    else Opus alone. The output format follows ``out``'s extension (.webm / .opus)."""
    if not audio and not video:
        raise ValueError("nothing to mix")
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-y"]
    for path, _ in [*audio, *video]:
        cmd += ["-i", str(path)]
    parts: list[str] = []
    for i, (_, start) in enumerate(audio):
        ms = round(start * 1000)
        parts.append(f"[{i}:a]aresample=48000,adelay=delays={ms}:all=1[a{i}]")
    if audio:
        labels = "".join(f"[a{i}]" for i in range(len(audio)))
        parts.append(f"{labels}amix=inputs={len(audio)}:duration=longest:dropout_transition=0[aout]")
    for j, (_, start) in enumerate(video):
        k = len(audio) + j
        scale = f"scale={TILE_W}:{TILE_H}:force_original_aspect_ratio=decrease"
        pad = f"pad={TILE_W}:{TILE_H}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25"
        parts.append(f"[{k}:v]{scale},{pad},tpad=start_duration={start:g}:color=black[v{j}]")
    if len(video) > 1:
        labels = "".join(f"[v{j}]" for j in range(len(video)))
        parts.append(f"{labels}hstack=inputs={len(video)}[vout]")
    elif video:
        parts[-1] = parts[-1].replace("[v0]", "[vout]")
    cmd += ["-filter_complex", ";".join(parts)]
    if audio:
        cmd += ["-map", "[aout]", "-c:a", "libopus", "-b:a", "64k"]
    if video:
        cmd += ["-map", "[vout]", "-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8"]
    cmd.append(str(out))
    return cmd


def output_name(call_id: str, media: Media) -> str:
    """The mixed file's name: ``<call id>.webm`` with video, ``<call id>.opus`` without."""
    if not _SAFE_ID.match(call_id):
        raise ValueError(f"call id {call_id!r} cannot name a file")
    return f"{call_id}.{'webm' if media == 'video' else 'opus'}"


def ffprobe_command(ffprobe: str, path: Path) -> list[str]:
    return [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", str(path)]


# ---- running the tools ------------------------------------------------------------------


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_tool(cmd: Sequence[str], tool: str, timeout: float) -> str:
    """Run ``cmd``; its output (stdout and stderr) when it exits 0, else
    :class:`ConversionError` with the output's tail (also when it is missing or takes
    longer than ``timeout`` s: then it is killed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its children are ended with it
        )
    except OSError as e:
        raise ConversionError(tool, f"cannot run {cmd[0]}: {e}") from None
    try:
        raw, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        raw, _ = await proc.communicate()
        raise ConversionError(tool, f"took longer than {timeout:g} s", raw.decode(errors="replace")) from None
    except asyncio.CancelledError:
        _kill_group(proc)
        await proc.wait()
        raise
    out = raw.decode(errors="replace")
    if proc.returncode != 0:
        raise ConversionError(tool, f"exited {proc.returncode}", out, proc.returncode)
    return out


def find_tracks(source: Path) -> list[Track]:
    """The audio and video ``.mjr`` of ``source`` whose names give a user id (sorted by
    user id, then kind); their headers are read by :func:`convert`."""
    tracks = []
    for p in sorted(source.glob("*.mjr")):
        parsed = parse_track_name(p.name)
        if parsed is not None:
            tracks.append(Track(p, parsed[0], parsed[1]))
    return sorted(tracks, key=lambda t: (t.user_id, t.kind, t.path.name))


async def convert(call_id: str, source: Path, recordings: Path, tools: Tools = Tools()) -> Recording:
    """Make ``source``'s ``.mjr`` files (one call's) into ``recordings/<call id>.webm``
    (with video) or ``.opus``; raises :class:`ConversionError` naming the step that failed.
    The output is written under a temporary name and renamed, so it is whole or absent."""
    output_name(call_id, "audio")  # a call id that cannot name a file goes no further
    tracks = await asyncio.to_thread(find_tracks, source)
    if not tracks:
        raise ConversionError("folder", f"no Janus recordings (.mjr) in {source}")
    await asyncio.to_thread(recordings.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{call_id}-", dir=recordings) as tmp:
        work = Path(tmp)
        done: list[tuple[Track, Path]] = []
        for i, t in enumerate(tracks):
            try:
                header = await asyncio.to_thread(read_mjr_header, t.path)
            except (ConversionError, OSError) as bad:
                # A damaged file: janus-pp-rec's own words are the clearest error.
                await run_tool(
                    pp_rec_command(tools.pp_rec, t.path, work / "x.opus"), "janus-pp-rec", tools.timeout
                )
                raise ConversionError("mjr", f"{t.path.name}: {bad}") from None
            codec = str(header.get("c", "")).lower()
            ext = PP_EXTENSIONS.get(codec)
            if ext is None:
                raise ConversionError("mjr", f"{t.path.name}: codec {codec!r} is not supported")
            dst = work / f"{i}-{t.kind}.{ext}"
            await run_tool(pp_rec_command(tools.pp_rec, t.path, dst), "janus-pp-rec", tools.timeout)
            if not dst.exists() or dst.stat().st_size == 0:
                raise ConversionError("janus-pp-rec", f"{t.path.name}: wrote nothing")
            first = int(header.get("u") or header.get("s") or 0)
            done.append((Track(t.path, t.user_id, t.kind, codec, first), dst))
        starts = offsets([t for t, _ in done])
        audio = [(p, s) for (t, p), s in zip(done, starts, strict=True) if t.kind == "audio"]
        video = [(p, s) for (t, p), s in zip(done, starts, strict=True) if t.kind == "video"]
        media: Media = "video" if video else "audio"
        name = output_name(call_id, media)
        part = work / name
        await run_tool(mix_command(tools.ffmpeg, audio, video, part), "ffmpeg", tools.timeout)
        probed = await run_tool(ffprobe_command(tools.ffprobe, part), "ffprobe", 60.0)
        try:
            duration = float(probed.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise ConversionError("ffprobe", "no duration", probed) from None
        final = recordings / name
        os.replace(part, final)
    return Recording(call_id, str(final), round(duration, 3), final.stat().st_size, media)


# ---- durable jobs -----------------------------------------------------------------------

#: Seconds to wait before attempt 2, 3, … (the last repeats).
DEFAULT_BACKOFF = (10.0, 60.0, 300.0)
INTERRUPTED = "interrupted: the server stopped during the conversion"


@dataclass
class Job:
    """One call's conversion, as kept in ``<recordings>/<call id>.job.json``."""

    call_id: str
    source: str
    state: JobState = "pending"
    attempts: int = 0
    max_attempts: int = 3
    next_at: float = 0.0
    errors: list[dict[str, Any]] = field(default_factory=list)
    recording: dict[str, Any] | None = None
    #: when it was submitted (the call's end), unix seconds
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def job_due(job: Job, now: float) -> bool:
    return job.state == "pending" and job.next_at <= now


def job_begin(job: Job, now: float) -> None:
    """An attempt starts (counted now, so one cut off by a restart is counted too)."""
    if job.state != "pending":
        raise ValueError(f"job of {job.call_id} is {job.state}, not pending")
    job.state = "converting"
    job.attempts += 1
    job.next_at = now


def job_succeed(job: Job, rec: Recording) -> None:
    job.state = "ready"
    job.recording = asdict(rec)


def job_fail(job: Job, error: str, now: float, backoff: Sequence[float] = DEFAULT_BACKOFF) -> None:
    """The attempt failed: pending again after its backoff, or ``failed`` when it was the last."""
    if job.state != "converting":
        raise ValueError(f"job of {job.call_id} is {job.state}, not converting")
    job.errors.append({"attempt": job.attempts, "at": now, "error": error})
    if job.attempts >= job.max_attempts:
        job.state = "failed"
        return
    job.state = "pending"
    wait = backoff[min(job.attempts - 1, len(backoff) - 1)] if backoff else 0.0
    job.next_at = now + wait


def job_recover(job: Job, now: float, backoff: Sequence[float] = DEFAULT_BACKOFF) -> bool:
    """At start: a job left ``converting`` was cut off; it counts as a failed attempt.
    True if it changed."""
    if job.state != "converting":
        return False
    job_fail(job, INTERRUPTED, now, backoff)
    return True


Converter = Callable[[str, Path, Path], Awaitable[Recording]]


class RecordingJobs:
    """The conversions of a recordings folder, kept in a JSON file per call so that none
    is lost: :meth:`submit` one, :meth:`run_due` (or :meth:`run` in a task) converts the
    due ones; a failed attempt waits ``backoff`` and is tried again, up to
    ``max_attempts``; the last failure is logged at ERROR and given to ``on_failed``
    (once), a success to ``on_ready``. A new instance on the same folder (a restarted
    server) picks up where the old one stopped."""

    def __init__(
        self,
        recordings: Path,
        *,
        max_attempts: int = 3,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        tools: Tools = Tools(),
        converter: Converter | None = None,
        on_ready: Callable[[Job], None] | None = None,
        on_failed: Callable[[Job], None] | None = None,
        clock: Callable[[], float] = time.time,
        delete_source: bool = False,
    ) -> None:
        self.folder = recordings
        self.max_attempts = max_attempts
        self.backoff = tuple(backoff)
        self.tools = tools
        self.converter = converter
        self.on_ready = on_ready
        self.on_failed = on_failed
        self.clock = clock
        #: delete a job's source folder (its .mjr files) once its conversion succeeded
        self.delete_source = delete_source
        self._wake = asyncio.Event()
        self.folder.mkdir(parents=True, exist_ok=True)
        now = clock()
        for job in self.jobs():
            if job_recover(job, now, self.backoff):
                log.warning("recording of call %s: attempt %d was cut off", job.call_id, job.attempts)
                self._save(job)
                if job.state == "failed":
                    self._report_failed(job)

    def _path(self, call_id: str) -> Path:
        output_name(call_id, "audio")  # the same rule for the state file's name
        return self.folder / f"{call_id}.job.json"

    def _save(self, job: Job) -> None:
        path = self._path(job.call_id)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(job.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, call_id: str) -> Job | None:
        path = self._path(call_id)
        try:
            return Job.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def jobs(self) -> list[Job]:
        """Every job of the folder (a state file that cannot be read is logged and left)."""
        out = []
        for p in sorted(self.folder.glob("*.job.json")):
            try:
                out.append(Job.from_json(json.loads(p.read_text())))
            except (OSError, ValueError, TypeError) as e:
                log.error("recording job %s cannot be read: %s", p.name, e)
        return out

    def failed(self) -> list[Job]:
        return [j for j in self.jobs() if j.state == "failed"]

    def submit(self, call_id: str, source: Path, delay: float = 0.0) -> Job:
        """Queue the conversion of ``source`` (a call's .mjr folder), due in ``delay`` s; an
        existing job of the call is kept as it is."""
        job = self.get(call_id)
        if job is None:
            now = self.clock()
            job = Job(
                call_id, str(source), max_attempts=self.max_attempts, next_at=now + delay, created_at=now
            )
            self._save(job)
        self._wake.set()
        return job

    async def _convert(self, job: Job) -> Recording:
        if self.converter is not None:
            return await self.converter(job.call_id, Path(job.source), self.folder)
        return await convert(job.call_id, Path(job.source), self.folder, self.tools)

    async def run_due(self) -> list[Job]:
        """One attempt for every due job, one at a time; the jobs tried."""
        tried = []
        for job in self.jobs():
            if not job_due(job, self.clock()):
                continue
            job_begin(job, self.clock())
            self._save(job)
            try:
                rec = await self._convert(job)
            except ConversionError as e:
                job_fail(job, str(e), self.clock(), self.backoff)
            except Exception as e:  # a bug must not lose the job either
                job_fail(job, f"{type(e).__name__}: {e}", self.clock(), self.backoff)
            else:
                job_succeed(job, rec)
            self._save(job)
            tried.append(job)
            if job.state == "ready":
                log.info("recording of call %s ready: %s", job.call_id, job.recording)
                if self.delete_source:
                    await asyncio.to_thread(shutil.rmtree, job.source, True)
                if self.on_ready is not None:
                    self.on_ready(job)
            elif job.state == "failed":
                self._report_failed(job)
            else:
                log.warning(
                    "recording of call %s: attempt %d of %d failed: %s",
                    job.call_id,
                    job.attempts,
                    job.max_attempts,
                    job.errors[-1]["error"],
                )
        return tried

    def _report_failed(self, job: Job) -> None:
        log.error(
            "recording of call %s FAILED after %d attempts: %s",
            job.call_id,
            job.attempts,
            job.errors[-1]["error"] if job.errors else "",
        )
        if self.on_failed is not None:
            self.on_failed(job)

    def recording_path(self, job: Job) -> Path | None:
        """The file of a ready job (inside the folder), or None."""
        if job.state != "ready" or not job.recording:
            return None
        path = Path(str(job.recording.get("path", "")))
        return path if path.parent == self.folder and path.is_file() else None

    def purge(self, older_than: float) -> list[str]:
        """Delete the ready and failed jobs submitted before ``older_than`` (clock time):
        their recording file, their ``.mjr`` folder and their state file. The call ids."""
        gone = []
        for job in self.jobs():
            made = job.created_at or self._path(job.call_id).stat().st_mtime
            if job.state not in ("ready", "failed") or made >= older_than:
                continue
            path = self.recording_path(job)
            if path is not None:
                path.unlink(missing_ok=True)
            shutil.rmtree(job.source, ignore_errors=True)
            self._path(job.call_id).unlink(missing_ok=True)
            gone.append(job.call_id)
        if gone:
            log.info("recordings past their retention deleted: %s", ", ".join(gone))
        return gone

    def next_due(self) -> float | None:
        """When the next pending job is due (clock time), or None."""
        times = [j.next_at for j in self.jobs() if j.state == "pending"]
        return min(times) if times else None

    async def run(self) -> None:
        """Convert due jobs until cancelled, waking at the next due time or a submit."""
        while True:
            self._wake.clear()
            await self.run_due()
            nxt = self.next_due()
            wait = None if nxt is None else max(0.0, nxt - self.clock())
            # Not asyncio.wait_for: on 3.11 it can swallow a cancel that races the wake-up.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()


def tools_missing(tools: Tools = Tools()) -> list[str]:
    """The programs of ``tools`` that are not found."""
    return [t for t in (tools.pp_rec, tools.ffmpeg, tools.ffprobe) if shutil.which(t) is None]
