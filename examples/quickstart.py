"""The README quick start: two engines in one process, one call. Run `ringline serve` first."""

import asyncio, json, os, time
from ringline import CallEngine, CallObserver, MediaType
from ringline.core.usersig import gen_user_sig

URL = os.environ.get("RINGLINE_URL", "http://127.0.0.1:8080")
app = json.load(open(os.environ.get("RINGLINE_DATA_DIR", "ringline-data") + "/app.json"))
def sig(user: str) -> str:                               # mint on your backend in production
    return gen_user_sig(app["sdk_app_id"], app["secret_key"], user, 3600, now=int(time.time()))

class Printer(CallObserver):
    def __init__(self, name: str) -> None:
        self.name, self.ringing, self.ended = name, asyncio.Event(), asyncio.Event()
    def on_call_received(self, call_id, caller_id, callee_id_list, media_type, info):
        print(self.name, "ringing: call from", caller_id); self.ringing.set()
    def on_call_begin(self, call_id, media_type, info): print(self.name, "connected")
    def on_call_end(self, call_id, media_type, reason, user_id, total_time, info):
        print(self.name, f"ended by {user_id}: {reason.name} after {total_time}s"); self.ended.set()

async def main() -> None:
    async with CallEngine(URL) as alice, CallEngine(URL) as bob:
        a, b = Printer("alice"), Printer("bob")
        alice.add_observer(a); bob.add_observer(b)
        await alice.init(app["sdk_app_id"], "alice", sig("alice"))
        await bob.init(app["sdk_app_id"], "bob", sig("bob"))
        await alice.calls(["bob"], MediaType.AUDIO)       # bob's on_call_received fires
        await asyncio.wait_for(b.ringing.wait(), 5)
        await bob.accept()                                # both get on_call_begin
        await alice.hangup()                              # both get on_call_end(HANGUP)
        await asyncio.wait_for(b.ended.wait(), 5)
asyncio.run(main())
