"""OpenAPI pieces shared by the routes: the error answers and the submission body (a SweepSpec or a
preset submission, with examples)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from service.schemas import ErrorBody, PresetSubmission

_ERROR = {"model": ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "Missing or unknown API token."},
    403: {**_ERROR, "description": "The token may not do this."},
    404: {**_ERROR, "description": "No such sweep, trial or preset."},
    409: {**_ERROR, "description": "Conflicts with the resource's state or an earlier Idempotency-Key."},
    413: {**_ERROR, "description": "The body is larger than LOSSWEEP_MAX_BODY_BYTES."},
    422: {**_ERROR, "description": "Invalid input; `errors` names each field and its problem."},
    429: {**_ERROR, "description": "A per-user limit is reached; see Retry-After."},
}

SUBMIT_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/SweepSpec"},
                    {"$ref": "#/components/schemas/PresetSubmission"},
                ]
            },
            "examples": {
                "preset": {
                    "summary": "The demo preset",
                    "value": {"preset": "demo"},
                },
                "preset_with_overrides": {
                    "summary": "A preset with overrides (dotted keys, as `--set` on the CLI)",
                    "value": {"preset": "demo", "overrides": {"seeds": [0, 1]}, "name": "demo-two-seeds"},
                },
            },
        }
    },
}


# A route's operation id is its function's name, short and stable for generated clients
# (``client.list_sweeps``), except where the function is named for something else.
_OPERATION_IDS = {"submit_sweep": "create_sweep", "read_sweep": "get_sweep", "whoami": "get_me"}


def operation_id(route: APIRoute) -> str:
    """FastAPI's ``generate_unique_id_function``: ``create_sweep``, ``get_sweep``, ``get_report``, ..."""
    return _OPERATION_IDS.get(route.name, route.name)


def spec_example() -> dict[str, Any] | None:
    """The demo preset as a full SweepSpec example, when the presets are importable."""
    try:
        from search_spaces.spec.presets import get_preset

        return get_preset("demo").model_dump(mode="json")  # type: ignore[no-any-return]
    except Exception:
        return None


def add_sweep_links(schema: dict[str, Any]) -> None:
    """OpenAPI links from a submission's answer to every operation on the sweep it created (its ``id`` is
    their ``sweep_id``), so clients and stateful API testers can follow them."""
    paths = schema.get("paths", {})
    created = paths.get("/v1/sweeps", {}).get("post", {}).get("responses", {}).get("201")
    if created is None:
        return
    links = {}
    for path, operations in sorted(paths.items()):
        if not path.startswith("/v1/sweeps/{sweep_id}"):
            continue
        for method in sorted(operations):
            pointer = path.replace("~", "~0").replace("/", "~1")
            name = (method + path.removeprefix("/v1/sweeps/{sweep_id}").replace("/", "_").replace("{", "")
                    .replace("}", "")).strip("_") or method
            links[name] = {"operationRef": f"#/paths/{pointer}/{method}",
                           "parameters": {"sweep_id": "$response.body#/id"}}
    created["links"] = links


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the models only referenced from ``SUBMIT_BODY``."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    from search_spaces.spec.sweep_spec import SweepSpec

    for model in (SweepSpec, PresetSubmission):
        sub = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
        for name, definition in sub.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = sub
    add_sweep_links(schema)
    example = spec_example()
    if example is not None:
        body = schema["paths"]["/v1/sweeps"]["post"]["requestBody"]["content"]["application/json"]
        body["examples"] = {"spec": {"summary": "A full SweepSpec (the demo preset)", "value": example},
                            **body["examples"]}
    app.openapi_schema = schema
    return schema
