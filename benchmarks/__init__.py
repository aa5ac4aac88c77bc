"""The ingest benchmark suite: ingest against UploadFile, peers and the machine's own limits.

`python -m benchmarks --help` (or `make bench`) runs it; README's "Benchmarks" section says
what the numbers mean and what they do not.
"""
