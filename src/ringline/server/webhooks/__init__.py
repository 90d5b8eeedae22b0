"""Callback (webhook) delivery: signing, the retry schedule, the outbox and the deliverer.

Self-contained: nothing here knows about calls. The server builds a
:class:`Delivery` per event with :func:`new_delivery`, stores it in an
:class:`Outbox` together with the event, and runs one :class:`Deliverer`::

    outbox = MemoryOutbox()            # the durable SQL outbox in production
    creds = WebhookCredentials(sdk_app_id, token="…", secrets=(generate_secret(),))
    async with Deliverer(outbox, creds) as deliverer:
        await outbox.add(new_delivery(url=url, command="Call.CallbackAfterStartCall",
                                      call_id=cid, sequence=1, payload=body,
                                      created_at=time.time()))
        deliverer.wake()

Modules: :mod:`.signing` (both signatures, sign and verify), :mod:`.retry` (the
schedule), :mod:`.delivery` (types, the ``Outbox`` protocol, the ``Deliverer``),
:mod:`.memory` (``MemoryOutbox``). Receivers: see ``docs/callbacks.md``.
"""

from __future__ import annotations

from .delivery import (
    Deliverer,
    DelivererStats,
    Delivery,
    DeliveryState,
    Outbox,
    OutboxEntry,
    WebhookCredentials,
    encode_body,
    new_claim_owner,
    new_delivery,
    new_event_id,
)
from .memory import MemoryOutbox
from .retry import DEFAULT_SCHEDULE, RetrySchedule, next_attempt
from .signing import (
    WebhookVerificationError,
    generate_secret,
    sign_standard,
    standard_headers,
    tencent_query,
    tencent_sign,
    verify_standard,
    verify_tencent,
)

__all__ = [
    "DEFAULT_SCHEDULE",
    "Deliverer",
    "DelivererStats",
    "Delivery",
    "DeliveryState",
    "MemoryOutbox",
    "Outbox",
    "OutboxEntry",
    "RetrySchedule",
    "WebhookCredentials",
    "WebhookVerificationError",
    "encode_body",
    "generate_secret",
    "new_claim_owner",
    "new_delivery",
    "new_event_id",
    "next_attempt",
    "sign_standard",
    "standard_headers",
    "tencent_query",
    "tencent_sign",
    "verify_standard",
    "verify_tencent",
]
