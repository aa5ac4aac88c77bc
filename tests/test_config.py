"""Settings from defaults, INGEST_* variables and overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.config import Settings, format_size, human_size, parse_size


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


@pytest.mark.parametrize(("size", "typed"), [(64 * 1024**3, "64GiB"), (16 * 1024, "16KiB"), (1024**2, "1MiB"),
                                             (1536, "1536"), (0, "0"), (2 * 1024**4, "2TiB")])
def test_sizes_are_shown_as_people_type_them_and_read_back(size: int, typed: str) -> None:
    assert format_size(size) == typed
    assert parse_size(typed) == size


@pytest.mark.parametrize(("size", "shown"), [(512, "512 B"), (3 * 1024**2, "3.0 MiB"), (1536, "1.5 KiB"),
                                             (5 * 1024**4, "5.0 TiB")])
def test_human_sizes_round_to_one_decimal(size: int, shown: str) -> None:
    assert human_size(size) == shown
