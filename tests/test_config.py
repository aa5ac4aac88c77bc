"""Settings from defaults, INGEST_* variables and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import Settings, parse_size


def test_environment_variables_override_defaults() -> None:
    settings = Settings.from_env({"INGEST_MAX_FILE_SIZE": "2GiB", "INGEST_FSYNC": "off",
                                  "INGEST_TOKENS": "a, b,", "INGEST_DATA_DIR": "/srv/x", "INGEST_PORT": "9000"})
    assert settings.max_file_size == 2 * 1024**3
    assert settings.fsync is False
    assert settings.tokens == ("a", "b")
    assert settings.data_dir == Path("/srv/x")
    assert settings.port == 9000


def test_explicit_overrides_beat_the_environment() -> None:
    settings = Settings.from_env({"INGEST_PORT": "9000"}, port=9100, host=None)
    assert settings.port == 9100 and settings.host == "127.0.0.1"


def test_settings_survive_a_round_trip_through_the_environment() -> None:
    settings = Settings(tokens=("t1", "t2"), fsync=False, max_parts=7, data_dir=Path("/d"))
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(("raw", "expected"), [("4096", 4096), ("64KiB", 65536), ("10G", 10 * 1024**3),
                                               ("1.5GiB", 3 * 1024**3 // 2), ("1_000", 1000)])
def test_sizes_accept_binary_units(raw: str, expected: int) -> None:
    assert parse_size(raw) == expected


@pytest.mark.parametrize("raw", ["", "GiB", "12 parsecs", "-"])
def test_bad_sizes_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        parse_size(raw)


def test_a_bad_boolean_is_refused() -> None:
    with pytest.raises(ValueError, match="INGEST_FSYNC"):
        Settings.from_env({"INGEST_FSYNC": "maybe"})


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in Settings.__dataclass_fields__:
        assert f"`INGEST_{name.upper()}`" in readme
        assert f"`--{name.replace('_', '-')}" in readme
