"""The REST API: ``create_app(daemon)`` builds a FastAPI app over a running daemon (no globals).

Versioned under /v1; every route but /v1/health needs ``Authorization: Bearer <token>``; errors are
JSON ``{"error": "..."}`` whose message names the problem. Routes are thin: they call keyword-only
store functions (assistant/store/repo.py) in a thread and hand model work to the inference worker.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant import __version__
from assistant.errors import (AssistantError, AudioError, BridgeMismatchError, BusyError, DiskFullError, ModelFilesError,
                              NotFoundError, RefusedError, StoreError, UnreadableAudioError)
from assistant_services.api.auth import require_token
from assistant_services.api.errors import ApiError

log = logging.getLogger(__name__)


# Domain error type -> HTTP status, most specific first; any other AssistantError is a bad request (400).
STATUS_FOR: tuple[tuple[type[AssistantError], int], ...] = (
    (UnreadableAudioError, 415),
    (AudioError, 422),
    (NotFoundError, 404),
    (BusyError, 503),  # with Retry-After: the queue is full now, not for good
    (BridgeMismatchError, 409), (ModelFilesError, 409), (RefusedError, 409),
    (DiskFullError, 507),
    (StoreError, 503),
)
RETRY_AFTER_S = 1


def _error(request: Request, status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """An error answer: ``{"error": message}``, or OpenAI's error shape on its endpoints' paths."""
    from assistant_services.api.routes_openai import PREFIX, openai_error

    response = openai_error(status, message) if request.url.path.startswith(PREFIX) else \
        JSONResponse({"error": message}, status_code=status)
    response.headers.update(headers or {})
    return response


def _status_for(exc: AssistantError) -> int:
    return next((status for kind, status in STATUS_FOR if isinstance(exc, kind)), 400)


def create_app(daemon) -> FastAPI:
    # /docs is served from vendored Swagger UI assets (static/swagger-ui): it works with no internet
    app = FastAPI(title="assistant", version=__version__, description="On-device personal voice assistant",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        """The corrections page (static/app): public like /docs; everything it shows needs the token."""
        return FileResponse(Path(__file__).parent / "static" / "app" / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="assistant API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon-32x32.png")
    app.state.daemon = daemon
    from assistant_services.api.bodylimit import BodyLimit
    from assistant_services.api.guard import HostGuard

    api = daemon.config.api
    app.add_middleware(BodyLimit, max_bytes=int(api.max_json_kb * 1024))
    app.add_middleware(HostGuard, bind_host=api.host, allowed_hosts=tuple(api.allowed_hosts))  # outermost

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return _error(request, exc.status, exc.message)

    @app.exception_handler(AssistantError)
    async def _assistant_error(request: Request, exc: AssistantError):
        status = _status_for(exc)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, BusyError) else None
        return _error(request, status, str(exc), headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":  # no route matched (a mistyped or ../ path)
            message = f"no route {request.method} {request.url.path}; the routes are listed at /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; the routes are listed at /docs"
        return _error(request, exc.status_code, message, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
        return _error(request, 400, "invalid request: " + "; ".join(parts))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected API error")
        return _error(request, 500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/v1/health", tags=["status"])
    async def health() -> dict:
        """Liveness: no authentication."""
        return {"status": "ok", "version": __version__}

    from assistant_services.api import routes_admin, routes_openai, routes_timers, routes_turns, routes_utterances, ws

    auth = [Depends(require_token)]
    app.include_router(routes_turns.router, prefix="/v1", dependencies=auth)
    app.include_router(routes_utterances.router, prefix="/v1", dependencies=auth)
    app.include_router(routes_admin.router, prefix="/v1", dependencies=auth)
    app.include_router(routes_timers.router, prefix="/v1", dependencies=auth)
    app.include_router(routes_openai.router, prefix="/v1", dependencies=auth)
    app.include_router(ws.router, prefix="/v1")  # WebSockets check the token themselves

    @app.get("/metrics", dependencies=auth, tags=["status"])
    async def metrics() -> Response:
        return Response(daemon.metrics.render(), media_type="text/plain; version=0.0.4")

    return app
