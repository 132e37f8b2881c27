"""The client commands of ``vize``, run in-process through ``vize.cli.main``."""

from __future__ import annotations

import io
import json
import stat
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vize.client.cli as client_cli
from tests.client.conftest import BASE_URL, LABELS, Run
from tests.client.fakes import fake_training_server
from tests.client.transport import HashReportingTransport, InProcessTransport
from tests.helpers import image, png_bytes
from vize.cli import main
from vize.client import VizeClient
from vize.client.errors import VizeAPIError

Cli = Callable[..., Run]


def _json(run: Run) -> Any:
    assert run.code == 0, run.err
    return json.loads(run.out)


def test_login_writes_private_config(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, alice: dict[str, Any]
) -> None:
    monkeypatch.delenv("VIZE_TOKEN")
    monkeypatch.delenv("VIZE_URL")
    path = tmp_path / "cfg" / "config.json"
    run = cli("tasks", "list", "--config", str(path))
    assert run.code == 1 and "vize login" in run.err
    run = cli("login", "--url", "http://testserver", "--token", "nope", "--config", str(path))
    assert run.code == 1 and "Invalid API token" in run.err and not path.exists()
    run = cli(
        "login", "--url", "http://testserver", "--token", alice["token"], "--config", str(path)
    )
    assert run.code == 0 and "as alice" in run.out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": "http://testserver", "token": alice["token"]}
    assert cli("tasks", "list", "--config", str(path)).code == 0
    monkeypatch.setenv("VIZE_CONFIG", str(path))  # the environment names the file too
    assert cli("tasks", "list").code == 0


def test_login_reads_a_piped_token(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, alice: dict[str, Any], tmp_path: Path
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(alice["token"] + "\n"))
    path = tmp_path / "piped.json"
    run = cli("login", "--url", "http://testserver", "--config", str(path))
    assert run.code == 0, run.err
    assert json.loads(path.read_text())["token"] == alice["token"]


def test_flags_override_environment(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    run = cli("tasks", "list", "--token", "bogus")
    assert run.code == 1 and "Invalid API token" in run.err


def test_tasks_commands(cli: Cli) -> None:
    created = _json(cli("tasks", "create", "Pets", "--description", "d", "--json"))
    assert created["name"] == "Pets" and created["type"] == "multi_class"
    run = cli("tasks", "create", "Tags", "--type", "multi_label")
    assert run.code == 0 and "Created task 'Tags' (multi_label)" in run.out
    run = cli("tasks", "list")
    assert run.out.splitlines()[0].split() == [
        "ID",
        "NAME",
        "TYPE",
        "LABELS",
        "VERSION",
        "TRAINING",
    ]
    assert "Pets" in run.out and "Tags" in run.out
    assert {t["name"] for t in _json(cli("tasks", "list", "--json"))} == {"Pets", "Tags"}
    run = cli("tasks", "show", "Tags")
    assert "negative" in run.out and "none (not trained)" in run.out
    assert _json(cli("tasks", "show", created["id"], "--json"))["models"] == []
    run = cli("tasks", "delete", "Pets")
    assert run.code == 1 and "--yes" in run.err
    assert cli("tasks", "delete", "Pets", "--yes").code == 0
    run = cli("tasks", "show", "Pets")
    assert run.code == 1 and run.err.startswith("error: No task with id or name 'Pets'")


def test_labels_commands(cli: Cli) -> None:
    cli("tasks", "create", "Fruit")
    run = cli("labels", "create", "apple", "--task", "Fruit", "--description", "red")
    assert run.code == 0 and "in task 'Fruit'" in run.out
    cli("labels", "create", "loose")
    names = [lbl["name"] for lbl in _json(cli("labels", "list", "--json"))]
    assert names == ["apple", "loose"]
    run = cli("labels", "list", "--task", "Fruit")
    assert "apple" in run.out and "loose" not in run.out
    assert cli("labels", "delete", "apple", "--task", "Fruit", "--yes").code == 0
    assert [lbl["name"] for lbl in _json(cli("labels", "list", "--json"))] == ["loose"]


def test_usage_errors_exit_2(cli: Cli) -> None:
    for argv in (
        ["tasks"],
        ["import", "somewhere"],
        ["classify", "t"],
        ["tasks", "create", "x", "--type", "nope"],
        ["import", "f", "--task", "t", "--workers", "0"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_import_is_resumable_and_reports(cli: Cli, image_folder: Path) -> None:
    (image_folder / "README.txt").write_text("not an image")
    run = cli("import", str(image_folder), "--task", "cifar")
    assert run.code == 0, run.err
    assert "uploaded 18, already there 0, failed 0" in run.out
    assert "Task 'cifar' (created" in run.err and "Created labels: airplane, cat, frog" in run.err
    assert "README.txt" in run.err  # told what was ignored
    task = _json(cli("tasks", "show", "cifar", "--json"))
    assert {lbl["name"]: lbl["images_count"] for lbl in task["labels"]} == dict.fromkeys(LABELS, 6)
    (image_folder / "cat" / "broken.png").write_bytes(b"\x89PNG truncated")
    (image_folder / "dog").mkdir()
    (image_folder / "dog" / "new.png").write_bytes(png_bytes(5))
    run = cli("import", str(image_folder), "--task", "cifar")
    assert run.code == 1
    assert "uploaded 1, already there 18, failed 1" in run.out
    assert "failed cat/broken.png:" in run.err and "Created labels: dog" in run.err
    assert len(_json(cli("tasks", "show", "cifar", "--json"))["labels"]) == 4


def test_import_into_tagging_task(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "tags"
    for name, seed in (("animal", 1), ("negative", 2)):
        (folder / name).mkdir(parents=True)
        (folder / name / f"{name}.png").write_bytes(png_bytes(seed))
    run = cli("import", str(folder), "--task", "tags", "--type", "multi_label")
    assert run.code == 0 and "Created labels: animal" in run.err  # "negative" already exists
    task = _json(cli("tasks", "show", "tags", "--json"))
    assert task["type"] == "multi_label"
    assert {lbl["name"]: lbl["images_count"] for lbl in task["labels"]} == {
        "animal": 1,
        "negative": 1,
    }


def test_export_then_reimport(cli: Cli, image_folder: Path, tmp_path: Path) -> None:
    assert cli("import", str(image_folder), "--task", "source").code == 0
    out = tmp_path / "export"
    run = cli("export", "source", str(out))
    assert run.code == 0, run.err
    assert "Exported 18 images" in run.out
    for name in LABELS:
        exported = sorted(p.name for p in (out / name).iterdir())
        assert exported == sorted(p.name for p in (image_folder / name).iterdir())
        for p in (out / name).iterdir():
            assert p.read_bytes() == (image_folder / name / p.name).read_bytes()
    manifest = json.loads((out / "vize-export.json").read_text())
    assert manifest["format"] == "vize-export" and manifest["task"]["name"] == "source"
    assert len(manifest["images"]) == 18 and {lbl["name"] for lbl in manifest["labels"]} == set(
        LABELS
    )
    run = cli("export", "source", str(out))  # again: nothing to download
    assert "0 downloaded" in run.out
    run = cli("import", str(out), "--task", "copy")
    assert run.code == 0, run.err
    # Same content, same user: the images exist already and gain the new task's labels.
    assert "uploaded 0, already there 18, failed 0" in run.out
    copy = _json(cli("tasks", "show", "copy", "--json"))
    assert {lbl["name"]: lbl["images_count"] for lbl in copy["labels"]} == dict.fromkeys(LABELS, 6)


def test_export_keeps_multiple_labels_and_metadata(cli: Cli, tmp_path: Path, vize: Any) -> None:
    task = vize.tasks.create("multi", type="multi_label")
    red, round_ = vize.labels.create("red", task), vize.labels.create("round", task)
    vize.images.upload(
        png_bytes(1), [red, round_], meta_data={"k": 1}, test_image=True, file_name="ball.png"
    )
    vize.images.upload(png_bytes(2), [red], file_name="ball.png")  # same name, other image
    out = tmp_path / "out"
    assert cli("export", "multi", str(out)).code == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    # In every label folder it has; the second "ball.png" of "red" gets an id prefix.
    assert [f.split("/")[0] for f in files] == ["red", "red", "round"]
    assert "red/ball.png" in files and all(f.endswith("ball.png") for f in files)
    manifest = json.loads((out / "vize-export.json").read_text())
    entry = next(i for i in manifest["images"] if len(i["labels"]) == 2)
    assert sorted(entry["labels"]) == ["red", "round"] and len(entry["files"]) == 2
    assert (out / entry["files"][0]).read_bytes() == png_bytes(1)
    assert entry["meta_data"] == {"k": 1} and entry["test_image"] is True
    # Re-import into a fresh tagging task restores both labels of that image.
    run = cli("import", str(out), "--task", "multi-copy")
    assert run.code == 0, run.err
    copy = vize.tasks.resolve("multi-copy")
    assert copy.type == "multi_label"
    both = vize.images.list(task=copy, label=copy.label("round")).results
    assert len(both) == 1 and {lbl.name for lbl in both[0].labels} >= {"red", "round"}


def test_train_classify_models(
    cli: Cli, image_folder: Path, tmp_path: Path, vize: VizeClient
) -> None:
    assert cli("import", str(image_folder), "--task", "cifar").code == 0
    run = cli("classify", "cifar", str(image_folder / "cat" / "cat_000.png"))
    assert run.code == 1 and "not_trained" in run.err
    run = cli("train", "cifar", "--wait", "--poll-interval", "0.05")
    assert run.code == 0, run.err
    assert "Trained 'cifar' version 1" in run.out and "Deployed version: 1" in run.out
    files = [image(name, 60) for name in LABELS]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    run = cli("classify", "cifar", *map(str, files))
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == ["FILE", "LABEL", "PROB"] and len(lines) == 4
    assert all(line.split()[1] in LABELS for line in lines[1:])
    rows = _json(cli("classify", "cifar", str(files[0]), "--json", "--version", "1"))
    assert rows[0]["ok"] and rows[0]["best_label"]["name"] in LABELS and rows[0]["version"] == 1
    run = cli("classify", "cifar", str(files[0]), str(bad))
    assert run.code == 1 and "error:" in run.out.splitlines()[2]
    run = cli("train", "cifar")  # without --wait: started, not waited for
    assert run.code == 0 and "started (model version 2)" in run.out
    deadline = time.monotonic() + 120
    while not vize.training_status(vize.tasks.resolve("cifar")).done:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    versions = _json(cli("models", "list", "cifar", "--json"))
    assert {m["version"] for m in versions} >= {1, 2}
    run = cli("models", "deploy", "cifar", "1")
    assert run.code == 0 and "now serves version 1" in run.out
    run = cli("models", "list", "cifar")
    assert any(line.startswith("*") and line.split()[1] == "1" for line in run.out.splitlines())
    run = cli("models", "deploy", "cifar", "99")
    assert run.code == 1 and "not a trained model" in run.err
    # export-model: the deployed version by default, as a zip the SDK downloads too.
    out = tmp_path / "model.zip"
    run = cli("export-model", "cifar", "-o", str(out))
    assert run.code == 0 and "model.zip" in run.out, run.err
    with zipfile.ZipFile(out) as zf:
        assert {"model.onnx", "labels.json", "thresholds.json"} <= set(zf.namelist())
        labels = json.loads(zf.read("labels.json"))
    assert sorted(lbl["name"] for lbl in labels) == sorted(LABELS)
    model = vize.models.version(vize.tasks.resolve("cifar"), 1)
    assert model is not None and vize.models.export(model.id)[:2] == b"PK"
    run = cli("export-model", "cifar", "--version", "99", "-o", str(tmp_path / "x.zip"))
    assert run.code == 1 and "no model version 99" in run.err


def test_train_failure_exit_code_names_reason(cli: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    for i, name in enumerate(("a", "b")):
        (folder / name).mkdir(parents=True)
        (folder / name / "x.png").write_bytes(png_bytes(i))
    assert cli("import", str(folder), "--task", "tiny").code == 0
    run = cli("train", "tiny", "--wait")
    assert run.code == 1
    assert "Every label needs at least 5 images" in run.err and "a: 1 of 5 images" in run.err


def test_failed_training_exits_1_with_reason(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_cli, "TRANSPORT", fake_training_server("failed", "Disk full"))
    run = cli("train", "t1", "--wait", "--poll-interval", "0")
    assert run.code == 1 and run.err.strip().endswith("error: Training failed: Disk full")
    monkeypatch.setattr(client_cli, "TRANSPORT", fake_training_server("succeeded"))
    run = cli("train", "t1", "--wait", "--poll-interval", "0")
    assert run.code == 0 and "version 4: accuracy 90.0%" in run.out


def test_import_skips_known_content_without_sending_it(
    cli: Cli,
    image_folder: Path,
    transport: InProcessTransport,
    vize: VizeClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a server that reports content hashes, a re-run sends no image bytes at all.
    hashing = HashReportingTransport(transport)
    monkeypatch.setattr(client_cli, "TRANSPORT", hashing)
    assert cli("import", str(image_folder), "--task", "cifar").code == 0
    assert hashing.uploads == 18
    run = cli("import", str(image_folder), "--task", "cifar")
    assert "uploaded 0, already there 18, failed 0" in run.out and hashing.uploads == 18
    # An image that lost its label is sent again, which gives the label back.
    task = vize.tasks.resolve("cifar")
    cat = task.label("cat")
    assert cat is not None
    victim = vize.images.list(task=task, label=cat).results[0]
    vize.images.remove_label(victim, cat)
    run = cli("import", str(image_folder), "--task", "cifar")
    assert "uploaded 0, already there 18, failed 0" in run.out and hashing.uploads == 19
    assert vize.images.list(task=task, label=cat).count == 6


def test_workspaces_commands_and_the_workspace_flag(
    cli: Cli, vize: VizeClient, transport: Any, bob: dict
) -> None:
    """``vize workspaces list|create``; ``--workspace`` (or VIZE_WORKSPACE) on any command."""
    run = cli("workspaces", "list")
    assert run.out.splitlines()[0].split() == ["ID", "NAME", "ROLE", "DEFAULT"]
    assert "Default" in run.out and "owner" in run.out
    made = _json(cli("workspaces", "create", "Lab", "--json"))
    assert made["name"] == "Lab" and made["role"] == "owner"
    listed = _json(cli("workspaces", "list", "--json"))
    assert [(w["name"], w["default"]) for w in listed] == [("Default", True), ("Lab", False)]
    assert cli("tasks", "create", "In lab", "--workspace", made["id"]).code == 0
    cli("tasks", "create", "At home")
    in_lab = _json(cli("tasks", "list", "--json", "--workspace", made["id"]))
    assert [t["name"] for t in in_lab] == ["In lab"]
    assert [t["name"] for t in _json(cli("tasks", "list", "--json"))] == ["At home"]
    # The SDK alike: workspace= on the client.
    with VizeClient(BASE_URL, vize._http._client.headers["Authorization"].split()[1],
                    transport=transport, workspace=made["id"]) as lab:  # fmt: skip
        assert [t.name for t in lab.tasks.iter()] == ["In lab"]
        assert lab.labels.create("in lab too").raw["workspace"] == made["id"]
    assert [w.name for w in vize.workspaces()] == ["Default", "Lab"]
    # Not a member: refused, never the default workspace's data.
    with VizeClient(BASE_URL, bob["token"], transport=transport, workspace=made["id"]) as other:
        with pytest.raises(VizeAPIError) as err:
            list(other.tasks.iter())
        assert err.value.status == 404
    run = cli("tasks", "list", "--workspace", "0b0c0d0e-0000-4000-8000-000000000000")
    assert run.code == 1 and "Workspace not found" in run.err
