"""An admin script as someone porting from TUICallKit would have it: the vendor's REST
URLs, query-string auth and request bodies, taken from the vendor's REST pages (their
samples), standard library only, nothing of Ringline. Only the host changes.

It configures callbacks (v4 and v1), reads them back and deletes them, reads an ended
call's record (v4 and v1, by id and by filter) and a live call's info, checks each
answer's envelope as the vendor documents it, and prints a JSON report. Any failure
exits 1 with the reason on stderr.

    python tests/vendor_admin_script.py --url http://127.0.0.1:8080 --sdkappid 1400000001 \\
        --usersig SIG --ended-call ID --live-call ID --since UNIX_S
"""

from __future__ import annotations

import argparse
import json
import random
import time
import urllib.parse
import urllib.request
from typing import Any


class Admin:
    def __init__(self, url: str, sdkappid: str, usersig: str) -> None:
        self.url = url.rstrip("/")
        self.query = {
            "sdkappid": sdkappid,
            "identifier": "administrator",
            "usersig": usersig,
            "contenttype": "json",
        }

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        query = dict(self.query, random=str(random.randint(0, 4294967295)))
        request = urllib.request.Request(
            f"{self.url}/{path}?{urllib.parse.urlencode(query)}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def v4(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.post(f"v4/{path}", body)
        if answer.get("ActionStatus") != "OK" or answer.get("ErrorCode") != 0 or "ErrorInfo" not in answer:
            raise SystemExit(f"v4/{path}: {answer}")
        if not isinstance(answer.get("RequestId"), str):
            raise SystemExit(f"v4/{path}: no RequestId in {answer}")
        response: dict[str, Any] = answer.get("Response", {})
        return response

    def v1(self, path: str, body: dict[str, Any]) -> Any:
        answer = self.post(f"v1/{path}", body)
        if answer.get("errorCode") != 0 or "errorMessage" not in answer or "requestId" not in answer:
            raise SystemExit(f"v1/{path}: {answer}")
        return answer.get("data")


def expect(what: str, ok: bool, got: Any) -> None:
    if not ok:
        raise SystemExit(f"{what}: got {got!r}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--sdkappid", required=True)
    p.add_argument("--usersig", required=True)
    p.add_argument("--ended-call", required=True)
    p.add_argument("--live-call", required=True)
    p.add_argument("--since", type=int, required=True)
    args = p.parse_args()
    admin = Admin(args.url, args.sdkappid, args.usersig)
    now = int(time.time()) + 1

    # v4 callback configuration (set / get / delete)
    commands = ["Call.CallbackAfterStartCall", "Call.CallbackAfterEndCall", "Call.CallbackAfterMemberChanged"]
    admin.v4(
        "call_config/set_callback",
        {"Url": "https://www.example.com/callback", "CallbackCommandList": commands},
    )
    got = admin.v4("call_config/get_callback", {})
    expect("get_callback", got.get("Url") == "https://www.example.com/callback", got)
    expect("get_callback list", sorted(got.get("CallbackCommandList", [])) == sorted(commands), got)
    admin.v4("call_config/delete_callback", {})

    # v1 callback configuration (set / get / update / delete), the vendor's sample actions
    actions = ["call_busy", "normal_end", "caller_start_call", "invite_user", "callee_reject_call"]
    address = "http://www.example.com/callback"
    expect("v1 set", admin.v1("callback/set", {"address": address, "actions": actions}) == address, address)
    got = admin.v1("callback/get", {})
    expect("v1 get", got == {"actions": actions, "address": address}, got)
    every = [*actions, "caller_call_failed", "callee_ignore_call"]
    expect("v1 update", admin.v1("callback/update", {"address": address, "actions": every}) == address, every)
    expect("v1 delete", admin.v1("callback/delete", {}) == "", "")

    # records: v4 by id and by filter
    record = admin.v4("call_record_http_srv/get_record_by_callid", {"CallId": args.ended_call})["CallRecord"]
    for key in (
        "CallId",
        "Caller_Account",
        "MediaType",
        "CallType",
        "StartTime",
        "EndTime",
        "AcceptTime",
        "CallResult",
        "CalleeList_Account",
        "RoomId",
        "RoomIdType",
    ):
        expect(f"CallRecord.{key}", key in record, record)
    page = admin.v4(
        "call_record_http_srv/get_record_by_filter",
        {
            "StartTime": args.since,
            "EndTime": now,
            "CallResult": "NormalEnd",
            "CallType": "SingleCall",
            "NumberPerPage": 10,
            "Page": 1,
        },
    )
    expect("get_record_by_filter", {"TotalNum", "Page", "CallRecordList"} <= set(page), page)
    # v1 by id and by filter
    v1_record = admin.v1("records/get_record_by_callId", {"callId": args.ended_call})
    v1_page = admin.v1(
        "records/get_records_by_filter",
        {
            "startTimestamp": args.since,
            "endTimestamp": now,
            "callResult": "normal_end",
            "callType": "single",
            "numberPerPage": 20,
            "page": 1,
        },
    )
    expect("get_records_by_filter", {"totalNum", "page", "callRecordList"} <= set(v1_page), v1_page)
    v1_ids = {r["callId"] for r in v1_page["callRecordList"]}

    # a live call
    live = admin.v4("call_engine_http_srv/get_call_info", {"CallId": args.live_call})

    print(
        json.dumps(
            {
                "record": record,
                "v1_record": v1_record,
                "filtered": [r["CallId"] for r in page["CallRecordList"] if r["CallId"] in v1_ids],
                "live": live,
            }
        )
    )


if __name__ == "__main__":
    main()
