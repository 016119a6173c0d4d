"""The Confluent Schema Registry API over our registry, as plain functions (no HTTP here).

What Confluent's clients (confluent-kafka's SchemaRegistryClient and serdes, kcat, Kafka Connect,
ksqlDB) call: schemas by id, subjects and their versions, lookup, registration, compatibility.
Subjects follow the TopicNameStrategy, `<topic>-value`, mapped to our subjects by the caller
(`subjects`: Confluent subject -> ours). A registration must be compatible both ways with the
subject's latest version (FULL: what `journey schemas check` demands, since the tracker reads newer
writers with its own reader version and older data with newer readers); new versions are kept by
`save` so their ids stay permanent. Each call returns (HTTP status, JSON body); errors carry
Confluent's `error_code`s so clients raise their usual exceptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from fastavro.schema import SchemaParseException

from schemas.compat import check_compatibility
from schemas.registry import RegisteredSchema, Registry, SchemaRegistryError

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
COMPATIBILITY = "FULL"
# Ids given through the API start here, clear of the ids we ship (schemas/registry.json): a version
# we ship later can never collide with one a producer registered in some JOURNEY_HOME before.
FIRST_API_ID = 1001
Response = tuple[int, Any]


def _error(status: int, code: int, message: str) -> Response:
    return status, {"error_code": code, "message": message}


def normalized(schema: Any) -> str:
    """One text per schema whatever its whitespace or key order (what lookups compare)."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


class RegistryApi:
    """Answers the API's requests from `registry`; `save(entry)` persists a newly registered version."""

    def __init__(self, registry: Registry, subjects: dict[str, str],
                 save: Callable[[RegisteredSchema], None] = lambda _entry: None) -> None:
        self.registry = registry
        self.subjects = dict(subjects)  # Confluent subject -> our subject
        self.save = save

    # ---- lookups -------------------------------------------------------------------------------

    def _ours(self, subject: str) -> str | None:
        if subject in self.subjects:
            return self.subjects[subject]
        return subject if subject in self.registry.subjects() else None  # registered through the API

    def _theirs(self, ours: str) -> str:
        return next((s for s, o in self.subjects.items() if o == ours), ours)

    def _versions(self, subject: str) -> list[RegisteredSchema] | None:
        ours = self._ours(subject)
        if ours is None:
            return None
        try:
            return self.registry.versions(ours)
        except SchemaRegistryError:
            return None

    def _describe(self, entry: RegisteredSchema) -> dict[str, Any]:
        return {"subject": self._theirs(entry.subject), "version": entry.version, "id": entry.id,
                "schema": json.dumps(entry.raw)}

    def schema_by_id(self, schema_id: int) -> Response:
        try:
            return 200, {"schema": json.dumps(self.registry.by_id(schema_id).raw)}
        except SchemaRegistryError:
            return _error(404, 40403, f"Schema {schema_id} not found")

    def versions_of_id(self, schema_id: int) -> Response:
        try:
            entry = self.registry.by_id(schema_id)
        except SchemaRegistryError:
            return _error(404, 40403, f"Schema {schema_id} not found")
        return 200, [{"subject": self._theirs(entry.subject), "version": entry.version}]

    def list_subjects(self) -> Response:
        return 200, sorted({self._theirs(s) for s in self.registry.subjects()})

    def list_versions(self, subject: str) -> Response:
        versions = self._versions(subject)
        if versions is None:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        return 200, [e.version for e in versions]

    def _version(self, subject: str, version: str) -> RegisteredSchema | Response:
        versions = self._versions(subject)
        if versions is None:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        if version in ("latest", "-1"):
            return versions[-1]
        if not re.fullmatch(r"[0-9]+", version):
            return _error(422, 42202, f"The specified version '{version}' is not a valid version id. Allowed "
                                      "values are between [1, 2^31-1] and the string \"latest\"")
        entry = next((e for e in versions if e.version == int(version)), None)
        if entry is None:
            return _error(404, 40402, f"Version {version} not found.")
        return entry

    def get_version(self, subject: str, version: str) -> Response:
        entry = self._version(subject, version)
        return (200, self._describe(entry)) if isinstance(entry, RegisteredSchema) else entry

    # ---- what clients send ---------------------------------------------------------------------

    @staticmethod
    def _parse(body: Any) -> dict[str, Any] | Response:
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            return _error(422, 42201, "Invalid schema: the body must be {\"schema\": \"<Avro schema as a string>\"}")
        if body.get("schemaType", "AVRO") != "AVRO":
            return _error(422, 42201, f"Invalid schema: only AVRO is served here, not {body['schemaType']}")
        if body.get("references"):
            return _error(422, 42201, "Invalid schema: schema references are not supported")
        try:
            schema = json.loads(body["schema"])
            Registry.parse(schema)
        except (ValueError, SchemaParseException, KeyError, TypeError) as exc:
            return _error(422, 42201, f"Invalid schema: {exc}")
        return schema  # type: ignore[no-any-return]

    def lookup(self, subject: str, body: Any) -> Response:
        """POST /subjects/{subject}: is this schema registered under the subject, and as what?"""
        schema = self._parse(body)
        if isinstance(schema, tuple):
            return schema
        versions = self._versions(subject)
        if versions is None:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        entry = next((e for e in versions if normalized(e.raw) == normalized(schema)), None)
        if entry is None:
            return _error(404, 40403, "Schema not found")
        return 200, self._describe(entry)

    def _problems(self, latest: RegisteredSchema, schema: Any) -> list[str]:
        return check_compatibility(latest.raw, schema).problems

    def register(self, subject: str, body: Any) -> Response:
        """POST /subjects/{subject}/versions: the id of this schema, registering it if new and compatible."""
        schema = self._parse(body)
        if isinstance(schema, tuple):
            return schema
        versions = self._versions(subject) or []
        for entry in versions:
            if normalized(entry.raw) == normalized(schema):
                return 200, {"id": entry.id}
        if versions and (problems := self._problems(versions[-1], schema)):
            return _error(409, 409, f"Schema being registered is incompatible with an earlier schema for subject "
                                    f"\"{subject}\" (compatibility {COMPATIBILITY}), details: {problems}")
        ours = self._ours(subject) or subject
        schema_id = max([FIRST_API_ID - 1, *self.registry.ids()]) + 1
        entry = self.registry.register(schema_id, ours, (versions[-1].version if versions else 0) + 1, schema)
        self.save(entry)
        return 200, {"id": schema_id}

    def compatibility(self, subject: str, version: str, body: Any, verbose: bool = False) -> Response:
        """POST /compatibility/subjects/{subject}/versions/{version}."""
        schema = self._parse(body)
        if isinstance(schema, tuple):
            return schema
        if self._versions(subject) is None:
            return 200, {"is_compatible": True}  # nothing to be incompatible with, as Confluent answers
        entry = self._version(subject, version)
        if not isinstance(entry, RegisteredSchema):
            return entry
        problems = self._problems(entry, schema)
        result: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            result["messages"] = problems
        return 200, result

    def config(self, subject: str | None = None) -> Response:
        if subject is not None and self._versions(subject) is None:
            return _error(404, 40401, f"Subject '{subject}' not found.")
        return 200, {"compatibilityLevel": COMPATIBILITY}
