"""Every (member state × op) pair of :mod:`ringline.core.transitions`, on a real switchboard.

For each pair a switchboard is driven into the state (the subject member is A when
dialing, else B), the op is applied, and the outcome the table names is checked:
refusals raise the mapped code and change nothing; accepted ops do what they say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_machine import Harness, fingerprint

from ringline.core.enums import CallEndReason, MediaType
from ringline.core.errors import ErrorCode, LocalCallError
from ringline.core.machine import (
    Accept,
    DeviceGone,
    Hangup,
    Ignore,
    InviteUser,
    Join,
    Logout,
    Notify,
    Reject,
    SetDeviceFlag,
    SwitchMediaType,
    TimerFired,
)
from ringline.core.transitions import TABLE, MemberState, Op, Outcome, markdown_table, outcome
from ringline.core.types import CallParams

T0 = 1_700_000_000.0
S = MemberState

CODES = {
    Outcome.REFUSED: ErrorCode.REQUEST_REFUSED,
    Outcome.REPEATED: ErrorCode.REQUEST_REPEATED,
    Outcome.NOT_FOUND: ErrorCode.CALL_NOT_FOUND,
}


def test_the_table_decides_every_state_op_pair() -> None:
    assert set(TABLE) == {(s, o) for s in MemberState for o in Op}
    assert {o for o in Outcome if o.is_refusal} == set(CODES)
    for (s, o), res in TABLE.items():
        assert outcome(s, o) is res
    md = markdown_table()
    assert md.count("\n") == len(Op) + 1
    assert all(s.name in md.splitlines()[0] for s in MemberState)


# --------------------------------------------------------------------------- setups


def setup(state: MemberState) -> tuple[Harness, str, str]:
    """A switchboard with the subject in ``state``: (harness, call id, subject device).

    * DIALING: A has called B (1v1), nobody answered.
    * RINGING: B is invited by A (1v1).
    * CONNECTED: A called B and C; B accepted, C still rings (so B leaving does
      not end the call).
    * ABSENT: A called B and C; C accepted, B rejected (was invited, so may join).
    """
    h = Harness()
    for d in "ABCD":
        h.login(d)
    if state is S.DIALING:
        cid, dev = h.call("A", ["B"]), "A"
    elif state is S.RINGING:
        cid, dev = h.call("A", ["B"]), "B"
    elif state is S.CONNECTED:
        cid, dev = h.call("A", ["B", "C"]), "B"
        h.accept("B", cid)
    else:
        cid, dev = h.call("A", ["B", "C"]), "B"
        h.accept("C", cid)
        h.reject("B", cid)
    assert h.sb.calls[cid].state_of(dev) is state
    h.clear()
    return h, cid, dev


def apply_op(h: Harness, op: Op, cid: str, dev: str) -> None:
    match op:
        case Op.ACCEPT:
            h.req(Accept(dev, cid))
        case Op.REJECT:
            h.req(Reject(dev, cid))
        case Op.IGNORE:
            h.req(Ignore(dev, cid))
        case Op.HANGUP:
            h.req(Hangup(dev, cid))
        case Op.JOIN:
            h.req(Join(dev, cid))
        case Op.INVITE:
            h.req(InviteUser(dev, cid, ("D",), CallParams()))
        case Op.SWITCH_MEDIA:
            h.req(SwitchMediaType(dev, cid, MediaType.VIDEO))
        case Op.DEVICE_FLAG:
            h.req(SetDeviceFlag(dev, cid, "audio", False))
        case Op.RING_TIMEOUT:
            # The subject's own ring timer firing at its deadline (every invite of
            # the setups has the default 30 s); no other timer is fired.
            h.now = T0 + 30
            h.feed(TimerFired(("ring", cid, dev)))
        case Op.DEVICE_GONE:
            h.feed(DeviceGone(dev))
        case Op.DEVICE_LEFT:
            h.feed(Logout(dev))


# --------------------------------------------------------------------------- reading back


def stint(h: Harness, cid: str, user: str) -> tuple[MemberState, CallEndReason]:
    """The user's latest stint: (state, end reason), live or from the record."""
    call = h.sb.calls.get(cid)
    if call is not None:
        m = call.members[user]
        return m.state, m.end_reason
    last = [m for m in h.record(cid).record.members if m.user_id == user][-1]
    return S.ABSENT, last.end_reason


def terminal(h: Harness, dev: str) -> tuple[str, CallEndReason] | None:
    for name, args in reversed(h.events[dev]):
        if name in ("on_call_end", "on_call_not_connected"):
            return name, CallEndReason(args["reason"])
    return None


Check = Callable[[Harness, str, str, Any, Op], None]


def state_before(before: Any, cid: str, user: str) -> MemberState:
    (m,) = [m for m in before[0][cid][0]["members"] if m["user_id"] == user]
    return S(m["state"])


def left_with(reason: CallEndReason) -> Check:
    def check(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
        assert stint(h, cid, dev) == (S.ABSENT, reason)
        assert h.sb.user_call.get(dev) is None

    return check


def call_ended(reason: CallEndReason) -> Check:
    def check(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
        assert cid not in h.sb.calls
        assert h.record(cid).record.end_reason is reason

    return check


def unchanged_call(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    assert h.sb.calls[cid].to_snapshot() == before[0][cid][0]
    assert not any(a.get("call_id") == cid for evs in h.events.values() for _, a in evs)


def ignored(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    """Nothing changes for the call but the count of its facts: one ``ignore`` fact."""
    snap = h.sb.calls[cid].to_snapshot()
    was = before[0][cid][0]
    assert snap["fact_seq"] == was["fact_seq"] + 1
    assert {**snap, "fact_seq": 0} == {**was, "fact_seq": 0}
    assert not any(a.get("call_id") == cid for evs in h.events.values() for _, a in evs)
    facts = [a.fact for a in h.batches[-1] if isinstance(a, Notify)]
    assert [(f.kind, f.data["user_id"]) for f in facts] == [("ignore", dev)]


def accepted(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    call = h.sb.calls[cid]
    assert call.state_of(dev) is S.CONNECTED
    assert call.members[dev].active == dev
    assert h.events[dev][0][0] == "on_call_begin"


def rejected(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    assert stint(h, cid, dev) == (S.ABSENT, CallEndReason.REJECT)
    assert terminal(h, dev) == ("on_call_not_connected", CallEndReason.REJECT)


def joined(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    call = h.sb.calls[cid]
    assert call.state_of(dev) is S.CONNECTED
    assert [m.user_id for m in call.past] == [dev]  # the earlier stint is kept
    assert h.events[dev][0][0] == "on_call_begin"


def invited(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    assert h.sb.calls[cid].state_of("D") is S.RINGING
    assert [n for n, _ in h.events["D"]] == ["on_call_received"]


def switched(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    assert h.sb.calls[cid].media_type is MediaType.VIDEO
    assert h.events[dev][0][0] == "on_call_media_type_changed"


def flag_set(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    call = h.sb.calls[cid]
    assert call.members[dev].audio is False
    assert call.state_of(dev) is state_before(before, cid, dev)


def dropped(h: Harness, cid: str, dev: str, before: Any, op: Op) -> None:
    m = h.sb.calls[cid].members[dev]
    assert m.state is S.RINGING  # the invite is kept until its timeout
    assert dev not in h.sb.devices
    # Logged out: no terminal owed, so off the leg. Gone: still owed one, kept on it.
    assert (dev in m.devices) is (op is Op.DEVICE_GONE)
    assert h.events[dev] == []


CHECKS: dict[Outcome, Check] = {
    Outcome.ACCEPT: accepted,
    Outcome.REJECT: rejected,
    Outcome.IGNORE: ignored,
    Outcome.CANCEL_CALL: call_ended(CallEndReason.CANCELED),
    Outcome.LEAVE_HANGUP: left_with(CallEndReason.HANGUP),
    Outcome.LEAVE_OFFLINE: left_with(CallEndReason.OFFLINE),
    Outcome.CANCEL_OFFLINE: call_ended(CallEndReason.OFFLINE),
    Outcome.NO_RESPONSE: left_with(CallEndReason.NO_RESPONSE),
    Outcome.JOIN: joined,
    Outcome.INVITE: invited,
    Outcome.SWITCH_MEDIA: switched,
    Outcome.SET_FLAG: flag_set,
    Outcome.DROP_DEVICE: dropped,
    Outcome.NOTHING: unchanged_call,
}


def test_every_accepted_outcome_has_a_check() -> None:
    assert set(CHECKS) == {o for o in Outcome if not o.is_refusal}


@pytest.mark.parametrize(
    ("state", "op"),
    list(TABLE),
    ids=[f"{s.value}-{o.name.lower()}" for s, o in TABLE],
)
def test_state_op_pair_does_what_the_table_says(state: MemberState, op: Op) -> None:
    h, cid, dev = setup(state)
    res = TABLE[(state, op)]
    before = fingerprint(h.sb)
    if res.is_refusal:
        with pytest.raises(LocalCallError) as ei:
            apply_op(h, op, cid, dev)
        assert ei.value.code == CODES[res]
        assert ei.value.message
        assert fingerprint(h.sb) == before
        assert h.events == {}
        return
    apply_op(h, op, cid, dev)
    CHECKS[res](h, cid, dev, before, op)
