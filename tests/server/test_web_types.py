"""The browser types (ringline.d.ts, tuicallkit.d.ts) compile, with TypeScript's strict
checker, against code written with both the web and the vendor's uni-app names; and a
wrong key is an error, so the check can fail.

And the JavaScript the server serves cannot drift from them: every served .js file
parses (``node --check``), and TypeScript checks the engine's modules, the kit and the
call page (``--allowJs --checkJs``, JSDoc where inference needs help) and that the
modules export exactly what the declarations declare, with compatible types, and no
public CallEngine member the declarations lack."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from needs import missing

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "ringline" / "web"
SDK = WEB / "sdk"
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


def node_and_tsc(tmp_path: Path) -> tuple[str, Path]:
    """``node`` and TypeScript's ``bin/tsc``, unpacked from the npm tarball scripts/test fetches."""
    node = shutil.which("node")
    if node is None or not TYPESCRIPT.is_file():
        missing(
            f"node and {TYPESCRIPT} are needed: ./scripts/test installs npm and fetches it (DEVELOPERS.md)"
        )
    compiler = tmp_path / "ts"
    if not compiler.exists():
        with tarfile.open(TYPESCRIPT) as tar:
            tar.extractall(compiler, filter="data")
    return node, compiler / "package" / "bin" / "tsc"


def tsc(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    node, tsc_bin = node_and_tsc(tmp_path)
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    for name in ("ringline.d.ts", "tuicallkit.d.ts"):
        shutil.copy(SDK / name, proj / name)
    (proj / "use.ts").write_text(code)
    return subprocess.run(
        [
            node,
            str(tsc_bin),
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


# The modules, the kit and the call page against the declarations. The engine's entry
# module is also copied as entry.js: next to ringline.d.ts (which the modules' JSDoc
# imports), "./ringline.js" resolves to the declarations, "./entry.js" to the code.
CHECK_JS = """
import * as impl from "./sdk/entry.js";
import * as kitImpl from "./sdk/tuicallkit.js";
import type * as decl from "./decl/ringline.js";
type Decl = typeof decl;
type KitDecl = typeof import("./decl/tuicallkit.js");
const declared: Decl = impl;
const kitDeclared: KitDecl = kitImpl;
type Undeclared = Exclude<keyof typeof impl, keyof Decl>;
const noUndeclared: [Undeclared] extends [never] ? true : Undeclared = true;
type KitUndeclared = Exclude<keyof typeof kitImpl, keyof KitDecl>;
const noKitUndeclared: [KitUndeclared] extends [never] ? true : KitUndeclared = true;
type Public<T> = Exclude<keyof T, `_${string}`>;
type UndeclaredMembers = Exclude<Public<InstanceType<typeof impl.CallEngine>>, keyof decl.CallEngine>;
const noUndeclaredMembers: [UndeclaredMembers] extends [never] ? true : UndeclaredMembers = true;
void declared; void kitDeclared; void noUndeclared; void noKitUndeclared; void noUndeclaredMembers;
"""

TSCONFIG = {
    "compilerOptions": {
        "noEmit": True,
        "allowJs": True,
        "checkJs": True,
        "target": "es2022",
        "module": "es2022",
        "moduleResolution": "bundler",
        "lib": ["es2022", "dom"],
        "baseUrl": ".",
        # The call page imports the engine as the server serves it.
        "paths": {"/sdk/*": ["./sdk/*"]},
    },
    "files": ["check.ts", "app/callpage.js"],
}


def check_js(tmp_path: Path, edit: Callable[[Path], None] | None = None) -> subprocess.CompletedProcess[str]:
    """Type-check the served JavaScript against the declarations (``edit`` may change the copy first)."""
    node, tsc_bin = node_and_tsc(tmp_path)
    proj = tmp_path / "js"
    for sub in ("sdk", "app", "decl"):
        (proj / sub).mkdir(parents=True, exist_ok=True)
    for f in SDK.glob("*.js"):
        shutil.copy(f, proj / "sdk" / f.name)
    for f in (WEB / "app").glob("*.js"):
        shutil.copy(f, proj / "app" / f.name)
    for f in SDK.glob("*.d.ts"):
        shutil.copy(f, proj / "decl" / f.name)
    shutil.copy(SDK / "ringline.d.ts", proj / "sdk" / "ringline.d.ts")
    shutil.copy(SDK / "ringline.js", proj / "sdk" / "entry.js")
    (proj / "check.ts").write_text(CHECK_JS)
    (proj / "tsconfig.json").write_text(json.dumps(TSCONFIG))
    if edit is not None:
        edit(proj / "sdk")
    return subprocess.run(
        [node, str(tsc_bin), "-p", str(proj / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=proj,
    )


def served_js() -> list[Path]:
    return sorted([*SDK.glob("*.js"), *(WEB / "app").glob("*.js"), *(WEB / "admin").glob("*.js")])


def test_every_served_js_file_parses(tmp_path: Path) -> None:
    node, _ = node_and_tsc(tmp_path)
    files = served_js()
    assert {"ringline.js", "engine.js", "session.js", "peer.js", "events.js", "protocol.js"} <= {
        f.name for f in files
    }
    for f in files:
        # As ES modules (.mjs), the way the browser loads them.
        copy = tmp_path / (f.stem + ".mjs")
        shutil.copy(f, copy)
        done = subprocess.run([node, "--check", str(copy)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{f.name}: {done.stderr}"


def test_the_served_js_matches_its_declarations(tmp_path: Path) -> None:
    done = check_js(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_public_method_the_declarations_lack_is_an_error(tmp_path: Path) -> None:
    def add_method(sdk: Path) -> None:
        engine = sdk / "engine.js"
        text = engine.read_text()
        marker = "  /** Deprecated: `calls([userId], mediaType, params)`. */"
        assert marker in text
        engine.write_text(text.replace(marker, "  muteEveryone() {}\n\n" + marker))

    done = check_js(tmp_path, add_method)
    assert done.returncode != 0 and "muteEveryone" in done.stdout, done.stdout + done.stderr


def test_a_declared_export_the_modules_lack_is_an_error(tmp_path: Path) -> None:
    def drop_export(sdk: Path) -> None:
        entry = sdk / "entry.js"
        text = entry.read_text()
        assert "export { gradeQuality, volumeOf }" in text
        entry.write_text(text.replace("export { gradeQuality, volumeOf }", "export { gradeQuality }"))

    done = check_js(tmp_path, drop_export)
    assert done.returncode != 0 and "volumeOf" in done.stdout, done.stdout + done.stderr


def test_a_wrong_enum_value_is_an_error(tmp_path: Path) -> None:
    def renumber(sdk: Path) -> None:
        protocol = sdk / "protocol.js"
        text = protocol.read_text()
        assert "VIDEO: 2 }" in text
        protocol.write_text(text.replace("VIDEO: 2 }", "VIDEO: 3 }", 1))

    done = check_js(tmp_path, renumber)
    assert done.returncode != 0 and "MediaType" in done.stdout, done.stdout + done.stderr
