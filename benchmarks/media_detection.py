"""Compares media type detectors on the first bytes of real files: puremagic, filetype and
python-magic (libmagic).

Measures, per library: how many files of a known type it names correctly from their first
64 KiB (the type their extension implies, after aliases), how many it cannot name at all, and
the mean time of one detection. The sample is whatever files of the listed extensions live on
this machine (up to `--per-type` each), plus images written by Pillow. Run:
`python -m benchmarks.media_detection` with the three libraries installed.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXPECTED = {
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "pdf": "application/pdf", "gz": "application/gzip", "zip": "application/zip",
    "mp3": "audio/mpeg", "wav": "audio/wav", "ttf": "font/ttf", "woff2": "font/woff2",
    "bz2": "application/x-bzip2", "xz": "application/x-xz", "tar": "application/x-tar",
    "tiff": "image/tiff", "bmp": "image/bmp", "ico": "image/vnd.microsoft.icon",
    "webp": "image/webp", "svg": "image/svg+xml",
}
ALIASES = {"image/x-icon": "image/vnd.microsoft.icon", "audio/x-wav": "audio/wav",
           "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav", "image/x-ms-bmp": "image/bmp",
           "application/x-gzip": "application/gzip", "application/font-sfnt": "font/ttf",
           "font/sfnt": "font/ttf", "application/x-font-ttf": "font/ttf", "image/x-bmp": "image/bmp",
           "audio/mp3": "audio/mpeg", "application/x-zip-compressed": "application/zip",
           "image/svg": "image/svg+xml", "application/font-woff2": "font/woff2",
           "application/x-bzip": "application/x-bzip2", "application/x-gtar": "application/x-tar"}
HEAD = 64 * 1024


def detectors() -> dict[str, Callable[[bytes], str | None]]:
    import filetype  # type: ignore[import-untyped, unused-ignore]
    import magic  # type: ignore[import-untyped, import-not-found, unused-ignore]
    import puremagic

    libmagic = magic.Magic(mime=True)

    def pure(head: bytes) -> str | None:
        try:
            return str(puremagic.from_string(head, mime=True)) or None
        except puremagic.PureError:
            return None

    def ft(head: bytes) -> str | None:
        kind = filetype.guess(head)
        return str(kind.mime) if kind else None

    def lm(head: bytes) -> str | None:
        found = str(libmagic.from_buffer(head))
        return None if found in ("application/octet-stream", "") else found

    return {"puremagic": pure, "filetype": ft, "python-magic": lm}


def sample(per_type: int) -> list[tuple[str, bytes]]:
    found: dict[str, list[tuple[str, bytes]]] = {ext: [] for ext in EXPECTED}
    for root in ("/usr/share", "/usr/lib", "/opt"):
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                ext = name.rsplit(".", 1)[-1].lower()
                if ext in found and len(found[ext]) < per_type:
                    path = Path(dirpath) / name
                    try:
                        if path.is_file() and path.stat().st_size > 64:
                            found[ext].append((EXPECTED[ext], path.read_bytes()[:HEAD]))
                    except OSError:
                        continue
    from PIL import Image  # matplotlib's dependency

    image = Image.new("RGB", (300, 200), (40, 90, 200))
    for fmt, ext in (("WEBP", "webp"), ("TIFF", "tiff"), ("BMP", "bmp"), ("GIF", "gif"),
                     ("JPEG", "jpg"), ("PNG", "png"), ("ICO", "ico")):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        found[ext].append((EXPECTED[ext], buffer.getvalue()[:HEAD]))
    return [item for items in found.values() for item in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-type", type=int, default=30)
    args = parser.parse_args()
    files = sample(args.per_type)
    print(f"{len(files)} files, {len({t for t, _ in files})} types")
    for name, detect in detectors().items():
        right = unknown = 0
        wrong: dict[str, int] = {}
        started = time.perf_counter()
        results: list[Any] = [detect(head) for _, head in files]
        elapsed = time.perf_counter() - started
        for (expected, _), got in zip(files, results, strict=True):
            if got is None:
                unknown += 1
            elif ALIASES.get(got, got) == expected:
                right += 1
            else:
                wrong[f"{expected}->{got}"] = wrong.get(f"{expected}->{got}", 0) + 1
        print(f"{name:13} right {right}/{len(files)}  unknown {unknown}  wrong {sum(wrong.values())}  "
              f"{elapsed / len(files) * 1e6:.0f} us/file  {sorted(wrong.items())[:6]}")


if __name__ == "__main__":
    main()
