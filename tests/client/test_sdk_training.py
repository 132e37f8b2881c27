"""Training, models and classification through the SDK against the in-process app."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from tests.client.conftest import LABELS, cut_image_folder
from tests.client.fakes import fake_training_server as _fake_server
from tests.helpers import image
from vize.client import (
    Job,
    Model,
    NotEnoughData,
    NotTrained,
    Task,
    TrainingFailed,
    TrainingTimeout,
    UploadItem,
    VizeClient,
)


def _task_with_images(vize: VizeClient, root: Path, per_label: int = 6) -> Task:
    folder = cut_image_folder(root, per_label=per_label)
    task = vize.tasks.create("cifar")
    items = []
    for name in LABELS:
        label = vize.labels.create(name, task)
        items += [UploadItem(p, [label]) for p in sorted((folder / name).iterdir())]
    assert all(r.status == "created" for r in vize.images.upload_many(items))
    return vize.tasks.get(task.id)


def test_train_wait_progress_models_and_deploy(vize: VizeClient, tmp_path: Path) -> None:
    task = _task_with_images(vize, tmp_path / "f")
    seen: list[Job] = []
    model = vize.train(task, progress=seen.append, poll_interval=0.05)
    assert isinstance(model, Model)
    assert (model.version, model.train_status, model.task) == (1, "trained", task.id)
    assert model.accuracy is not None and model.metrics
    assert seen and seen[-1].state == "succeeded" and seen[-1].done
    assert all(0.0 <= job.progress <= 1.0 for job in seen)
    assert vize.tasks.get(task).production_version == 1
    status = vize.training_status(task)
    assert status.state == "succeeded" and vize.job(status.id).state == "succeeded"

    second = vize.train(task.id, poll_interval=0.05)
    # The default deploy policy (if_better): v2, on the same images, is no better than v1.
    assert second.version == 2 and vize.tasks.get(task).production_version == 1
    assert vize.models.deploy(task, 2).production_version == 2
    assert [m.version for m in vize.models.iter(task)] == [2, 1]
    assert vize.models.get(second.id).version == 2
    first = vize.models.version(task, 1)
    assert first is not None and first.id == model.id
    assert vize.models.deploy(task, 1).production_version == 1


def test_train_without_wait_returns_queued_model(vize: VizeClient, tmp_path: Path) -> None:
    task = _task_with_images(vize, tmp_path / "f")
    queued = vize.train(task, wait=False)
    assert queued.version == 1 and queued.train_status in ("queued", "training", "trained")
    deadline = time.monotonic() + 120
    job = vize.training_status(task)
    while not job.done and time.monotonic() < deadline:
        time.sleep(0.05)
        job = vize.training_status(task)
    assert job.state == "succeeded" and job.model_version == 1


def test_train_refused_names_short_labels(vize: VizeClient, tmp_path: Path) -> None:
    task = _task_with_images(vize, tmp_path / "f", per_label=2)
    with pytest.raises(NotEnoughData) as info:
        vize.train(task)
    assert info.value.code == "not_enough_images"
    assert "cat" in info.value.detail
    lonely = vize.tasks.create("one label")
    vize.labels.create("only", lonely)
    with pytest.raises(NotEnoughData) as info:
        vize.train(lonely)
    assert info.value.code == "not_enough_labels"


def test_classify_paths_bytes_pil_and_batches(vize: VizeClient, tmp_path: Path) -> None:
    task = _task_with_images(vize, tmp_path / "f")
    with pytest.raises(NotTrained):
        vize.classify(task, tmp_path / "f" / "cat" / "cat_000.png")
    vize.train(task, poll_interval=0.05)
    unseen = [image(name, 50) for name in LABELS]
    big = PILImage.open(unseen[0]).resize((1024, 768))  # goes through the 512 px resize
    inputs: list = [*unseen, unseen[1].read_bytes(), big, b"not an image"] + unseen * 2
    results = vize.classify(task, inputs, descriptor=True)
    assert len(results) == 12  # two requests
    assert results[0].source == str(unseen[0])
    for result in [*results[:5], *results[6:]]:
        assert result.ok and result.version == 1 and result.best_label is not None
        assert result.best_label.name in LABELS
        probs = [s.prob for s in result.labels]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
        assert result.descriptor and len(result.descriptor) > 100
    assert not results[5].ok and results[5].error and results[5].best_label is None
    assert vize.usage().today >= 11
    again = vize.classify(task.id, [unseen[2]], version=1, resize=None)
    assert again[0].ok and again[0].descriptor is None


def test_training_failure_raises_the_reason() -> None:
    transport = _fake_server("failed", "Out of memory")
    with (
        VizeClient("http://x", "t", transport=transport) as sdk,
        pytest.raises(TrainingFailed) as info,
    ):
        sdk.train("t1", poll_interval=0)
    assert info.value.reason == "Out of memory" and info.value.task_id == "t1"
    assert "Out of memory" in str(info.value)


def test_training_timeout_and_success_via_job_polling() -> None:
    with VizeClient("http://x", "t", transport=_fake_server("succeeded")) as sdk:
        model = sdk.train("t1", poll_interval=0)
        assert (model.version, model.accuracy) == (4, 0.9)
    with (
        VizeClient("http://x", "t", transport=_fake_server("succeeded")) as sdk,
        pytest.raises(TrainingTimeout),
    ):
        sdk.train("t1", poll_interval=0.01, timeout=0)
