"""S3 clients for ingest's part uploads: boto3 in a thread pool against aiobotocore on asyncio.

Measures wall-clock throughput and this process's CPU seconds per GiB for one multipart upload
of 512 MiB as 64 parts of 8 MiB, 4 parts in flight, with ingest's client settings (path style,
no payload signing, no flexible checksums), twice each. aiobotocore pins an older botocore than
the boto3 ingest uses, so run this in a venv of its own:

    python3 -m venv /tmp/aio && /tmp/aio/bin/pip install aiobotocore boto3
    S3_ENDPOINT=http://127.0.0.1:7480 S3_ACCESS_KEY=... S3_SECRET_KEY=... \
        /tmp/aio/bin/python benchmarks/s3_clients.py
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from aiobotocore.session import get_session  # type: ignore[import-not-found]
from botocore.config import Config

MiB = 1024 * 1024
PARTS = 64
PART = os.urandom(8 * MiB)
BUCKET = "client-bench"
ENDPOINT = os.environ["S3_ENDPOINT"]
CREDENTIALS: dict[str, Any] = {"aws_access_key_id": os.environ["S3_ACCESS_KEY"],
                               "aws_secret_access_key": os.environ["S3_SECRET_KEY"],
                               "region_name": "us-east-1"}


def config() -> Config:
    return Config(s3={"addressing_style": "path", "payload_signing_enabled": False},
                  request_checksum_calculation="when_required",
                  response_checksum_validation="when_required", max_pool_connections=16)


def completed(etags: list[str]) -> Any:
    return {"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]}


def with_threads() -> None:
    client = boto3.client("s3", endpoint_url=ENDPOINT, config=config(), **CREDENTIALS)
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key="threads")["UploadId"]

    def send(number: int) -> str:
        return str(client.upload_part(Bucket=BUCKET, Key="threads", UploadId=upload_id,
                                      PartNumber=number, Body=PART)["ETag"])

    with ThreadPoolExecutor(4) as pool:
        etags = list(pool.map(send, range(1, PARTS + 1)))
    client.complete_multipart_upload(Bucket=BUCKET, Key="threads", UploadId=upload_id,
                                     MultipartUpload=completed(etags))


async def with_asyncio() -> None:
    async with get_session().create_client("s3", endpoint_url=ENDPOINT, config=config(),
                                           **CREDENTIALS) as client:
        upload_id = (await client.create_multipart_upload(Bucket=BUCKET, Key="asyncio"))["UploadId"]
        slots = asyncio.Semaphore(4)

        async def send(number: int) -> str:
            async with slots:
                response = await client.upload_part(Bucket=BUCKET, Key="asyncio", UploadId=upload_id,
                                                    PartNumber=number, Body=PART)
                return str(response["ETag"])

        etags = await asyncio.gather(*(send(n) for n in range(1, PARTS + 1)))
        await client.complete_multipart_upload(Bucket=BUCKET, Key="asyncio", UploadId=upload_id,
                                               MultipartUpload=completed(list(etags)))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    boto3.client("s3", endpoint_url=ENDPOINT, config=config(), **CREDENTIALS).create_bucket(Bucket=BUCKET)
    contenders: dict[str, Callable[[], None]] = {"boto3 threads": with_threads,
                                                 "aiobotocore": lambda: asyncio.run(with_asyncio())}
    gib = PARTS * len(PART) / 1024**3
    for _ in range(2):
        for name, upload in contenders.items():
            cpu_before, started = cpu_seconds(), time.perf_counter()
            upload()
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
            print(f"{name:14s} {gib * 1024 / seconds:6.0f} MiB/s  CPU {cpu / gib:5.2f} s/GiB")


if __name__ == "__main__":
    main()
