"""The pure parts of server/recording.py (file names, .mjr headers, command lines, job
state transitions) and the job runner with a stand-in converter; run_tool with real
processes. The real tools and a real Janus: tests/sfu/test_recording.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ringline.server import recording as r


def test_track_names() -> None:
    assert r.parse_track_name("videoroom-ringline-c1-user-alice-1796524422670239-audio-0.mjr") == (
        "alice",
        "audio",
    )
    assert r.parse_track_name("videoroom-ringline-c1-user-a-b-user-c-17-video-1.mjr") == (
        "a-b-user-c",
        "video",
    )
    assert r.parse_track_name("videoroom-room-user-bob-17-audio.mjr") == ("bob", "audio")  # Janus 0.x
    assert r.parse_track_name("videoroom-room-user-bob-17-data-2.mjr") is None
    assert r.parse_track_name("bob-audio.mjr") is None
    assert r.parse_track_name("videoroom-room-user-bob-17-audio-0.opus") is None


def test_mjr_header() -> None:
    head = json.dumps({"t": "a", "c": "opus", "s": 10, "u": 12}).encode()
    data = b"MJR00002" + len(head).to_bytes(2, "big") + head + b"MEET..."
    assert r.parse_mjr_header(data) == {"t": "a", "c": "opus", "s": 10, "u": 12}
    with pytest.raises(r.ConversionError, match="no MJR header"):
        r.parse_mjr_header(b"\x00" * 64)
    with pytest.raises(r.ConversionError, match="unreadable header"):
        r.parse_mjr_header(b'MJR00002\x00\x10{"t":"a","c":"o')


def test_command_lines() -> None:
    assert r.pp_rec_command("janus-pp-rec", Path("/a/x.mjr"), Path("/w/0-audio.opus")) == [
        "janus-pp-rec",
        "-o",
        "/a/x.mjr",
        "/w/0-audio.opus",
    ]
    tracks = [
        r.Track(Path("a"), "a", "audio", "opus", 1_000_000),
        r.Track(Path("b"), "b", "audio", "opus", 1_250_000),
    ]
    assert r.offsets(tracks) == [0.0, 0.25]
    audio = r.mix_command("ffmpeg", [(Path("0.opus"), 0.0), (Path("1.opus"), 0.25)], [], Path("c.opus"))
    graph = audio[audio.index("-filter_complex") + 1]
    assert "[0:a]aresample=48000,adelay=delays=0:all=1[a0]" in graph
    assert "[1:a]aresample=48000,adelay=delays=250:all=1[a1]" in graph
    assert "[a0][a1]amix=inputs=2:duration=longest" in graph
    assert audio[-1] == "c.opus" and "libopus" in audio and "libvpx" not in audio
    assert audio.count("-i") == 2
    video = r.mix_command(
        "ffmpeg", [(Path("0.opus"), 0.0)], [(Path("1.webm"), 0.0), (Path("2.webm"), 0.5)], Path("c.webm")
    )
    graph = video[video.index("-filter_complex") + 1]
    assert "[1:v]scale=320:240" in graph and "[2:v]scale=320:240" in graph
    assert "tpad=start_duration=0.5" in graph and "[v0][v1]hstack=inputs=2[vout]" in graph
    assert "libvpx" in video and "libopus" in video and video.count("-map") == 2
    one = r.mix_command("ffmpeg", [], [(Path("1.webm"), 0.0)], Path("c.webm"))
    assert "[vout]" in one[one.index("-filter_complex") + 1] and "libopus" not in one
    with pytest.raises(ValueError):
        r.mix_command("ffmpeg", [], [], Path("c.opus"))
    assert r.output_name("c1", "audio") == "c1.opus" and r.output_name("c1", "video") == "c1.webm"
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            r.output_name(bad, "audio")


def test_job_transitions() -> None:
    job = r.Job("c1", "/src", max_attempts=3, next_at=100.0)
    assert not r.job_due(job, 99.0) and r.job_due(job, 100.0)
    r.job_begin(job, 100.0)
    assert (job.state, job.attempts) == ("converting", 1)
    with pytest.raises(ValueError):
        r.job_begin(job, 100.0)
    r.job_fail(job, "boom 1", 101.0, (10.0, 60.0))
    assert (job.state, job.next_at) == ("pending", 111.0)
    r.job_begin(job, 111.0)
    r.job_fail(job, "boom 2", 112.0, (10.0, 60.0))
    assert (job.state, job.next_at) == ("pending", 172.0)
    r.job_begin(job, 172.0)
    r.job_fail(job, "boom 3", 173.0, (10.0, 60.0))
    assert job.state == "failed" and [e["error"] for e in job.errors] == ["boom 1", "boom 2", "boom 3"]
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]
    with pytest.raises(ValueError):
        r.job_fail(job, "again", 174.0)
    assert not r.job_due(job, 1e9)
    # A restart while converting counts as a failed attempt.
    cut = r.Job("c2", "/src", max_attempts=2)
    r.job_begin(cut, 0.0)
    assert (
        r.job_recover(cut, 5.0, (1.0,)) and cut.state == "pending" and cut.errors[0]["error"] == r.INTERRUPTED
    )
    assert not r.job_recover(cut, 5.0)
    r.job_begin(cut, 6.0)
    assert r.job_recover(cut, 7.0) and cut.state == "failed"
    ok = r.Job("c3", "/src")
    r.job_begin(ok, 0.0)
    r.job_succeed(ok, r.Recording("c3", "/rec/c3.opus", 10.0, 1234, "audio"))
    assert ok.state == "ready" and ok.recording == {
        "id": "c3",
        "path": "/rec/c3.opus",
        "duration": 10.0,
        "size": 1234,
        "media": "audio",
    }
    assert r.Job.from_json(json.loads(json.dumps(ok.to_json()))) == ok


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_jobs_retry_then_report_once(tmp_path: Path) -> None:
    clock = Clock()
    calls: list[str] = []
    outcome: dict[str, r.Recording | None] = {"c1": None}

    async def converter(call_id: str, source: Path, recordings: Path) -> r.Recording:
        calls.append(call_id)
        rec = outcome.get(call_id)
        if rec is None:
            raise r.ConversionError("ffmpeg", "exited 1", "no such filter")
        return rec

    failed: list[r.Job] = []
    ready: list[r.Job] = []
    jobs = r.RecordingJobs(
        tmp_path,
        max_attempts=2,
        backoff=(30.0,),
        converter=converter,
        on_failed=failed.append,
        on_ready=ready.append,
        clock=clock,
    )
    jobs.submit("c1", tmp_path / "src1")
    jobs.submit("c2", tmp_path / "src2")
    assert jobs.submit("c1", tmp_path / "other").source == str(tmp_path / "src1")  # kept
    outcome["c2"] = r.Recording("c2", "x", 1.0, 1, "audio")
    assert [j.call_id for j in await jobs.run_due()] == ["c1", "c2"]
    assert [j.call_id for j in ready] == ["c2"] and jobs.get("c2").state == "ready"  # type: ignore[union-attr]
    c1 = jobs.get("c1")
    assert c1 is not None and (c1.state, c1.attempts, c1.next_at) == ("pending", 1, 1030.0)
    assert await jobs.run_due() == [] and jobs.next_due() == 1030.0  # not due yet
    clock.now = 1030.0
    await jobs.run_due()
    c1 = jobs.get("c1")
    assert c1 is not None and c1.state == "failed" and c1.attempts == 2
    assert "ffmpeg: exited 1\nno such filter" in c1.errors[-1]["error"]
    assert [j.call_id for j in failed] == ["c1"] and [j.call_id for j in jobs.failed()] == ["c1"]
    # A new runner on the folder (a restart) neither tries nor reports it again.
    again = r.RecordingJobs(tmp_path, converter=converter, on_failed=failed.append, clock=clock)
    clock.now = 1e6
    assert await again.run_due() == [] and len(failed) == 1 and calls == ["c1", "c2", "c1"]


async def test_jobs_run_wakes_on_submit(tmp_path: Path) -> None:
    done = asyncio.Event()

    async def converter(call_id: str, source: Path, recordings: Path) -> r.Recording:
        return r.Recording(call_id, "x", 1.0, 1, "audio")

    jobs = r.RecordingJobs(tmp_path, converter=converter, on_ready=lambda j: done.set())
    task = asyncio.create_task(jobs.run())
    try:
        await asyncio.sleep(0)
        jobs.submit("c1", tmp_path)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
    assert jobs.get("c1").state == "ready"  # type: ignore[union-attr]


async def test_run_tool_errors(tmp_path: Path) -> None:
    assert (await r.run_tool(["sh", "-c", "echo hi"], "sh", 5)).strip() == "hi"
    with pytest.raises(r.ConversionError, match=r"sh: exited 3\nline 1\nline 2") as e:
        await r.run_tool(["sh", "-c", "echo line 1; echo line 2 >&2; exit 3"], "sh", 5)
    assert e.value.returncode == 3 and e.value.tool == "sh"
    with pytest.raises(r.ConversionError, match=r"took longer than 0\.3 s"):
        await r.run_tool(["sh", "-c", "echo started; sleep 30"], "sh", 0.3)
    with pytest.raises(r.ConversionError, match="cannot run"):
        await r.run_tool([str(tmp_path / "no-such-tool")], "x", 5)
    with pytest.raises(ValueError, match="cannot name a file"):
        await r.convert("../c1", tmp_path, tmp_path / "out")
    with pytest.raises(r.ConversionError, match="no Janus recordings"):
        await r.convert("c1", tmp_path, tmp_path / "out")


# ---- wiring: jobs' times and retention, the REST/callback shape, the flags, the rooms ------


def _ready(jobs: r.RecordingJobs, call_id: str, source: Path, at: float) -> r.Job:
    """A job made ready at clock ``at`` with a stand-in recording file."""
    jobs.clock = lambda: at
    job = jobs.submit(call_id, source)
    out = jobs.folder / f"{call_id}.opus"
    out.write_bytes(b"OggS")
    r.job_begin(job, at)
    r.job_succeed(job, r.Recording(call_id, str(out), 10.0, 4, "audio"))
    jobs._save(job)
    return job


def test_submit_delay_created_at_and_old_state_files(tmp_path: Path) -> None:
    jobs = r.RecordingJobs(tmp_path / "rec", clock=lambda: 100.0)
    job = jobs.submit("c1", tmp_path / "mjr" / "c1", delay=2.0)
    assert (job.created_at, job.next_at) == (100.0, 102.0)
    assert not r.job_due(job, 101.0) and r.job_due(job, 102.0)
    # A state file written before created_at existed still reads.
    (tmp_path / "rec" / "c0.job.json").write_text(json.dumps({"call_id": "c0", "source": "x"}))
    old = jobs.get("c0")
    assert old is not None and old.created_at == 0.0 and old.state == "pending"


def test_purge_deletes_file_folder_and_state_past_retention(tmp_path: Path) -> None:
    jobs = r.RecordingJobs(tmp_path / "rec")
    for cid, at in (("old", 1000.0), ("new", 5000.0)):
        src = tmp_path / "mjr" / cid
        src.mkdir(parents=True)
        (src / "x.mjr").write_bytes(b"MJR")
        _ready(jobs, cid, src, at)
    jobs.clock = lambda: 1000.0
    pending = jobs.submit("busy", tmp_path / "mjr" / "busy")  # not converted yet: kept
    assert jobs.recording_path(pending) is None
    ready = jobs.get("old")
    assert ready is not None and jobs.recording_path(ready) == tmp_path / "rec" / "old.opus"
    assert jobs.purge(older_than=2000.0) == ["old"]
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == [
        "busy.job.json",
        "new.job.json",
        "new.opus",
    ]
    assert not (tmp_path / "mjr" / "old").exists() and (tmp_path / "mjr" / "new").exists()


async def test_ready_job_deletes_its_mjr_folder_when_asked(tmp_path: Path) -> None:
    async def fake(call_id: str, source: Path, folder: Path) -> r.Recording:
        out = folder / f"{call_id}.opus"
        out.write_bytes(b"OggS")
        return r.Recording(call_id, str(out), 1.0, 4, "audio")

    for delete in (True, False):
        src = tmp_path / f"mjr-{delete}"
        src.mkdir()
        jobs = r.RecordingJobs(tmp_path / f"rec-{delete}", converter=fake, delete_source=delete)
        jobs.submit("c1", src)
        assert [j.state for j in await jobs.run_due()] == ["ready"]
        assert src.exists() is not delete


def test_recording_to_v4_and_its_callbacks() -> None:
    from ringline.server.callbacks import (
        V4_RECORDING_FAILED,
        V4_RECORDING_READY,
        CallbackTargets,
        plan_recording_callback,
        recording_to_v4,
    )

    job = r.Job("c1", "/x", state="ready", attempts=1, created_at=1700000000.5)
    job.recording = {"id": "c1", "path": "/rec/c1.webm", "duration": 9.9, "size": 1234, "media": "video"}
    assert recording_to_v4(job) == {
        "RecordingId": "c1",
        "CallId": "c1",
        "State": "Ready",
        "CreatedTime": 1700000000,
        "Attempts": 1,
        "Errors": [],
        "Duration": 9.9,
        "Size": 1234,
        "MediaType": "Video",
        "Format": "webm",
    }
    bad = r.Job(
        "c2",
        "/x",
        state="failed",
        attempts=3,
        errors=[{"attempt": 3, "at": 5.0, "error": "ffmpeg: exited 1"}],
    )
    assert recording_to_v4(bad)["Errors"] == [{"Attempt": 3, "Time": 5, "Error": "ffmpeg: exited 1"}]
    assert "Duration" not in recording_to_v4(bad)
    targets = CallbackTargets("http://cb/v4", frozenset({V4_RECORDING_READY}))
    d = plan_recording_callback(job, V4_RECORDING_READY, targets, 1700000001.0)
    assert d is not None and d.command == V4_RECORDING_READY and d.call_id == "c1" and d.url == "http://cb/v4"
    body = json.loads(d.body)
    assert body["CallbackCommand"] == V4_RECORDING_READY and body["RecordingInfo"]["Size"] == 1234
    assert body["EventTime"] == 1700000001000
    assert plan_recording_callback(bad, V4_RECORDING_FAILED, targets, 1.0) is None  # not subscribed
    assert plan_recording_callback(job, V4_RECORDING_READY, CallbackTargets(), 1.0) is None


def test_record_calls_needs_the_sfu() -> None:
    from ringline.server.config import check_recording

    check_recording(True, ("http://127.0.0.1:8088/janus",), 7.0)
    check_recording(False, (), 0.0)
    with pytest.raises(ValueError, match="--record-calls needs --sfu"):
        check_recording(True, (), 0.0)
    with pytest.raises(ValueError, match="--recording-retention-days must be >= 0"):
        check_recording(False, (), -1.0)


class _FakeJanus:
    """What SfuRooms asks of a JanusClient, written down (no Janus: its behaviour is
    tested for real in tests/sfu/test_recording.py)."""

    def __init__(self) -> None:
        self.url = "fake"
        self.calls: list[tuple[str, dict[str, object]]] = []
        self.on_session_lost = None
        self.on_down = None
        self.on_up = None
        self.up = True
        self.in_use = lambda: False

    async def create_room(self, room: str, secret: str, tokens: list[str], **extra: object) -> None:
        self.calls.append(("create", dict(extra)))

    async def allowed(self, room: str, secret: str, action: str, tokens: list[str]) -> list[str]:
        return []

    async def request(self, body: dict[str, object]) -> dict[str, object]:
        self.calls.append((str(body["request"]), {"record": body.get("record")}))
        return {}

    async def destroy(self, room: str, secret: str) -> bool:
        self.calls.append(("destroy", {}))
        return True

    async def kick(self, room: str, secret: str, participant: str) -> bool:
        return True

    async def detach(self, handle: int) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_sfu_rooms_record_a_small_call_and_hand_its_folder_over(tmp_path: Path) -> None:
    from ringline.server.sfu import RoomPlan, SfuRooms

    plans = {"c1": RoomPlan(live=True, size=2, connected={"alice": "a-dev", "bob": "b-dev"}, record=True)}
    told: list[tuple[str, bool]] = []
    pushed: list[tuple[str, bool]] = []
    done: list[tuple[str, Path]] = []
    janus = _FakeJanus()

    def announce(cid: str, on: bool) -> set[str]:
        told.append((cid, on))
        return {"a-dev"}  # the devices the hub told: a-dev only

    rooms = SfuRooms(
        [janus],  # type: ignore[list-item]
        "secret",
        min_members=3,
        plan=lambda cid: plans.get(cid),
        push=lambda _d, _c, _i: None,
        rec_root=tmp_path / "mjr",
        on_recording=announce,
        push_recording=lambda dev, _c, on: pushed.append((dev, on)),
        on_recorded=lambda cid, folder: done.append((cid, folder)),
    )

    async def step() -> None:
        rooms.touch("c1")
        while rooms._tasks:
            await asyncio.gather(*list(rooms._tasks.values()))

    await step()  # two members, below min_members, but recorded: a room, recording
    assert janus.calls == [("create", {"rec_dir": str(tmp_path / "mjr" / "c1"), "record": True})]
    assert (tmp_path / "mjr" / "c1").is_dir()
    assert told == [("c1", True)] and pushed == [("b-dev", True)]  # b-dev was not told by the hub
    plans["c1"] = RoomPlan(live=True, size=2, connected={"alice": "a-dev", "bob": "b-dev"}, record=False)
    await step()
    assert janus.calls[-1] == ("enable_recording", {"record": False}) and told[-1] == ("c1", False)
    del plans["c1"]  # the call ended
    await step()
    assert janus.calls[-1] == ("destroy", {}) and done == [("c1", tmp_path / "mjr" / "c1")]
    # A call never recorded hands nothing over.
    plans["c2"] = RoomPlan(live=True, size=3, connected={"a": "d1"})
    rooms.touch("c2")
    while rooms._tasks:
        await asyncio.gather(*list(rooms._tasks.values()))
    del plans["c2"]
    rooms.touch("c2")
    while rooms._tasks:
        await asyncio.gather(*list(rooms._tasks.values()))
    assert done == [("c1", tmp_path / "mjr" / "c1")]


async def test_hub_hands_recordings_over_and_queues_their_callbacks(tmp_path: Path) -> None:
    """The hub's recording hooks with a real (in-memory) store: a recorded room's folder
    becomes a job (an empty one is dropped), a ready and a failed job each queue their v4
    callback in the outbox, and admin start/stop refuse what they cannot do."""
    from ringline.core.errors import LocalCallError
    from ringline.server.config import Settings
    from ringline.server.hub import Hub
    from ringline.server.store import SqliteStore

    store = SqliteStore(":memory:")
    await store.open()
    root = tmp_path  # absolute already (and no link in it under pytest)
    settings = Settings(
        data_dir=str(tmp_path), sfu_urls=("http://127.0.0.1:9/janus",), sfu_secret="s", heartbeat_grace=60
    )
    left = root / "recordings" / "mjr" / "c9"  # the server stopped before handing it over
    left.mkdir(parents=True)
    (left / "videoroom-ringline-c9-user-bob-1-audio-0.mjr").write_bytes(b"MJR00002")
    (root / "recordings" / "mjr" / "c8").mkdir()  # a room that never recorded
    hub = Hub(settings, store, sdk_app_id=1)
    await hub.start()
    try:
        jobs = hub.recordings
        assert jobs is not None
        left_job = jobs.get("c9")
        assert left_job is not None and left_job.source == str(left)
        assert not (root / "recordings" / "mjr" / "c8").exists()
        assert jobs is not None and jobs.folder == root / "recordings"
        empty = tmp_path / "recordings" / "mjr" / "c0"
        empty.mkdir(parents=True)
        hub._recorded("c0", empty)  # no member published: nothing to convert
        assert not empty.exists() and jobs.get("c0") is None
        full = tmp_path / "recordings" / "mjr" / "c1"
        full.mkdir()
        (full / "videoroom-ringline-c1-user-alice-1-audio-0.mjr").write_bytes(b"MJR00002")
        hub._recorded("c1", full)
        job = jobs.get("c1")
        assert job is not None and job.state == "pending" and job.source == str(full)
        hub.callback_configs["v4"] = {
            "Url": "http://127.0.0.1:9/v4",
            "CallbackCommandList": ["Call.CallbackAfterRecordingReady", "Call.CallbackAfterRecordingFailed"],
        }
        hub._retarget()
        ready = r.Job("c1", str(full), state="ready", attempts=1)
        ready.recording = {"id": "c1", "path": "/x/c1.opus", "duration": 10.0, "size": 9, "media": "audio"}
        hub._recording_ready(ready)
        failed = r.Job(
            "c2", "/x", state="failed", attempts=3, errors=[{"attempt": 3, "at": 1.0, "error": "e"}]
        )
        hub._recording_failed(failed)
        await hub.drain()
        total, entries = await store.outbox.list_deliveries([])
        got = sorted((e.delivery.call_id, e.delivery.command) for e in entries)
        assert total == 2 and got == [
            ("c1", "Call.CallbackAfterRecordingReady"),
            ("c2", "Call.CallbackAfterRecordingFailed"),
        ]
        with pytest.raises(LocalCallError, match="no live call 'nope'"):
            hub.set_recording("nope", True)
    finally:
        await hub.close()
        await store.close()
