"""Every error leaves the server as ``{"error": {"code", "message", "details"}}`` with the
HTTP status that says what happened (never 200 with an error inside)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from lakeport.errors import LakeportError
from lakeport.server.responses import JSONResponse
from lakeport.wire import answer_for, code_for_status

log = logging.getLogger("lakeport.server")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: LakeportError) -> JSONResponse:
    """The answer to a lakeport error: its status, code, message and details."""
    code, status, _, _ = answer_for(exc)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(error_body(code, str(exc), getattr(exc, "details", None)), status,
                        headers=headers)


def install(app: FastAPI) -> None:
    """Register the handlers that turn errors into JSON error bodies."""

    @app.exception_handler(LakeportError)
    async def lakeport_error(_: Request, exc: LakeportError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")}
                    for e in exc.errors()]
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return JSONResponse(error_body("invalid", f"{where}: {first['msg']}", problems), 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(code_for_status(exc.status_code), str(exc.detail)),
                            exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(error_body(code_for_status(500), "internal server error"), 500)


__all__ = ["error_body", "error_response", "install"]
