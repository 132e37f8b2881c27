"""Router that answers every path with and without its trailing slash (the docs use both)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel


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
