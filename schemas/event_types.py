"""The closed sets of the event contract: stages, channels, event types and what they mean.

Single source of truth for the Avro enums (checked by a test), validation and detection.
"""

from __future__ import annotations

STAGES = ("before", "during", "after", "recovery")
CHANNELS = ("pos", "web", "app", "phone", "staff")

TYPES_BY_STAGE: dict[str, tuple[str, ...]] = {
    "before": ("VISIT", "BROWSE", "SEARCH", "RESERVATION_MADE", "QUEUE_JOINED", "CART_UPDATED"),
    "during": (
        "ORDER_PLACED", "ORDER_SERVED", "ITEM_REQUESTED", "ITEM_DELIVERED", "CHECKOUT_STARTED",
        "CHECKOUT_COMPLETED", "PAYMENT_SUCCEEDED", "PAYMENT_FAILED", "SERVICE_ERROR",
    ),
    "after": (
        "RECEIPT_ISSUED", "FEEDBACK_SUBMITTED", "COMPLAINT_FILED", "RETURN_REQUESTED",
        "GUARANTEE_CLAIMED", "JOURNEY_ENDED",
    ),
    "recovery": (
        "FAILURE_ACKNOWLEDGED", "CUSTOMER_CONTACTED", "COMPENSATION_GIVEN", "RECOVERY_RESOLVED",
        "FOLLOW_UP_DONE",
        # v2: staff wait on the customer (the resolve clock stops) / the customer is back (it runs again)
        "WAITING_ON_CUSTOMER", "CUSTOMER_REPLIED",
    ),
}

STAGE_OF_TYPE: dict[str, str] = {t: stage for stage, types in TYPES_BY_STAGE.items() for t in types}
EVENT_TYPES: tuple[str, ...] = tuple(t for types in TYPES_BY_STAGE.values() for t in types)
RECOVERY_TYPES = frozenset(TYPES_BY_STAGE["recovery"])

# Requests and the event that fulfils them (matched by request_id, else oldest open of its kind).
REQUEST_FULFILMENT: dict[str, str] = {
    "ITEM_REQUESTED": "ITEM_DELIVERED",
    "ORDER_PLACED": "ORDER_SERVED",
    "CHECKOUT_STARTED": "CHECKOUT_COMPLETED",
    "PAYMENT_FAILED": "PAYMENT_SUCCEEDED",
}
FULFILMENT_OF: dict[str, str] = {v: k for k, v in REQUEST_FULFILMENT.items()}

# Symbol a reader falls back to when a newer writer sends a type it does not know.
UNKNOWN_TYPE = "UNKNOWN"
