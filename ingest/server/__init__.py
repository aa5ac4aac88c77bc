"""The only code that knows the ASGI server: uvicorn's protocol, process tuning, the banner."""
