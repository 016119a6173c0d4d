"""Topic names of a test's own, so that no test reads what another one wrote on the shared stack."""

from __future__ import annotations

import dataclasses

from infra.base.config import Topics


def suffixed(topics: Topics, suffix: str) -> Topics:
    """Every topic of `topics` named `<name>-<suffix>`.

    Built from the dataclass's fields, not a list of names: a topic added to `Topics` later is
    suffixed too (a hand-written list once left the late-events topic shared, and a sink counted
    other tests' late events).
    """
    return dataclasses.replace(
        topics, **{f.name: f"{getattr(topics, f.name)}-{suffix}" for f in dataclasses.fields(topics)}
    )
