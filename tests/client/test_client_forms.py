"""Which signature an observer method is called with (ringline.client._forms), pure."""

from __future__ import annotations

from typing import Any

import pytest

from ringline import CallEngine
from ringline.client._codec import decode_event
from ringline.client._forms import form_for, forms_of
from ringline.core.enums import CallRole, MediaType
from ringline.core.types import RoomId

INFO = {"room_id": {"int_room_id": 77}, "role": 2, "user_data": "ud", "chat_group_id": "g"}


def args_for(method: Any, event: str, wire: dict[str, Any]) -> tuple[Any, ...]:
    ev = decode_event(event, wire)
    assert ev is not None
    return form_for(method, event).build(ev)


class New:
    def on_call_begin(self, call_id: str, media_type: MediaType, info: Any) -> None: ...
    def on_call_end(self, call_id, media_type, reason, user_id, total_time, info) -> None: ...  # type: ignore[no-untyped-def]
    def on_call_received(self, call_id, caller_id, callee_id_list, media_type, info) -> None: ...  # type: ignore[no-untyped-def]


class Old:
    def on_call_begin(self, roomId: RoomId, callMediaType: MediaType, callRole: CallRole) -> None: ...
    def on_call_end(self, a, b, c, d) -> None: ...  # type: ignore[no-untyped-def]
    def on_call_received(self, caller_id, callee_id_list, group_id, media_type, user_data) -> None: ...  # type: ignore[no-untyped-def]


BEGIN = {"call_id": "c", "media_type": 2, "info": INFO}
END = {"call_id": "c", "media_type": 1, "reason": 1, "user_id": "bob", "total_time": 3.5, "info": INFO}
RECEIVED = {"call_id": "c", "caller_id": "al", "callee_id_list": ["bob"], "media_type": 2, "info": INFO}


def test_three_parameters_named_as_the_older_form_get_room_media_role() -> None:
    assert args_for(Old().on_call_begin, "on_call_begin", BEGIN) == (
        RoomId(77),
        MediaType.VIDEO,
        CallRole.CALLED,
    )
    got = args_for(New().on_call_begin, "on_call_begin", BEGIN)
    assert got[:2] == ("c", MediaType.VIDEO) and got[2].role is CallRole.CALLED


def test_the_count_alone_decides_when_only_one_form_fits() -> None:
    assert args_for(Old().on_call_end, "on_call_end", END) == (
        RoomId(77),
        MediaType.AUDIO,
        CallRole.CALLED,
        3.5,
    )
    assert args_for(New().on_call_end, "on_call_end", END)[:5] == ("c", MediaType.AUDIO, 1, "bob", 3.5)


def test_five_parameter_received_by_names_new_or_older_with_user_data() -> None:
    assert args_for(Old().on_call_received, "on_call_received", RECEIVED) == (
        "al",
        ["bob"],
        "g",
        MediaType.VIDEO,
        "ud",
    )
    assert args_for(New().on_call_received, "on_call_received", RECEIVED)[:4] == (
        "c",
        "al",
        ["bob"],
        MediaType.VIDEO,
    )

    def four(caller, callees, group, media):  # type: ignore[no-untyped-def]
        ...

    assert args_for(four, "on_call_received", RECEIVED) == ("al", ["bob"], "g", MediaType.VIDEO)


def test_unnamed_ties_and_star_args_get_the_2025_form() -> None:
    def three(a, b, c):  # type: ignore[no-untyped-def]
        ...

    def star(*args):  # type: ignore[no-untyped-def]
        ...

    assert args_for(three, "on_call_begin", BEGIN)[0] == "c"
    assert args_for(star, "on_call_end", END)[0] == "c"
    assert form_for(print, "on_call_begin").label == "2025"  # a builtin: no signature to read


def test_a_method_no_form_fits_is_refused_when_added_with_its_name() -> None:
    class Bad:
        def on_call_end(self, a, b) -> None:  # type: ignore[no-untyped-def]
            ...

    with pytest.raises(
        TypeError, match=r"Bad\.on_call_end\(a, b\).*on_call_end\(room_id, media_type, role, total_time\)"
    ):
        forms_of(Bad())
    engine = CallEngine("http://127.0.0.1:1")
    with pytest.raises(TypeError, match="change its parameters"):
        engine.add_observer(Bad())

    class KeywordOnly:
        def on_user_join(self, *, user_id: str) -> None: ...

    with pytest.raises(TypeError, match="keyword-only parameter 'user_id'"):
        engine.add_observer(KeywordOnly())
