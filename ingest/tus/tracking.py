"""Each unfinished tus upload as events and metrics see it (ingest/observe/events.py)."""

from __future__ import annotations

from typing import Any

from ingest.edge.paths import TUS
from ingest.observe.context import RequestContext
from ingest.observe.events import EventHub, Upload
from ingest.tus.upload import TusUpload, extra_metadata, name_and_type


class TrackedUploads:
    """The `Upload` of each unfinished upload while this process lives; after a restart, or
    in another worker, one is rebuilt, uncounted, from the stored state."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._tracked: dict[str, Upload] = {}

    def event_of(self, upload: TusUpload, request: RequestContext | None, *, register: bool = True) -> Upload:
        """The upload as hooks and metrics see it: the one tracked since its creation, or,
        after a restart or in another worker, a new one built from its stored state (and
        labelled with `request`, the one now serving it)."""
        tracked = self._tracked.get(upload.upload_id)
        if tracked is not None:
            return tracked
        filename, content_type = name_and_type(upload.metadata, f"upload-{upload.upload_id}")
        event = Upload(id=upload.upload_id, protocol=TUS, filename=filename, content_type=content_type,
                       metadata=extra_metadata(upload.metadata), expected_size=upload.length,
                       size=upload.offset, client=request.client if request else None,
                       request_id=request.request_id if request else None,
                       forwarded_headers=request.forwarded_headers if request else {},
                       link=upload.link, token=upload.token)
        if register:
            self._tracked[upload.upload_id] = event
        return event

    def track(self, upload_id: str, event: Upload) -> None:
        self._tracked[upload_id] = event

    def forget(self, upload_id: str) -> None:
        """The upload is stored (or discarded and reported): nothing more to tell of it."""
        self._tracked.pop(upload_id, None)

    def end(self, upload_id: str, reason: BaseException | str, *,
            state: dict[str, Any] | None = None, offset: int = 0,
            request: RequestContext | None = None) -> None:
        """An unfinished upload is gone (terminated, expired, or never created): post-terminate."""
        event = self._tracked.pop(upload_id, None)
        if event is None and state is not None and state.get("file_id") is None \
                and state.get("concat") is None:
            event = self.event_of(TusUpload.from_state(upload_id, state, offset), request)
            self._tracked.pop(upload_id, None)
        if event is not None:
            self._hub.failed(event, reason)
