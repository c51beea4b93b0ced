"""Event schemas: validating data against a pydantic model, and the registered schemas as data."""

from __future__ import annotations

from ..errors import InvalidInput, NotFound, one_line

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def validate_data(schema, data: dict, what: str) -> None:
    "Validate data against a pydantic model; InvalidInput naming every bad field."
    from pydantic import ValidationError

    try:
        schema.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(data)'}: {err['msg']}" for err in e.errors()
        )
        raise InvalidInput(f"{what} is invalid: {problems}") from None
    except Exception as e:  # a validator that raised something pydantic does not turn into errors (TypeError, KeyError …)
        name = getattr(schema, "__name__", "the schema")
        raise InvalidInput(f"{what} is invalid: its schema {name} raised {type(e).__name__}: {one_line(e)}") from None


class SchemaNotFound(NotFound):
    "No schema is registered for that event type or version"


def list_schemas(model) -> list[dict]:
    "One entry per registered (type, version), sorted: type, version, schema (class name), fields."
    return [
        {
            "type": type_,
            "version": version,
            "schema": cls.__name__,
            "fields": list(getattr(cls, "model_fields", {})),
        }
        for (type_, version), cls in sorted(model.schemas.items())
    ]


def versions_of(model, type_: str) -> list[int]:
    return sorted(version for (t, version) in model.schemas if t == type_)


def json_schema(model, type_: str, version: int | None = None) -> dict:
    "The JSON Schema of ``type_`` at ``version`` (default: the highest registered)."
    versions = versions_of(model, type_)
    if not versions:
        known = ", ".join(sorted({t for t, _ in model.schemas})) or "none"
        raise SchemaNotFound(f"no schema registered for type {type_!r} (registered: {known})")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        listed = ", ".join(str(v) for v in versions)
        raise SchemaNotFound(f"{type_} has no schema version {version} (registered: {listed})")
    document = model.schemas[(type_, version)].model_json_schema()
    return {"$schema": JSON_SCHEMA_DIALECT, "$id": f"evt:{type_}/v{version}", **document}
