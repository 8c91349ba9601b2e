"""A request-body limit on EVERY route of the Space's server, for the FastAPI app gradio builds.

gradio's ``max_file_size`` covers multipart uploads only: a photo sent inline as a ``data:`` URL in the JSON body of
``/gradio_api/call/<api>`` or ``/gradio_api/queue/join`` was read whole into memory (an 80 MB request went through;
150 MB took 2.25 GB). :class:`RequestSizeLimit` answers 413 before reading such a body: starlette's
:class:`~starlette.middleware.body_limit.RequestBodyLimitMiddleware` refuses a Content-Length over the limit without
reading the body, and counts the bytes of a streamed (chunked) body as they arrive, refusing at the first byte over.
Upload routes get a larger limit (one gallery request carries every file of a multi-file upload); gradio still
limits each file in them.

Wire it with ``Blocks.launch(app_kwargs={"middleware": [request_limit_middleware(...)]})`` (see the Space's app.py).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

#: gradio's multipart routes: files stream to disk there, each held to ``max_file_size`` by gradio itself.
UPLOAD_ROUTES = ("/gradio_api/upload", "/gradio_api/process_recording")


class RequestSizeLimit:
    """ASGI middleware: request bodies over ``max_body_size`` (``upload_body_size`` on :data:`UPLOAD_ROUTES`) get a
    413 "Content Too Large" response, before the body is read into memory."""

    def __init__(self, app: ASGIApp, max_body_size: int, upload_body_size: int, upload_routes=UPLOAD_ROUTES):
        if min(max_body_size, upload_body_size) < 0:
            raise ValueError(f"body limits must be >= 0 bytes, got {max_body_size} and {upload_body_size}")
        self.default = RequestBodyLimitMiddleware(app, max_body_size)
        self.upload = RequestBodyLimitMiddleware(app, upload_body_size)
        self.upload_routes = tuple(upload_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/") if scope["type"] == "http" else ""
        # endswith: the same route under a root path (a proxy prefix)
        limited = self.upload if path.endswith(self.upload_routes) else self.default
        await limited(scope, receive, send)


def request_limit_middleware(max_body_size: int, upload_body_size: int) -> Middleware:
    """The :class:`RequestSizeLimit` entry for ``FastAPI(middleware=[...])`` / gradio's ``launch(app_kwargs=...)``."""
    return Middleware(RequestSizeLimit, max_body_size=max_body_size, upload_body_size=upload_body_size)
