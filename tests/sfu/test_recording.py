"""Recording with the real tools and a real Janus: inside a loopback-only network namespace
a VideoRoom room with recording on gets two aiortc publishers, each with a tone of its own
(440 and 660 Hz) and a 160x120 test pattern for 10 s (tests/sfu/recording_driver.py).
Then server/recording.py makes Janus's .mjr files into one file per call with janus-pp-rec
and ffmpeg: the audio alone into Ogg Opus, audio and video into WebM (VP8 side by side +
Opus), each 10 ± 1 s by ffprobe with both tones audible; a damaged .mjr fails with
janus-pp-rec's words, is retried the configured number of times and ends failed (reported
once); a conversion cut off by a restart is counted and done by the next runner."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))

from netns import loopback_netns, run_in

from needs import missing
from ringline.server import recording as r

pytestmark = pytest.mark.timeout(180)

HERE = Path(__file__).resolve().parent
SECONDS = 10.0


def _tools() -> None:
    absent = r.tools_missing()
    if absent:
        missing(
            f"{', '.join(absent)} not installed: apt-get install janus-tools ffmpeg (./scripts/test does)"
        )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .mjr folder of a 10 s call of two members (audio and video each)."""
    _tools()
    folder = tmp_path_factory.mktemp("mjr")
    folder.chmod(0o777)
    with loopback_netns() as ns:
        out = run_in(ns, [str(HERE / "recording_driver.py"), str(folder), str(SECONDS)], timeout=120)
    assert abs(out["connected_seconds"] - SECONDS) < 0.5, out
    return folder


def _copy(src: Path, dst: Path, kinds: tuple[str, ...] = ("audio", "video")) -> Path:
    dst.mkdir()
    for p in src.glob("*.mjr"):
        parsed = r.parse_track_name(p.name)
        if parsed is not None and parsed[1] in kinds:
            shutil.copy(p, dst / p.name)
    return dst


def _size(path: str) -> int:
    return Path(path).stat().st_size


def _streams(path: str) -> list[dict[str, object]]:
    got = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "json",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    streams: list[dict[str, object]] = json.loads(got.stdout)["streams"]
    return streams


def _mean_volume(path: str) -> float:
    got = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-i",
            path,
            "-map",
            "0:a",
            "-af",
            "volumedetect",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in got.stderr.splitlines() if "mean_volume:" in x)
    return float(line.split("mean_volume:")[1].split()[0])


def _tone_levels(path: str, freqs: tuple[float, ...]) -> dict[float, float]:
    """Each frequency's spectral peak over the median of the spectrum, in the middle 6 s."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
    chunks = []
    with av.open(path) as c:
        for frame in c.decode(c.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    pcm = np.concatenate(chunks).astype(np.float64)[2 * 48000 : 8 * 48000]
    spectrum = np.abs(np.fft.rfft(pcm))
    hz = np.fft.rfftfreq(len(pcm), 1 / 48000)
    floor = float(np.median(spectrum)) or 1.0
    return {f: float(spectrum[(hz > f - 5) & (hz < f + 5)].max()) / floor for f in freqs}


async def test_audio_call_becomes_one_opus_file(recorded: Path, tmp_path: Path) -> None:
    src = _copy(recorded, tmp_path / "src", ("audio",))
    rec = await r.convert("call-a", src, tmp_path / "recordings")
    assert rec.id == "call-a" and rec.media == "audio"
    assert rec.path == str(tmp_path / "recordings" / "call-a.opus") and _size(rec.path) == rec.size
    assert abs(rec.duration - SECONDS) <= 1.0, rec
    assert [(s["codec_type"], s["codec_name"]) for s in _streams(rec.path)] == [("audio", "opus")]
    assert _mean_volume(rec.path) > -60.0
    levels = _tone_levels(rec.path, (440.0, 660.0))
    assert all(v > 100 for v in levels.values()), levels  # both members' tones are in it
    assert sorted(p.name for p in (tmp_path / "recordings").iterdir()) == ["call-a.opus"]  # no leftovers


async def test_video_call_becomes_one_webm_file(recorded: Path, tmp_path: Path) -> None:
    src = _copy(recorded, tmp_path / "src")
    rec = await r.convert("call-v", src, tmp_path / "recordings")
    assert rec.media == "video" and rec.path.endswith("call-v.webm")
    assert abs(rec.duration - SECONDS) <= 1.0, rec
    streams = {str(s["codec_type"]): s for s in _streams(rec.path)}
    assert streams["audio"]["codec_name"] == "opus"
    assert (streams["video"]["codec_name"], streams["video"]["width"], streams["video"]["height"]) == (
        "vp8",
        640,
        240,
    )
    assert _mean_volume(rec.path) > -60.0


async def test_damaged_recording_is_retried_then_reported_failed(recorded: Path, tmp_path: Path) -> None:
    src = _copy(recorded, tmp_path / "src", ("audio",))
    damaged = sorted(src.glob("*.mjr"))[0]
    damaged.write_bytes(b"\x00garbage" * 4096)
    clock = [1000.0]
    failed: list[r.Job] = []
    jobs = r.RecordingJobs(
        tmp_path / "recordings",
        max_attempts=3,
        backoff=(5.0, 20.0),
        on_failed=failed.append,
        clock=lambda: clock[0],
    )
    jobs.submit("call-bad", src)
    for step in (0.0, 5.0, 20.0):
        clock[0] += step
        tried = await jobs.run_due()
        assert [j.call_id for j in tried] == ["call-bad"], step
    job = jobs.get("call-bad")
    assert job is not None and job.state == "failed" and job.attempts == 3 and len(job.errors) == 3
    for e in job.errors:
        assert e["error"].startswith("janus-pp-rec: exited 1") and "wrong prefix" in e["error"], e
    assert [j.call_id for j in failed] == ["call-bad"]
    on_disk = json.loads((tmp_path / "recordings" / "call-bad.job.json").read_text())
    assert on_disk["state"] == "failed" and on_disk["recording"] is None
    assert sorted(p.name for p in (tmp_path / "recordings").iterdir()) == ["call-bad.job.json"]  # no file
    clock[0] += 1e6
    assert await jobs.run_due() == [] and len(failed) == 1


async def test_conversion_cut_off_by_a_restart_is_done_later(recorded: Path, tmp_path: Path) -> None:
    src = _copy(recorded, tmp_path / "src", ("audio",))
    before = r.RecordingJobs(tmp_path / "recordings", backoff=(1.0,), clock=lambda: 50.0)
    cut = before.submit("call-cut", src)
    r.job_begin(cut, 50.0)  # the server stops here, in the middle of converting
    before._save(cut)
    clock = [60.0]
    after = r.RecordingJobs(tmp_path / "recordings", backoff=(1.0,), clock=lambda: clock[0])
    job = after.get("call-cut")
    assert job is not None and (job.state, job.attempts, job.errors[0]["error"]) == (
        "pending",
        1,
        r.INTERRUPTED,
    )
    assert await after.run_due() == []  # its backoff first
    clock[0] = 61.0
    assert [j.call_id for j in await after.run_due()] == ["call-cut"]
    job = after.get("call-cut")
    assert job is not None and job.state == "ready" and job.attempts == 2 and job.recording is not None
    assert abs(job.recording["duration"] - SECONDS) <= 1.0 and _size(job.recording["path"]) > 0


def test_recorded_call_through_ringline_serve(tmp_path: Path) -> None:
    """A whole recorded call through ``ringline serve --sfu`` (tests/sfu/recorded_call_driver.py):
    a 1v1 call placed with ``record`` goes through the SFU, both members hear that it is
    recorded, its file (downloaded over REST) lasts as long as the call and holds both
    tones, ``Call.CallbackAfterRecordingReady`` comes once, signed, and the .mjr files are
    gone; a call that was not recorded stays peer to peer until the admin starts
    recording it over REST, and stops it."""
    _tools()
    tmp_path.chmod(0o777)
    with loopback_netns() as ns:
        out = run_in(ns, [str(HERE / "recorded_call_driver.py"), str(tmp_path), str(SECONDS)], timeout=170)
    cid, cid2 = out["cid"], out["cid2"]
    # 1v1 with record: through the SFU, no mesh connection left.
    for u, other in (("alice", "bob"), ("bob", "alice")):
        assert out["links"][u] == {"publisher": True, "feeds": [other], "mesh": []}, out["links"]
        assert out["events"][u] == [True], out["events"]  # told once, on every device
    # The file: as long as the call, both tones audible.
    path = str(tmp_path / out["download"]["file"])
    assert out["download"]["status"] == 200 and out["download"]["type"] == "audio/ogg", out["download"]
    assert abs(max(out["received_s"].values()) - SECONDS) < 0.5, out["received_s"]  # 10 s of media
    duration = float(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "default=nw=1:nk=1", path],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    # It holds the whole call (at least the media both heard) and nothing from before the
    # accept or after the hang-up; Janus records from the members' first packets, which
    # come before the call's media is counted.
    assert SECONDS - 0.5 <= duration <= out["recordable_s"] + 0.5, (
        duration,
        out["talked_s"],
        out["recordable_s"],
        out["received_s"],
    )
    assert [(s["codec_type"], s["codec_name"]) for s in _streams(path)] == [("audio", "opus")]
    levels = _tone_levels(path, (300.0, 500.0))
    assert all(v > 100 for v in levels.values()), levels
    # The callback: once, signed both ways, with the file's facts.
    assert out["callback"]["std_ok"] and out["callback"]["tencent_ok"], out["callback"]
    info = out["callback"]["event"]["RecordingInfo"]
    assert out["callback"]["event"]["CallbackCommand"] == "Call.CallbackAfterRecordingReady"
    assert (info["RecordingId"], info["CallId"], info["State"], info["MediaType"], info["Format"]) == (
        cid,
        cid,
        "Ready",
        "Audio",
        "ogg",
    )
    assert info["Size"] == out["download"]["size"] == _size(path) and abs(info["Duration"] - duration) < 0.01
    assert out["ready_hits"] == sorted([cid, cid2])
    # Listed over REST by call id and by time; an unknown id is a named 404.
    assert out["listed"]["TotalNum"] == 1 and out["listed"]["RecordingList"][0] == info
    assert cid in out["listed_in_range"] and out["listed_before"] == 0
    unknown = out["download_unknown"]
    assert unknown["status"] == 404 and unknown["body"]["ErrorCode"] == 20001, unknown
    assert "no-such-recording" in unknown["body"]["ErrorInfo"]
    assert out["mjr_left"] == [], out["mjr_left"]  # the .mjr files are deleted once converted
    # Start and stop over REST on a call that was peer to peer.
    for u, other in (("alice", "bob"), ("bob", "alice")):
        assert out["links2_before"][u] == {"publisher": False, "feeds": [], "mesh": [other]}, out[
            "links2_before"
        ]
        assert out["links2_recorded"][u] == {"publisher": True, "feeds": [other], "mesh": []}
        assert out["events2"][u] == [True, False], out["events2"]
    assert out["start"] == {"Changed": True} and out["start_again"] == {"Changed": False}
    assert out["stop"] == {"Changed": True}
    assert out["stop_ended"]["ErrorCode"] == 20001  # the call ended
    info2 = out["callback2"]["RecordingInfo"]
    assert info2["CallId"] == cid2 and info2["State"] == "Ready" and info2["Duration"] > 0.5, info2


def test_the_recorded_call_example_saves_the_call_with_both_voices(tmp_path: Path) -> None:
    """``examples/recorded_call.py`` as its docstring runs it, against ``ringline serve
    --sfu`` with a real Janus (tests/sfu/example_recorded_driver.py): both bots hear that
    the call is recorded, the script waits for the recording and saves it, and the file
    it saved is the call (Ogg Opus, as long as the bots talked at least, both tones in it)."""
    _tools()
    tmp_path.chmod(0o777)
    seconds = 4.0
    with loopback_netns() as ns:
        out = run_in(ns, [str(HERE / "example_recorded_driver.py"), str(tmp_path), str(seconds)], timeout=170)
    assert out["rc"] == 0, out["stdout"] + out["stderr"]
    lines = out["stdout"].splitlines()
    for who in ("alice", "bob"):
        assert f"{who}: the call is recorded" in lines, out["stdout"]
    summary = json.loads(lines[-1])
    info = summary["recording"]
    assert (info["State"], info["MediaType"], info["Format"]) == ("Ready", "Audio", "ogg"), info
    path = out["file"]
    assert summary["file"] == path and summary["size"] == info["Size"] == _size(path) > 0, summary
    assert [(s["codec_type"], s["codec_name"]) for s in _streams(path)] == [("audio", "opus")]
    assert seconds - 1.0 <= info["Duration"] <= seconds + 15.0, info  # plus the set-up, on a busy machine
    levels = _tone_levels(path, (300.0, 500.0))
    assert all(v > 100 for v in levels.values()), levels
