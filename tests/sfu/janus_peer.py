"""A bare Janus client for the tests, standing in for a member: it joins a VideoRoom as a
publisher with a token (no media) over the HTTP API, and reads the asynchronous answer
with a long poll. Synchronous (urllib): the tests call it from a thread."""

from __future__ import annotations

import itertools
import json
import urllib.request
from typing import Any

from janusproc import SECRET

_ids = itertools.count(1)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    body = {"transaction": f"p{next(_ids)}", "apisecret": SECRET, **body}
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


class Peer:
    """One Janus session with one VideoRoom handle."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = post(url, {"janus": "create"})["data"]["id"]
        self.handle = post(f"{url}/{self.session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})[
            "data"
        ]["id"]

    def event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next event of the session (long poll); {} if none came."""
        with urllib.request.urlopen(
            f"{self.url}/{self.session}?maxev=1&apisecret={SECRET}", timeout=timeout + 35
        ) as r:
            got = json.loads(r.read())
        if isinstance(got, list):
            got = got[0] if got else {}
        return dict(got) if got.get("janus") != "keepalive" else {}

    def join(self, room: str, participant: str, token: str | None) -> dict[str, Any]:
        """Join ``room`` as publisher ``participant``; the plugin's answer (``joined``, or
        ``error_code``/``error``)."""
        body: dict[str, Any] = {"request": "join", "ptype": "publisher", "room": room, "id": participant}
        if token is not None:
            body["token"] = token
        ack = post(f"{self.url}/{self.session}/{self.handle}", {"janus": "message", "body": body})
        if ack.get("janus") == "error":
            return {"error_code": ack["error"]["code"], "error": ack["error"]["reason"]}
        while True:
            ev = self.event()
            if not ev:
                raise TimeoutError("no answer to join")
            data = ev.get("plugindata", {}).get("data")
            if ev.get("janus") == "event" and data is not None:
                return dict(data)

    def leave(self) -> None:
        post(f"{self.url}/{self.session}", {"janus": "destroy"})
