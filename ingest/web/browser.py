"""The browser pages: the upload page at `/` and the API page (Swagger UI) at `/docs`, static
files shipped inside the package.

The pages hold no secret, so they and their assets load without a token (`is_page_path`);
every API call they make carries the token the person typed in. It uses relative URLs only, so it
also works when a proxy mounts ingest under a path prefix.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static/"

# The page runs only its own scripts and talks only to its own origin; nothing may frame it.
# blob: images are thumbnails fetched with the token (an <img> cannot send one).
# https://www.w3.org/TR/CSP3/
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Revalidate every time, so a new version of the page is picked up at once (RFC 9111 §5.2.2.4).
    "cache-control": "no-cache",
}


# Swagger UI (React) sets style attributes at run time: the API page allows inline styles, and
# nothing else the upload page forbids. Its scripts are still only our own files.
DOCS_HEADERS = {**PAGE_HEADERS, "content-security-policy": PAGE_HEADERS["content-security-policy"].replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'")}
PAGE_PATHS = ("/", "/docs")


def routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET", "HEAD"], name="page"),
        Route("/docs", docs, methods=["GET", "HEAD"], name="docs"),
        Mount(STATIC_PREFIX.rstrip("/"), app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def is_page_path(path: str) -> bool:
    """True for the pages and their assets, which need no token, and `/l/<secret>`, which sends
    an upload link's holder to the page. The router does not resolve `..`, so a path under
    the static prefix can only ever reach a static file."""
    return path in PAGE_PATHS or path.startswith((STATIC_PREFIX, "/l/"))


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8",
                        headers=PAGE_HEADERS)


async def docs(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html; charset=utf-8",
                        headers=DOCS_HEADERS)
