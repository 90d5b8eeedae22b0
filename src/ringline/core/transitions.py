"""The member transition table: what an operation does to a member in each state.

This file is the single source of truth for "is this allowed now, and what happens".
The :class:`~ringline.core.machine.Switchboard` looks every request up here before it
touches any state, the tests walk every (state, op) pair, and ``docs/concepts.md``'s
lifecycle table is generated from :data:`TABLE` (``python -m ringline.core.transitions``).

Rules of the table (docs/spec.md §5, §6):

* A member is one user's stint in one call: ``DIALING`` (the caller before anyone
  answered), ``RINGING`` (invited, not answered), ``CONNECTED``, or ``ABSENT`` (never
  invited, or already left).
* The caller hanging up while ``DIALING`` cancels the whole call (CANCELED for all).
* A ringing member hanging up declines, exactly like ``reject`` (a closing tab must
  never leave a call ringing).
* Whatever removes the second-to-last member ends the call (the end rule, §6.3).
"""

from __future__ import annotations

from enum import Enum

__all__ = ["TABLE", "MemberState", "Op", "Outcome", "outcome"]


class MemberState(Enum):
    ABSENT = "absent"
    DIALING = "dialing"
    RINGING = "ringing"
    CONNECTED = "connected"


class Op(Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    IGNORE = "ignore"
    HANGUP = "hangup"
    JOIN = "join"
    INVITE = "invite_user"
    SWITCH_MEDIA = "switch_call_media_type"
    DEVICE_FLAG = "camera/microphone"
    RING_TIMEOUT = "ring timeout"
    DEVICE_GONE = "device gone (heartbeat lost / sig grace over)"
    DEVICE_LEFT = "device logged out or kicked"


class Outcome(Enum):
    # Accepted outcomes: the machine performs them.
    ACCEPT = "accept: leg begins; first accept connects the caller"
    REJECT = "reject: member leaves with REJECT"
    IGNORE = "ignore: this device stops ringing; invite kept until timeout"
    CANCEL_CALL = "cancel: the whole call ends with CANCELED"
    LEAVE_HANGUP = "leave with HANGUP"
    LEAVE_OFFLINE = "leave with OFFLINE"
    CANCEL_OFFLINE = "caller gone before answer: the call ends with OFFLINE"
    NO_RESPONSE = "member leaves with NO_RESPONSE"
    JOIN = "join: new connected stint"
    INVITE = "invite users"
    SWITCH_MEDIA = "switch the call's media type"
    SET_FLAG = "set camera/microphone flag"
    DROP_DEVICE = "device stops ringing; invite kept until timeout"
    NOTHING = "nothing happens"
    # Refusals: the request fails with this error and nothing changes.
    REFUSED = "refused (-1203): not allowed in this state"
    REPEATED = "refused (-1204): already done"
    NOT_FOUND = "refused (8010): not in this call any more"

    @property
    def is_refusal(self) -> bool:
        return self in (Outcome.REFUSED, Outcome.REPEATED, Outcome.NOT_FOUND)


S, P, X = MemberState, Op, Outcome  # short names keep the table readable

TABLE: dict[tuple[MemberState, Op], Outcome] = {
    # ---- the caller before anyone answered
    (S.DIALING, P.ACCEPT): X.REFUSED,
    (S.DIALING, P.REJECT): X.REFUSED,
    (S.DIALING, P.IGNORE): X.REFUSED,
    (S.DIALING, P.HANGUP): X.CANCEL_CALL,
    (S.DIALING, P.JOIN): X.REPEATED,
    (S.DIALING, P.INVITE): X.INVITE,
    (S.DIALING, P.SWITCH_MEDIA): X.REFUSED,
    (S.DIALING, P.DEVICE_FLAG): X.SET_FLAG,
    (S.DIALING, P.RING_TIMEOUT): X.NOTHING,
    (S.DIALING, P.DEVICE_GONE): X.CANCEL_OFFLINE,
    (S.DIALING, P.DEVICE_LEFT): X.CANCEL_CALL,
    # ---- an invitee whose devices ring
    (S.RINGING, P.ACCEPT): X.ACCEPT,
    (S.RINGING, P.REJECT): X.REJECT,
    (S.RINGING, P.IGNORE): X.IGNORE,
    (S.RINGING, P.HANGUP): X.REJECT,
    (S.RINGING, P.JOIN): X.ACCEPT,
    (S.RINGING, P.INVITE): X.REFUSED,
    (S.RINGING, P.SWITCH_MEDIA): X.REFUSED,
    (S.RINGING, P.DEVICE_FLAG): X.SET_FLAG,
    (S.RINGING, P.RING_TIMEOUT): X.NO_RESPONSE,
    (S.RINGING, P.DEVICE_GONE): X.DROP_DEVICE,
    (S.RINGING, P.DEVICE_LEFT): X.DROP_DEVICE,
    # ---- a member whose leg has begun
    (S.CONNECTED, P.ACCEPT): X.REPEATED,
    (S.CONNECTED, P.REJECT): X.REFUSED,
    (S.CONNECTED, P.IGNORE): X.REFUSED,
    (S.CONNECTED, P.HANGUP): X.LEAVE_HANGUP,
    (S.CONNECTED, P.JOIN): X.REPEATED,
    (S.CONNECTED, P.INVITE): X.INVITE,
    (S.CONNECTED, P.SWITCH_MEDIA): X.SWITCH_MEDIA,
    (S.CONNECTED, P.DEVICE_FLAG): X.SET_FLAG,
    (S.CONNECTED, P.RING_TIMEOUT): X.NOTHING,
    (S.CONNECTED, P.DEVICE_GONE): X.LEAVE_OFFLINE,
    (S.CONNECTED, P.DEVICE_LEFT): X.LEAVE_HANGUP,
    # ---- not (or no longer) in the call
    (S.ABSENT, P.ACCEPT): X.NOT_FOUND,
    (S.ABSENT, P.REJECT): X.NOT_FOUND,
    (S.ABSENT, P.IGNORE): X.NOT_FOUND,
    (S.ABSENT, P.HANGUP): X.NOT_FOUND,
    (S.ABSENT, P.JOIN): X.JOIN,
    (S.ABSENT, P.INVITE): X.NOT_FOUND,
    (S.ABSENT, P.SWITCH_MEDIA): X.NOT_FOUND,
    (S.ABSENT, P.DEVICE_FLAG): X.NOT_FOUND,
    (S.ABSENT, P.RING_TIMEOUT): X.NOTHING,
    (S.ABSENT, P.DEVICE_GONE): X.NOTHING,
    (S.ABSENT, P.DEVICE_LEFT): X.NOTHING,
}

assert len(TABLE) == len(MemberState) * len(Op), "every (state, op) pair must be decided"


def outcome(state: MemberState, op: Op) -> Outcome:
    """What ``op`` does to a member in ``state``."""
    return TABLE[(state, op)]


def markdown_table() -> str:
    """The table as Markdown, rows = ops, columns = states (for docs/concepts.md)."""
    states = list(MemberState)
    lines = ["| op \\ state | " + " | ".join(s.name for s in states) + " |"]
    lines.append("|---" * (len(states) + 1) + "|")
    for op in Op:
        cells = [TABLE[(s, op)].value for s in states]
        lines.append(f"| {op.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
