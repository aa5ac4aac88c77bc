"""The only code that knows the ASGI server (uvicorn) and the processes it runs.

- `run`: `serve(settings)`, the one `uvicorn.run` call and the options ingest depends on.
- `worker`: the app factory each server process imports; tunes the process, builds the app.
- `protocol`: uvicorn's httptools protocol with a header deadline, a lingering close and
  uncopied body chunks; leans on uvicorn internals, hence the pinned uvicorn minor versions.
- `tuning`: process-wide glibc malloc thresholds, applied by `worker`.
- `banner`: the start-up log lines.

Nothing outside this package imports uvicorn; `ingest.app.create_app` is server-agnostic and
changes nothing process-wide.
"""
