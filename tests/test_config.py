"""Settings that only move things: where they point is where the service looks."""

from __future__ import annotations

from pathlib import Path

import pytest

from vize.config import Settings
from vize.services.recognition import Recognizer


def test_onnx_cache_defaults_to_the_data_dir_and_can_be_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings(data_dir=tmp_path / "d").onnx_cache_dir == (tmp_path / "d" / "onnx").resolve()
    monkeypatch.setenv("VIZE_ONNX_DIR", str(tmp_path / "shared-onnx"))
    settings = Settings(data_dir=tmp_path / "d")
    assert settings.onnx_cache_dir == (tmp_path / "shared-onnx").resolve()
    recognizer = Recognizer(settings)
    try:
        assert recognizer.embedder.cache_dir == (tmp_path / "shared-onnx").resolve()
    finally:
        recognizer.close()
