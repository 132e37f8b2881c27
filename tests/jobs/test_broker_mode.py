"""An API replica with a broker only sends job ids: it builds no job context, and so no
second (training) recognizer with its own backbones and thread pool."""

from __future__ import annotations

import threading

import pytest
from fastapi import FastAPI

from tests.inprocess import app_client
from vize.api.deps import AppState
from vize.app import create_app
from vize.config import Settings
from vize.jobs.runners import CeleryRunner, EmbeddedRunner
from vize.services.recognition import Recognizer

BROKER = "redis://127.0.0.1:6379/15"


def _recognizers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> tuple[AppState, list[Recognizer]]:
    """The app's state, and every Recognizer built while it ran (the real ones, counted)."""
    built: list[Recognizer] = []
    seen = threading.Lock()
    real_init = Recognizer.__init__

    def counting_init(self: Recognizer, *args: object, **kwargs: object) -> None:
        with seen:
            built.append(self)
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]

    states: list[AppState] = []

    def keep(app: FastAPI, state: AppState) -> None:
        states.append(state)

    monkeypatch.setattr(Recognizer, "__init__", counting_init)
    with app_client(create_app(settings, extensions=[keep])) as client:
        assert client.get("/health").status_code == 200
    return states[0], built


def test_broker_mode_builds_one_recognizer_and_no_job_context(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = settings.model_copy(update={"broker_url": BROKER, "warm_up": False})
    state, built = _recognizers(api, monkeypatch)
    assert state.services.jobs is None and isinstance(state.services.runner, CeleryRunner)
    assert built == [state.services.recognizer]


def test_embedded_mode_trains_with_the_serving_recognizer(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded = settings.model_copy(update={"warm_up": False, "embedded_worker": False})
    state, built = _recognizers(embedded, monkeypatch)
    assert isinstance(state.services.runner, EmbeddedRunner)
    assert state.services.jobs is not None
    assert built == [state.services.recognizer] == [state.services.jobs.recognizer]
