"""Router that answers every path with and without its trailing slash (the docs use both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from pydantic import BaseModel

from vize.db.states import Role

F = TypeVar("F", bound=Callable[..., Any])
MIN_ROLE_ATTR = "__vize_min_role__"


def min_role(role: Role) -> Callable[[F], F]:
    """Mark a route with the workspace role it needs, where the default does not fit (reads
    need a viewer, writes an editor): e.g. classifying is a POST a viewer may send. Put it
    under the route decorator; ``deps.authenticate`` checks it."""

    def mark(endpoint: F) -> F:
        setattr(endpoint, MIN_ROLE_ATTR, role)
        return endpoint

    return mark


class SlashRouter(APIRouter):
    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        methods = list(kwargs.get("methods") or [])
        if len(methods) > 1 and not kwargs.get("operation_id"):
            # One route per method: FastAPI derives the OpenAPI operationId from the first
            # method only, and duplicate ids make the published spec invalid.
            for method in methods:
                self.add_api_route(path, endpoint, **{**kwargs, "methods": [method]})
            return
        base = path.rstrip("/")
        if not base and not self.prefix:
            super().add_api_route(path, endpoint, **kwargs)
            return
        super().add_api_route(base + "/", endpoint, **kwargs)
        twin = dict(kwargs, include_in_schema=False)
        if twin.get("operation_id"):
            twin["operation_id"] = twin["operation_id"] + "_noslash"
        super().add_api_route(base, endpoint, **twin)


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body read by ``read_fields``: the same fields as JSON or as a form."""
    schema = model.model_json_schema()
    content = {
        "application/json": {"schema": schema},
        "application/x-www-form-urlencoded": {"schema": schema},
        "multipart/form-data": {"schema": schema},
    }
    return {"requestBody": {"content": content}}
