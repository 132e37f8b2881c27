"""The SDK against the in-process app: tasks, labels, models, account, usage, errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.client.conftest import BASE_URL
from tests.client.transport import InProcessTransport
from vize.client import (
    AmbiguousName,
    AuthError,
    Label,
    NotFound,
    Task,
    ValidationError,
    VizeAPIError,
    VizeClient,
)


def test_task_crud(vize: VizeClient) -> None:
    task = vize.tasks.create("Pets", "cats and dogs")
    assert isinstance(task, Task)
    assert (task.name, task.description, task.type) == ("Pets", "cats and dogs", "multi_class")
    assert task.production_version == -1 and not task.trained
    fetched = vize.tasks.get(task.id)
    assert (fetched.id, fetched.name, fetched.labels) == (task.id, task.name, [])
    updated = vize.tasks.update(task, name="Pets 2", webhook_url="http://example.com/hook")
    assert (updated.name, updated.webhook_url) == ("Pets 2", "http://example.com/hook")
    assert updated.description == "cats and dogs"  # untouched fields stay
    vize.tasks.delete(task)
    with pytest.raises(NotFound) as info:
        vize.tasks.get(task.id)
    assert info.value.status == 404 and info.value.code == "not_found"


def test_task_list_pages_and_iter(vize: VizeClient) -> None:
    made = [vize.tasks.create(f"task {i:02d}") for i in range(7)]
    page = vize.tasks.list(page_size=3)
    assert page.count == 7 and len(page.results) == 3 and page.next and page.previous is None
    last = vize.tasks.list(page=3, page_size=3)
    assert len(last.results) == 1 and last.next is None
    everything = list(vize.tasks.iter(page_size=2))  # four requests
    assert sorted(t.id for t in everything) == sorted(t.id for t in made)
    assert [t.name for t in vize.tasks.iter(search="task 03")] == ["task 03"]


def test_tagging_task_gets_negative_label(vize: VizeClient) -> None:
    task = vize.tasks.create("Tags", type="multi_label")
    assert task.type == "multi_label"
    negative = task.label("negative")
    assert negative is not None and task.negative_label == negative.id


def test_find_and_resolve_task(vize: VizeClient) -> None:
    task = vize.tasks.create("Birds")
    vize.tasks.create("Birds of prey")
    found = vize.tasks.find("Birds")
    assert found is not None and found.id == task.id
    assert vize.tasks.find("Bird") is None
    assert vize.tasks.resolve("Birds").id == task.id
    assert vize.tasks.resolve(task.id).id == task.id
    with pytest.raises(NotFound):
        vize.tasks.resolve("Fish")
    vize.tasks.create("Birds")
    with pytest.raises(AmbiguousName, match="2 tasks are named 'Birds'"):
        vize.tasks.resolve("Birds")


def test_task_labels_attach_detach(vize: VizeClient) -> None:
    task = vize.tasks.create("Fruit")
    apple = vize.labels.create("apple")
    assert apple.tasks_count == 0
    task = vize.tasks.add_label(task, apple)
    assert [lbl.name for lbl in task.labels] == ["apple"]
    again = vize.tasks.add_label(task, apple)  # twice is harmless
    assert [lbl.id for lbl in again.labels] == [apple.id]
    task = vize.tasks.remove_label(task.id, apple.id)
    assert task.labels == []


def test_label_crud_and_tasks(vize: VizeClient) -> None:
    one, two = vize.tasks.create("one"), vize.tasks.create("two")
    label = vize.labels.create("pear", one, description="green", output_name="Pear")
    assert isinstance(label, Label)
    assert (label.description, label.output_name, label.type) == ("green", "Pear", "category")
    assert vize.labels.get(label.id).tasks_count == 1
    assert vize.labels.add_task(label, two).tasks_count == 2
    assert [lbl.id for lbl in vize.labels.iter(task=two)] == [label.id]
    assert vize.labels.remove_task(label, two).tasks_count == 1
    assert vize.labels.list(task=two).count == 0
    renamed = vize.labels.update(label, name="Pear", type="tag")
    assert (renamed.name, renamed.type) == ("Pear", "tag")
    assert vize.labels.resolve("Pear", task=one).id == label.id
    vize.labels.delete(label)
    with pytest.raises(NotFound):
        vize.labels.get(label.id)


def test_label_list_pages(vize: VizeClient) -> None:
    for i in range(5):
        vize.labels.create(f"l{i}")
    page = vize.labels.list(page_size=2, page=2)
    assert page.count == 5 and [lbl.name for lbl in page.results] == ["l2", "l3"]
    assert len(list(vize.labels.iter(page_size=2))) == 5
    assert [lbl.name for lbl in vize.labels.iter(search="l4")] == ["l4"]


def test_validation_errors_are_typed(vize: VizeClient) -> None:
    with pytest.raises(ValidationError) as info:
        vize.tasks.create("x", type="bogus")
    assert info.value.code == "invalid_task_type" and info.value.status == 400
    assert "multi_class" in info.value.detail
    with pytest.raises(ValidationError):
        vize.tasks.list(page_size=5000)  # 422 from the query validation
    task = vize.tasks.create("t")
    with pytest.raises(ValidationError) as info:
        vize.models.deploy(task, 3)
    assert info.value.code == "invalid_version"


def test_bad_token_is_auth_error(transport: InProcessTransport, alice: dict[str, Any]) -> None:
    with (
        VizeClient(BASE_URL, "wrong", transport=transport) as bad,
        pytest.raises(AuthError) as info,
    ):
        bad.tasks.list()
    assert info.value.status == 401 and info.value.code == "invalid_token"
    assert isinstance(info.value, VizeAPIError)
    assert "HTTP 401" in str(info.value) and "/v2/task/" in str(info.value)


def test_other_users_objects_are_not_found(
    vize: VizeClient, transport: InProcessTransport, bob: dict[str, Any]
) -> None:
    task = vize.tasks.create("private")
    with VizeClient(BASE_URL, bob["token"], transport=transport) as other:
        with pytest.raises(NotFound):
            other.tasks.get(task.id)
        assert other.tasks.list().count == 0


def test_account_usage_and_token(
    vize: VizeClient, alice: dict[str, Any], transport: InProcessTransport
) -> None:
    account = vize.account()
    assert (account.username, account.email) == ("alice", "alice@example.com")
    assert vize.update_account(notify_email=True).notify_email is True
    assert vize.update_account(email="a@example.org").email == "a@example.org"
    usage = vize.usage()
    assert (usage.today, usage.this_month, usage.total, usage.daily) == (0, 0, 0, [])
    new = vize.regenerate_token()
    assert new and new != alice["token"]
    assert vize.account().username == "alice"  # the client switched to the new token
    with VizeClient(BASE_URL, alice["token"], transport=transport) as old, pytest.raises(AuthError):
        old.account()


def test_models_list_empty_and_missing(vize: VizeClient) -> None:
    task = vize.tasks.create("untrained")
    assert vize.models.list(task).count == 0
    assert list(vize.models.iter(task)) == []
    assert vize.models.version(task, 1) is None
    with pytest.raises(NotFound):
        vize.models.get(str(uuid.uuid4()))


def test_recognition_prefix_is_accepted(
    transport: InProcessTransport, alice: dict[str, Any]
) -> None:
    with VizeClient(BASE_URL + "/recognition", alice["token"], transport=transport) as ximilar:
        ximilar.tasks.create("via ximilar path")
    assert transport.requests[-1].url.path == "/recognition/v2/task/"
