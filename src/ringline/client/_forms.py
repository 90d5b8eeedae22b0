"""Which arguments an observer method gets: the 2025 form or an older one.

Three observer methods have had two signatures (docs/spec.md §4; both are in use in
code being ported): ``on_call_received``, ``on_call_begin`` and ``on_call_end``.
When an observer is added, :func:`forms_of` reads each of its methods' parameters
and picks the form the method can take; the engine then calls that method with that
form's arguments. The rule (docs/sdk.md "Older observer signatures"):

1. The forms whose argument count the method accepts are candidates (a ``*args``
   method accepts every count).
2. One candidate: it. Several: the one with the most parameter names equal, at
   the same position, to the form's names (``room_id``/``roomId``, ``role``/``callRole``
   …; case and underscores do not matter); a tie goes to the 2025 form.
3. None: :class:`TypeError` at ``add_observer``, naming the method, what it takes and
   every form it could have.

Every other method has one form, and is checked the same way when it is added.
Pure: no I/O, no engine state.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._codec import EVENT_ARGS, Event

__all__ = ["FORMS", "Form", "form_for", "forms_of"]


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


@dataclass(frozen=True, slots=True)
class Form:
    """One signature of an observer method.

    ``params`` are the documented parameter names; ``aliases`` the accepted spellings
    at each position (normalised: lower case, no underscores); ``build`` turns an
    event into the arguments, in order.
    """

    label: str
    params: tuple[str, ...]
    aliases: tuple[frozenset[str], ...]
    build: Callable[[Event], tuple[Any, ...]]

    def signature(self, method: str) -> str:
        return f"{method}({', '.join(self.params)})"

    def score(self, names: list[str]) -> int:
        return sum(1 for n, ok in zip(names, self.aliases, strict=False) if _norm(n) in ok)


def _names(*spellings: str) -> frozenset[str]:
    return frozenset(_norm(s) for s in spellings)


def _current(event: str) -> Form:
    params = tuple(name for name, _ in EVENT_ARGS[event])
    return Form("2025", params, tuple(_names(p) for p in params), lambda ev: ev.args)


def _room_id(ev: Event) -> Any:
    return ev.kwargs["info"].room_id


def _role(ev: Event) -> Any:
    return ev.kwargs["info"].role


_MEDIA = _names("media_type", "call_media_type", "type")
_ROOM = _names("room_id", "room")
_ROLE = _names("role", "call_role")

#: The forms of every method with more than one, the 2025 form first.
FORMS: Mapping[str, tuple[Form, ...]] = {
    "on_call_received": (
        _current("on_call_received"),
        Form(
            "older",
            ("caller_id", "callee_id_list", "group_id", "media_type"),
            (
                _names("caller_id", "inviter"),
                _names("callee_id_list", "callee_list", "user_id_list"),
                _names("group_id", "chat_group_id"),
                _MEDIA,
            ),
            lambda ev: (
                ev.kwargs["caller_id"],
                ev.kwargs["callee_id_list"],
                ev.kwargs["info"].chat_group_id,
                ev.kwargs["media_type"],
            ),
        ),
        Form(
            "older, with user data",
            ("caller_id", "callee_id_list", "group_id", "media_type", "user_data"),
            (
                _names("caller_id", "inviter"),
                _names("callee_id_list", "callee_list", "user_id_list"),
                _names("group_id", "chat_group_id"),
                _MEDIA,
                _names("user_data"),
            ),
            lambda ev: (
                ev.kwargs["caller_id"],
                ev.kwargs["callee_id_list"],
                ev.kwargs["info"].chat_group_id,
                ev.kwargs["media_type"],
                ev.kwargs["info"].user_data,
            ),
        ),
    ),
    "on_call_begin": (
        _current("on_call_begin"),
        Form(
            "older",
            ("room_id", "media_type", "role"),
            (_ROOM, _MEDIA, _ROLE),
            lambda ev: (_room_id(ev), ev.kwargs["media_type"], _role(ev)),
        ),
    ),
    "on_call_end": (
        _current("on_call_end"),
        Form(
            "older",
            ("room_id", "media_type", "role", "total_time"),
            (_ROOM, _MEDIA, _ROLE, _names("total_time", "duration")),
            lambda ev: (_room_id(ev), ev.kwargs["media_type"], _role(ev), ev.kwargs["total_time"]),
        ),
    ),
}

_SIGNAL = Form(
    "ringline",
    ("call_id", "from_user_id", "data"),
    (_names("call_id"), _names("from_user_id"), _names("data")),
    lambda ev: ev.args,
)

_RECORDING = Form(
    "ringline",
    ("call_id", "is_recording"),
    (_names("call_id"), _names("is_recording", "recording")),
    lambda ev: ev.args,
)


def _all_forms(event: str) -> tuple[Form, ...]:
    if event in FORMS:
        return FORMS[event]
    if event == "on_signal":
        return (_SIGNAL,)
    if event == "on_call_recording_changed":
        return (_RECORDING,)
    return (_current(event),)


def form_for(method: object, event: str) -> Form:
    """The form ``method`` (a bound observer method) is called with for ``event``.

    Raises :class:`TypeError` when no form fits: the message names the method, its
    parameters and the forms it could take; change the method's parameters.
    A method whose signature cannot be read gets the 2025 form.
    """
    forms = _all_forms(event)
    try:
        sig = inspect.signature(method)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return forms[0]
    positional: list[inspect.Parameter] = []
    variadic = False
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(p)
        elif p.kind is p.VAR_POSITIONAL:
            variadic = True
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            forms_text = " or ".join(f.signature(event) for f in forms)
            raise TypeError(
                f"observer method {_describe(method)}{sig} has the keyword-only parameter "
                f"{p.name!r} without a default, but Ringline passes the arguments by position "
                f"as {forms_text}: give {p.name!r} a default or make it positional"
            )
    required = sum(1 for p in positional if p.default is p.empty)
    fits = [f for f in forms if required <= len(f.params) and (variadic or len(f.params) <= len(positional))]
    if not fits:
        forms_text = " or ".join(f.signature(event) for f in forms)
        raise TypeError(
            f"observer method {_describe(method)}{sig} cannot take the arguments of {event}: "
            f"Ringline calls it as {forms_text}; change its parameters to one of these"
        )
    names = [p.name for p in positional]
    best = fits[0]
    for form in fits[1:]:
        if form.score(names) > best.score(names):
            best = form
    return best


def forms_of(observer: object) -> dict[str, Form]:
    """The form of every event method ``observer`` has (see :func:`form_for`).

    Raises :class:`TypeError` for the first method no form fits.
    """
    out: dict[str, Form] = {}
    for event in (*EVENT_ARGS, "on_signal", "on_call_recording_changed"):
        method = getattr(observer, event, None)
        if method is not None and callable(method):
            out[event] = form_for(method, event)
    return out


def _describe(method: object) -> str:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", repr(method))
    if owner is not None:
        return f"{type(owner).__qualname__}.{name}"
    return str(getattr(method, "__qualname__", name))
