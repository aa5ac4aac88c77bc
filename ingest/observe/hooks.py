"""Hook targets: an HTTP webhook and Python callables. The hub (`events.py`) decides when and
how often to deliver; a target only delivers once and raises when that failed.

Webhook contract: `POST <hook_url>` with `Content-Type: application/json`, a `Hook-Name`
header, the request headers listed in `hook_forward_headers`, and the body
`{"type": "<event>", "upload": {...}}`. Any 2xx answer is a delivery; anything else, a
timeout, or an answer over `hook_max_response_size` is a failure. For pre-* events a 2xx body
may be `{"reject": true, "status": 403, "message": "..."}` or, for pre-create,
`{"metadata": {...}}` (merged over the upload's metadata); an empty body lets the upload on.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio.to_thread

from ingest.observe.events import EVENTS, HookEvent, HookResponse

HookCallable = Callable[[HookEvent], "Awaitable[HookResponse | None] | HookResponse | None"]


class HookDeliveryError(Exception):
    pass


class WebhookTarget:
    name = "webhook"

    def __init__(self, url: str, *, events: Iterable[str] = EVENTS, max_response_size: int = 64 * 1024) -> None:
        self.url = url
        self.events = frozenset(events)
        self._max_response_size = max_response_size
        import httpx  # here, not at the top: only a server with a webhook needs it

        # Timeouts are enforced by the hub around each attempt; none here.
        self._client = httpx.AsyncClient(timeout=None, follow_redirects=False)

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        import httpx

        headers = {**event.forwarded_headers, "hook-name": event.type,
                   "content-type": "application/json"}
        body = json.dumps(event.to_json()).encode()
        try:
            async with self._client.stream("POST", self.url, content=body, headers=headers) as response:
                answer = bytearray()
                async for chunk in response.aiter_bytes():
                    answer += chunk
                    if len(answer) > self._max_response_size:
                        raise HookDeliveryError(
                            f"the hook answered more than {self._max_response_size} bytes")
        except httpx.HTTPError as error:
            raise HookDeliveryError(f"{type(error).__name__}: {error}") from error
        if not 200 <= response.status_code < 300:
            raise HookDeliveryError(f"the hook answered {response.status_code}")
        return parse_hook_answer(bytes(answer))

    async def aclose(self) -> None:
        await self._client.aclose()


class CallableTarget:
    """A Python function or coroutine function, for programs embedding ingest.

    It receives every `HookEvent` it subscribes to and may return a `HookResponse` (or raise
    `ingest.observe.events.HookRejected`) for pre-* events. Plain functions run in a worker thread.
    """

    def __init__(self, function: HookCallable, *, events: Iterable[str] = EVENTS, name: str | None = None) -> None:
        self.function = function
        self.events = frozenset(events)
        self.name = name or getattr(function, "__name__", "callable")

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        if inspect.iscoroutinefunction(self.function):
            answer = await self.function(event)
        else:
            answer = await anyio.to_thread.run_sync(self.function, event, abandon_on_cancel=True)
            if inspect.isawaitable(answer):
                answer = await answer
        if answer is not None and not isinstance(answer, HookResponse):
            raise HookDeliveryError(f"hook {self.name} returned {type(answer).__name__}, not a HookResponse")
        return answer

    async def aclose(self) -> None:
        pass


def parse_hook_answer(body: bytes) -> HookResponse | None:
    if not body.strip():
        return None
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        raise HookDeliveryError("the hook answered something that is not JSON") from None
    if not isinstance(parsed, dict):
        raise HookDeliveryError("the hook's answer is not a JSON object")
    metadata = parsed.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise HookDeliveryError("the hook's metadata is not a JSON object")
    status = parsed.get("status", 403)
    return HookResponse(reject=parsed.get("reject") is True,
                        status=status if isinstance(status, int) else 403,
                        message=str(parsed.get("message") or "rejected by a hook"),
                        metadata=metadata)


def parse_event_names(names: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(names) or frozenset(EVENTS)
    unknown = chosen - set(EVENTS)
    if unknown:
        raise ValueError(f"unknown hook events: {', '.join(sorted(unknown))} (known: {', '.join(EVENTS)})")
    return chosen
