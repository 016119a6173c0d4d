"""Our schemas in a Confluent-compatible schema registry: the stack's own, or SCHEMA_REGISTRY_URL's.

`connect(settings)` (each component at start) makes the process resolve schema ids it does not
ship through the registry (cached; a miss is remembered for a while), so a producer using
Confluent's serializers with a newer compatible version is read with Avro schema resolution.
With an external registry (Confluent, Karapace, Redpanda, Apicurio) our versions are registered
there first, under `<topic>-value`, and the process uses the ids that registry gave them.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from infra.base.config import Settings
from infra.base.errors import JourneyError
from schemas.registry import Registry, get_registry

log = logging.getLogger("journey.schema_registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
TIMEOUT_S = 3.0
MISS_TTL_S = 5.0  # an id the registry did not know is asked again after this (a producer may register it now)


def topic_subjects(settings: Settings) -> dict[str, str]:
    """Confluent subject (TopicNameStrategy, `<topic>-value`) -> our subject."""
    t = settings.topics
    return {f"{t.touchpoints}-value": "touchpoint", f"{t.incidents}-value": "incident",
            f"{t.alerts}-value": "alert", f"{t.silences}-value": "silence"}


def call(url: str, path: str, body: Any = None, timeout_s: float = TIMEOUT_S, auth: str = "") -> tuple[int, Any]:
    """One request to a schema registry: (status, decoded JSON body). Raises OSError when unreachable.

    `auth`: `user:password` for HTTP basic authentication (SCHEMA_REGISTRY_BASIC_AUTH).
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    # http(s) only: Settings refuses any other scheme in SCHEMA_REGISTRY_URL
    request = urllib.request.Request(  # noqa: S310
        f"{url.rstrip('/')}{path}", data=data, method="GET" if body is None else "POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


class RegistryResolver:
    """Looks schema ids up in a registry (GET /schemas/ids/{id} and its /versions)."""

    def __init__(self, url: str, subjects: dict[str, str], auth: str = "") -> None:
        self.url = url
        self.subjects = subjects
        self._auth = auth
        self._misses: dict[int, float] = {}

    def __call__(self, schema_id: int) -> tuple[str, int, dict[str, Any]] | None:
        if time.monotonic() < self._misses.get(schema_id, 0.0):
            return None
        try:
            status, body = call(self.url, f"/schemas/ids/{schema_id}", auth=self._auth)
            if status == 200:
                raw = json.loads(body["schema"])
                Registry.parse(raw)  # an invalid schema is as good as none
                status, versions = call(self.url, f"/schemas/ids/{schema_id}/versions", auth=self._auth)
                subject, version = ((versions[0]["subject"], int(versions[0]["version"]))
                                    if status == 200 and versions else ("", 0))
                log.info("schema id %d resolved through %s: %s version %d", schema_id, self.url, subject, version)
                return self.subjects.get(subject, subject), version, raw
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("schema id %d: registry %s did not answer usefully (%s)", schema_id, self.url, exc)
        except Exception as exc:  # fastavro's parse errors have many types
            log.warning("schema id %d: registry %s gave an unusable schema (%s)", schema_id, self.url, exc)
        self._misses[schema_id] = time.monotonic() + MISS_TTL_S
        return None


def register_ours(settings: Settings, registry: Registry) -> dict[int, int]:
    """Register every version we ship in the external registry, oldest first; our id -> its id."""
    theirs = {ours: subject for subject, ours in topic_subjects(settings).items()}
    mapping: dict[int, int] = {}
    for ours in registry.subjects():
        for entry in registry.versions(ours):
            subject = theirs.get(ours, ours)
            try:
                status, body = call(settings.schema_registry_url, f"/subjects/{subject}/versions",
                                    {"schema": json.dumps(entry.raw)}, auth=settings.schema_registry_auth)
            except OSError as exc:
                raise JourneyError(f"schema registry not reachable at {settings.schema_registry_url} ({exc}); "
                                   "unset SCHEMA_REGISTRY_URL to use the local stack's") from None
            if status != 200:
                message = body.get("message") if isinstance(body, dict) else body
                raise JourneyError(f"schema registry {settings.schema_registry_url} refused {subject} version "
                                   f"{entry.version}: {message}")
            mapping[entry.id] = int(body["id"])
    return mapping


_connected: set[str] = set()


def connect(settings: Settings, registry: Registry | None = None) -> Registry:
    """Make the process's registry resolve unknown ids through the schema registry (once per URL);
    with an external one, register our versions there and take its ids."""
    registry = registry or get_registry()
    url = settings.schema_registry_url
    if url in _connected:
        return registry
    if settings.external_schema_registry:
        registry.renumber(register_ours(settings, registry))
    registry.resolver = RegistryResolver(url, topic_subjects(settings), settings.schema_registry_auth)
    _connected.add(url)
    return registry


def reachable(url: str, auth: str = "") -> bool:
    try:
        return call(url, "/subjects", timeout_s=1.0, auth=auth)[0] == 200
    except OSError:
        return False
