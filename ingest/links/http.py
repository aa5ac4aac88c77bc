"""The HTTP edge of upload links: `POST/GET /links`, `GET/DELETE /links/<id>` (admin),
`GET /links/current` (the link's own holder) and `/l/<secret>`, the page in link mode."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ingest.config import parse_size
from ingest.errors import InvalidRequest, NotFound
from ingest.links.service import Links, parse_duration
from ingest.models import utc_now
from ingest.observe.context import RequestContext


def routes() -> list[Route]:
    return [
        Route("/links", create_link, methods=["POST"]),
        Route("/links", list_links, methods=["GET"]),
        Route("/links/current", current_link, methods=["GET"]),
        Route("/links/{link_id}", get_link, methods=["GET"]),
        Route("/links/{link_id}", revoke_link, methods=["DELETE"]),
        Route("/l/{secret}", open_link, methods=["GET", "HEAD"]),
    ]


def _links(request: Request) -> Links:
    links: Links = request.app.state.links
    return links


async def create_link(request: Request) -> Response:
    """Body (JSON, every key optional): expires ("7d" or seconds), max_size ("20GiB" or bytes),
    max_files, accept (list or comma-separated), label, single_use."""
    try:
        body = await request.json() if await request.body() else {}
    except ValueError:
        raise InvalidRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - {"expires", "max_size", "max_files", "accept", "label", "single_use"}
    if unknown:
        raise InvalidRequest(f"unknown keys: {', '.join(sorted(unknown))}")
    accept = body.get("accept") or []
    if isinstance(accept, str):
        accept = [item.strip() for item in accept.split(",") if item.strip()]
    if not isinstance(accept, list) or not all(isinstance(item, str) for item in accept):
        raise InvalidRequest("accept must be a list of media types or a comma-separated string")
    label, single_use, expires = body.get("label", ""), body.get("single_use", False), body.get("expires")
    if not isinstance(label, str) or not isinstance(single_use, bool):
        raise InvalidRequest("label must be a string and single_use a boolean")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, str | int | float)):
        raise InvalidRequest("expires must be a duration such as 7d, or seconds")
    link, secret = await _links(request).create(
        label=label, expires_in=parse_duration(expires) if expires is not None else None,
        max_size=_size(body.get("max_size")), max_files=_whole(body.get("max_files"), "max_files"),
        accept=tuple(accept), single_use=single_use)
    url = str(request.url_for("page")).rstrip("/") + f"/l/{secret}"
    return JSONResponse({"link": link.to_json(utc_now()), "secret": secret, "url": url}, status_code=201)


def _size(raw: Any) -> int | None:
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError(raw)
        return raw if isinstance(raw, int) else parse_size(raw)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"max_size: not a size: {raw!r}") from None


def _whole(raw: Any, name: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise InvalidRequest(f"{name} must be a whole number")
    return raw


async def list_links(request: Request) -> Response:
    now = utc_now()
    return JSONResponse({"items": [link.to_json(now) for link in await _links(request).catalog.links(now)]})


async def get_link(request: Request) -> Response:
    return JSONResponse((await _links(request).get(request.path_params["link_id"])).to_json(utc_now()))


async def revoke_link(request: Request) -> Response:
    revoked = await _links(request).catalog.revoke_link(request.path_params["link_id"], utc_now())
    if revoked is None:
        raise NotFound(f"no upload link with id {request.path_params['link_id']!r}")
    return JSONResponse(revoked.to_json(utc_now()))


async def current_link(request: Request) -> Response:
    """What the upload page shows a link's holder: label, expiry, what is left."""
    context = RequestContext.of(request.scope)
    if context is None or context.link is None:
        raise NotFound("this request carries no upload link")
    link = await _links(request).get(context.link.id)
    described = link.to_json(utc_now())
    return JSONResponse({key: described[key] for key in (
        "label", "expires_at", "max_size", "max_files", "accept", "single_use", "state", "bytes_left",
        "files_left", "bytes_used", "files_used")})


async def open_link(request: Request) -> Response:
    """`/l/<secret>`: the upload page in link mode. Relative, so it works under a path prefix."""
    return RedirectResponse(f"../?link={request.path_params['secret']}", status_code=303,
                            headers={"referrer-policy": "no-referrer", "cache-control": "no-store"})
