"""Fixtures for the SDK and CLI tests: a client wired to the in-process app, the CLI with
an injected transport, and small ImageFolders cut from the committed image set."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tqdm import tqdm

import vize.client.cli as client_cli
from tests.client.transport import InProcessTransport
from tests.helpers import images
from tests.inprocess import AppClient
from vize.cli import main
from vize.client import VizeClient

BASE_URL = "http://testserver"
LABELS = ("airplane", "cat", "frog")


@pytest.fixture
def transport(client: AppClient) -> InProcessTransport:
    return InProcessTransport(client)


@pytest.fixture
def vize(transport: InProcessTransport, alice: dict[str, Any]) -> Iterator[VizeClient]:
    with VizeClient(BASE_URL, alice["token"], transport=transport, backoff=0.001) as sdk:
        yield sdk


def cut_image_folder(
    dest: Path, labels: tuple[str, ...] = LABELS, per_label: int = 6, offset: int = 0
) -> Path:
    """``dest/<label>/<file>.png``: ``per_label`` CIFAR-10 images of each label."""
    for label in labels:
        (dest / label).mkdir(parents=True, exist_ok=True)
        for path in images(label, offset, offset + per_label):
            shutil.copy(path, dest / label / path.name)
    return dest


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return cut_image_folder(tmp_path / "folder")


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    transport: InProcessTransport,
    alice: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., Run]:
    """Run ``vize ARGS...`` in-process as alice; returns exit code, stdout, stderr."""
    monkeypatch.setattr(client_cli, "TRANSPORT", transport)
    # A disabled tqdm bar (no TTY here) still starts tqdm's monitor thread and never stops it;
    # in a real `vize` process it ends with the process, in-process it would outlive the suite.
    monkeypatch.setattr(tqdm, "monitor_interval", 0)
    monkeypatch.setenv("VIZE_URL", BASE_URL)
    monkeypatch.setenv("VIZE_TOKEN", alice["token"])
    monkeypatch.setenv("VIZE_CONFIG", str(tmp_path / "config" / "vize.json"))

    def run(*argv: str) -> Run:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run
