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
