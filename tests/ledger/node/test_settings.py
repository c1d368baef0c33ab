"""Settings: every mistake is a clear error naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.runtime.settings import ConfigFileError, NodeSettings


def test_typos_in_nested_settings_are_errors(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("ECOSPHERE_AMQP__PREFETCHH", "5")
    with pytest.raises(ValidationError, match="prefetchh"):
        NodeSettings()
    monkeypatch.delenv("ECOSPHERE_AMQP__PREFETCHH")
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"amqp": {"prefetchh": 5}}))
    with pytest.raises(ValidationError, match="prefetchh"):
        NodeSettings(config_file=config)


def test_the_config_file_is_read_when_given_directly_and_its_errors_name_it(
        tmp_path: Path) -> None:
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"amqp": {"prefetch": 7}, "log_level": "DEBUG"}))
    settings = NodeSettings(config_file=config)
    assert settings.amqp.prefetch == 7 and settings.log_level == "DEBUG"
    config.write_text("{not json")
    with pytest.raises(ConfigFileError, match=r"settings\.json is not JSON"):
        NodeSettings(config_file=config)
    with pytest.raises(ConfigFileError, match=r"missing\.json"):
        NodeSettings(config_file=tmp_path / "missing.json")


def test_an_unknown_log_level_is_refused() -> None:
    with pytest.raises(ValidationError, match="log_level"):
        NodeSettings(log_level="LOUD")
