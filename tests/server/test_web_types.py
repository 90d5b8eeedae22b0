"""The browser types (ringline.d.ts, tuicallkit.d.ts) compile, with TypeScript's strict
checker, against code written with both the web and the vendor's uni-app names; and a
wrong key is an error, so the check can fail."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

from needs import missing

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "src" / "ringline" / "web" / "sdk"
TYPESCRIPT = ROOT / ".cache" / "web-frameworks" / "typescript-5.6.3.tgz"

# Typed uses of every kind the docs show: web names, vendor names with their keys,
# the kit, the element.
GOOD = """
import { CallEngine, TUICallEvent, VENDOR_EVENTS } from "./ringline.js";
import { TUICallKitServer, TUICallKitAPI, createReactTUICallKit, createVueTUICallKit } from "./tuicallkit.js";
const engine: CallEngine = TUICallKitServer.getTUICallEngineInstance();
engine.on(TUICallEvent.USER_ENTER, (e) => { const u: string = e.userID; });
engine.on(TUICallEvent.USER_VOICE_VOLUME, (e) => { const n: number = e.volumeMap[0].audioVolume; });
engine.addEventListener("onUserJoin", (res) => {
  const u: string = res.userId; const v: string = res.userID;
});
engine.addEventListener("onCallCancelled", (res) => { const u: string = res.userId; });
engine.addEventListener("onUserVoiceVolumeChanged", (res) => { const n: number = res.volumeMap["bob"]; });
engine.addEventListener("onCallMediaTypeChanged", (res) => {
  const n: number = res.oldCallMediaType + res.newCallMediaType + res.oldCallType;
});
engine.addEventListener("onCallReceived", (res) => {
  const g: string = res.groupId + res.callerId + res.userData;
});
engine.addEventListener("onCallBegin", (res) => {
  const r: number = res.roomID + res.callMediaType + res.callRole;
});
engine.addEventListener("onCallEnd", (res) => { const t: number = res.totalTime; });
engine.addEventListener("onError", (res) => { const m: string = res.msg; const c: number = res.code; });
engine.removeEventListener("onKickedOffline");
const mapped: string = VENDOR_EVENTS.onUserJoin.event;
TUICallKitServer.setCallback({ beforeCalling: () => {}, afterCalling: () => {} });
void TUICallKitAPI.calls({ userIDList: ["bob"], type: 2 });
const el = document.createElement("tui-call-kit");
el.beforeCalling = () => {};
void createReactTUICallKit; void createVueTUICallKit;
"""


def tsc(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not TYPESCRIPT.is_file():
        missing(
            f"node and {TYPESCRIPT} are needed: ./scripts/test installs npm and fetches it (DEVELOPERS.md)"
        )
    compiler = tmp_path / "ts"
    if not compiler.exists():
        with tarfile.open(TYPESCRIPT) as tar:
            tar.extractall(compiler, filter="data")
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    for name in ("ringline.d.ts", "tuicallkit.d.ts"):
        shutil.copy(SDK / name, proj / name)
    (proj / "use.ts").write_text(code)
    return subprocess.run(
        [
            node,
            str(compiler / "package" / "bin" / "tsc"),
            "--noEmit",
            "--strict",
            "--target",
            "es2020",
            "--module",
            "es2020",
            "--moduleResolution",
            "bundler",
            "--lib",
            "es2020,dom",
            str(proj / "use.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_types_accept_web_and_vendor_names_with_their_keys(tmp_path: Path) -> None:
    done = tsc(tmp_path, GOOD)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_key_the_event_does_not_have_is_an_error(tmp_path: Path) -> None:
    bad = GOOD + 'engine.addEventListener("onUserJoin", (res) => { const x: string = res.groupId; });\n'
    done = tsc(tmp_path, bad)
    assert done.returncode != 0 and "groupId" in done.stdout, done.stdout + done.stderr
