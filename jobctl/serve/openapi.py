"""The OpenAPI document of `jobctl serve` (/openapi.json), written out: the
routes are few, and a document by hand says exactly what the server does."""

from __future__ import annotations

from typing import Any

from .. import __version__


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_ERRORS = {"400": _error("malformed request (not JSON, wrong shape): exit code 2"),
           "401": _error("no token, or an unknown, revoked or expired one"),
           "403": _error("the token lacks the scope, or the procedure"),
           "404": _error("no such job or procedure: exit code 3"),
           "422": _error("a value jobctl refuses (type, name, option): exit code 2"),
           "503": _error("the database is unreachable or its schema not current: exit code 4")}


def _op(summary: str, scope: str | None, *, ok: str = "200", ok_text: str = "OK",
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {
        ok: {"description": ok_text, "content": {"application/json": {
            "schema": schema or {"type": "object"}}}}, **_ERRORS}}
    if scope:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Needs a token with the `{scope}` scope."
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _q(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def document() -> dict[str, Any]:
    job_id = _path("job_id", "job id, or a unique prefix of at least 4 hex characters")
    submit_body = {
        "type": "object", "required": ["name"],
        "properties": {
            "name": {"type": "string", "example": "SUMA_SIMPLE"},
            "params": {"oneOf": [
                {"type": "array", "items": {"type": "object", "required": ["name"],
                                            "properties": {"name": {"type": "string"},
                                                           "value": {}}}},
                {"type": "object"}],
                "example": [{"name": "vA", "value": 10}]},
            "queue": {"type": "string"}, "priority": {"type": "integer"},
            "timeout": {"type": "string", "example": "30m"}, "retries": {"type": "integer"},
            "unique": {"type": "boolean"}, "after": {"type": "array", "items": {"type": "string"}},
            "at": {"type": "string"}, "in": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "jobctl", "version": __version__,
                 "description": "Stored procedures as background jobs: the HTTP door of the "
                                "jobctl command line (same validation, rows and errors)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "jobctl token create NAME --scope ..."}},
            "schemas": {"Error": {"type": "object", "required": ["error", "code"], "properties": {
                "error": {"type": "string"},
                "code": {"type": "integer", "description": "the exit code the CLI would give"}}}}},
        "paths": {
            "/procedure/async": {"post": _op(
                "Submit a job (as jobctl submit)", "submit", ok="202", ok_text="accepted",
                body=submit_body, schema={"type": "object", "properties": {
                    "job_id": {"type": "string"}, "status": {"type": "string"},
                    "created": {"type": "boolean"}}})},
            "/jobs": {"get": _op("List jobs (as jobctl list -f json)", "read", params=[
                _q("status", "status, repeatable or comma-separated"), _q("procedure", "procedure"),
                _q("since", "24h (default), 7d, all"), _q("limit", "default 50"),
                _q("queue", "queue")], schema={"type": "array", "items": {"type": "object"}})},
            "/jobs/{job_id}": {"get": _op("One job (as jobctl status ID -f json)", "read",
                                          params=[job_id])},
            "/jobs/{job_id}/cancel": {"post": _op("Cancel a job (as jobctl cancel)", "cancel",
                                                  params=[job_id])},
            "/stats": {"get": _op("Per procedure figures (as jobctl stats -f json)", "read",
                                  params=[_q("since", "7d (default), all"),
                                          _q("procedure", "name or LIKE pattern")],
                                  schema={"type": "array", "items": {"type": "object"}})},
            "/queues": {"get": _op("Queues (as jobctl queue list -f json)", "read",
                                   schema={"type": "array", "items": {"type": "object"}})},
            "/procedures/{name}": {"get": _op("A procedure's parameters (as jobctl describe)",
                                              "read", params=[_path("name", "procedure")])},
            "/overview": {"get": _op("What the web page shows", "read")},
            "/metrics": {"get": {"summary": "Prometheus metrics (text format)",
                                 "security": [{"bearer": []}],
                                 "responses": {"200": {"description": "text/plain"}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Readiness: database reachable, schema current",
                                "responses": {"200": {"description": "ready"},
                                              "503": _ERRORS["503"]}}},
        },
    }
