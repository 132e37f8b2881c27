"""Client commands of the ``vize`` CLI: login, tasks, labels, import, train, classify, models,
export. ``vize.cli`` calls :func:`register` to add them next to the server commands.

Exit codes: 0 success, 1 an API or user error (message on stderr), 2 bad usage (argparse),
130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from vize.client import config
from vize.client._output import dump_json, error_message, note, table
from vize.client.client import VizeClient
from vize.client.errors import NotFound, VizeError
from vize.client.folder import export_task, prepare_import
from vize.client.objects import Classification, Job, Model, Task

# Replaces the network for every command (tests run the app in-process through it).
TRANSPORT: httpx.BaseTransport | None = None

Command = Callable[[argparse.Namespace, VizeClient], int]


def make_client(url: str, token: str, workspace: str | None = None) -> VizeClient:
    return VizeClient(url, token, transport=TRANSPORT, workspace=workspace)


def _with_client(fn: Command) -> Callable[[argparse.Namespace], int]:
    """Resolve credentials, open a client, and turn SDK errors into exit code 1."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        def body() -> int:
            creds = config.resolve(args.url, args.token, config.config_path(args.config))
            workspace = getattr(args, "workspace", None) or os.environ.get("VIZE_WORKSPACE")
            with make_client(creds.url, creds.token, workspace) as client:
                return fn(args, client)

        return _guarded(body)

    return run


def _guarded(body: Callable[[], int]) -> int:
    try:
        return body()
    except VizeError as exc:
        note(f"error: {error_message(exc)}")
        return 1
    except KeyboardInterrupt:
        note("interrupted")
        return 130


# -- login ---------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    path = config.config_path(args.config)

    def body() -> int:
        stored = config.load(path)
        url = args.url or _ask("Server URL", stored.get("url") or config.DEFAULT_URL)
        token = args.token or _ask_secret("API token: ")
        if not token:
            raise VizeError("No token given.")
        with make_client(url, token) as client:
            account = client.account()  # refuse to save credentials that do not work
        config.save(path, url, token)
        print(f"Logged in to {url} as {account.username}. Saved to {path}.")
        return 0

    return _guarded(body)


def _ask(prompt: str, default: str) -> str:
    if not sys.stdin.isatty():
        return default
    answer = input(f"{prompt} [{default}]: ").strip()
    return answer or default


def _ask_secret(prompt: str) -> str:
    # Piped input (`echo $TOKEN | vize login`) keeps the token out of the process list.
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    return getpass.getpass(prompt).strip()


# -- tasks and labels ----------------------------------------------------------------------------


def _task_row(task: Task) -> list[Any]:
    version = task.production_version if task.trained else None
    return [task.id, task.name, task.type, len(task.labels), version, task.last_train_status or "-"]


@_with_client
def cmd_tasks_list(args: argparse.Namespace, client: VizeClient) -> int:
    tasks = list(client.tasks.iter(search=args.search))
    if args.json:
        dump_json([t.raw for t in tasks])
    else:
        table(
            ["ID", "NAME", "TYPE", "LABELS", "VERSION", "TRAINING"], [_task_row(t) for t in tasks]
        )
    return 0


@_with_client
def cmd_tasks_create(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.create(args.name, args.description, args.type)
    if args.json:
        dump_json(task.raw)
    else:
        print(f"Created task {task.name!r} ({task.type}): {task.id}")
    return 0


@_with_client
def cmd_tasks_show(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    models = _models_or_empty(client, task)
    if args.json:
        dump_json({**task.raw, "models": [m.raw for m in models]})
        return 0
    deployed = task.production_version if task.trained else "none (not trained)"
    for key, value in [
        ("id", task.id),
        ("name", task.name),
        ("type", task.type),
        ("description", task.description or "-"),
        ("deployed version", deployed),
        ("last training", task.last_train_status or "-"),
    ]:
        print(f"{key + ':':18}{value}")
    print()
    table(["LABEL", "IMAGES", "ID"], [[lbl.name, lbl.images_count, lbl.id] for lbl in task.labels])
    if models:
        print()
        _models_table(models, task)
    return 0


def _models_or_empty(client: VizeClient, task: Task) -> list[Model]:
    try:
        return list(client.models.iter(task.id))
    except NotFound:
        return []  # a server without the model endpoint still shows the task


@_with_client
def cmd_tasks_delete(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    _confirm(args.yes, f"Delete task {task.name!r} ({task.id}) and its models?")
    client.tasks.delete(task.id)
    print(f"Deleted task {task.name!r}.")
    return 0


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise VizeError(f"{question} Refusing without --yes when not interactive.")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise VizeError("Cancelled.")


@_with_client
def cmd_labels_list(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task) if args.task else None
    labels = list(client.labels.iter(task=task, search=args.search))
    if args.json:
        dump_json([lbl.raw for lbl in labels])
    else:
        table(
            ["ID", "NAME", "TYPE", "IMAGES", "TASKS"],
            [[lbl.id, lbl.name, lbl.type, lbl.images_count, lbl.tasks_count] for lbl in labels],
        )
    return 0


@_with_client
def cmd_labels_create(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task) if args.task else None
    label = client.labels.create(
        args.name, task, description=args.description, output_name=args.output_name, type=args.type
    )
    if args.json:
        dump_json(label.raw)
    else:
        where = f" in task {task.name!r}" if task else ""
        print(f"Created label {label.name!r}{where}: {label.id}")
    return 0


@_with_client
def cmd_labels_delete(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task) if args.task else None
    label = client.labels.resolve(args.label, task)
    _confirm(args.yes, f"Delete label {label.name!r} ({label.id}) from all tasks?")
    client.labels.delete(label.id)
    print(f"Deleted label {label.name!r}.")
    return 0


# -- import / export -----------------------------------------------------------------------------


@_with_client
def cmd_import(args: argparse.Namespace, client: VizeClient) -> int:
    job = prepare_import(client, Path(args.folder), args.task, args.type)
    report = job.report
    state = "created" if report.task_created else "existing"
    note(f"Task {report.task.name!r} ({state}, {report.task.id})")
    if args.type and report.task.type != args.type:
        note(f"warning: the task is {report.task.type}; --type {args.type} is ignored")
    if report.labels_created:
        note(f"Created labels: {', '.join(report.labels_created)}")
    with tqdm(total=len(job.items), unit="img", desc="Uploading", disable=None) as bar:
        job.run(workers=args.workers, on_result=lambda _: bar.update())
    print(
        f"uploaded {report.uploaded}, already there {report.existing}, failed {len(report.failed)}"
    )
    for path, reason in report.failed:
        note(f"  failed {path}: {reason}")
    if report.ignored:
        note(
            f"Ignored {len(report.ignored)} file(s) outside label folders or missing: "
            + ", ".join(report.ignored[:5])
            + (" ..." if len(report.ignored) > 5 else "")
        )
    return 1 if report.failed else 0


@_with_client
def cmd_export(args: argparse.Namespace, client: VizeClient) -> int:
    bar = tqdm(unit="img", desc="Downloading", disable=None)
    with bar:
        report = export_task(
            client,
            args.task,
            Path(args.dir),
            workers=args.workers,
            on_total=lambda n: bar.reset(total=n),
            on_image=lambda _: bar.update(),
        )
    print(
        f"Exported {report.images} images of task {report.task.name!r} to {args.dir} "
        f"({report.downloaded} downloaded, {len(report.failed)} failed); "
        f"manifest {report.manifest}"
    )
    for path, reason in report.failed:
        note(f"  failed {path}: {reason}")
    return 1 if report.failed else 0


# -- train, classify, models ---------------------------------------------------------------------


@_with_client
def cmd_train(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    if not args.wait:
        model = client.train(task, wait=False)
        print(
            f"Training of {task.name!r} started (model version {model.version}). "
            f"Follow it with `vize train {args.task} --wait` or `vize tasks show`."
        )
        return 0
    with tqdm(
        total=100,
        unit="%",
        desc="Training",
        disable=None,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
    ) as bar:

        def progress(job: Job) -> None:
            bar.update(max(0, round(job.progress * 100) - bar.n))
            bar.set_postfix_str(job.message or job.state, refresh=True)

        try:
            model = client.train(
                task, progress=progress, poll_interval=args.poll_interval, timeout=args.timeout
            )
        except KeyboardInterrupt:
            note("\nStopped waiting; the training goes on on the server.")
            return 130
    accuracy = f"{model.accuracy:.1%}" if model.accuracy is not None else "n/a"
    deployed = client.tasks.get(task.id).production_version
    print(
        f"Trained {task.name!r} version {model.version}: accuracy {accuracy} "
        f"on {model.images_count or '?'} images. Deployed version: {deployed}."
    )
    return 0


@_with_client
def cmd_classify(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    results = client.classify(task, args.files, version=args.version, resize=args.resize or None)
    if args.json:
        dump_json([_classification_json(r) for r in results])
    else:
        table(["FILE", "LABEL", "PROB"], [_classification_row(r) for r in results])
    return 0 if all(r.ok for r in results) else 1


def _classification_row(result: Classification) -> list[Any]:
    if not result.ok:
        return [result.source, f"error: {result.error}", None]
    best = result.best_label
    return [result.source, best.name if best else None, best.prob if best else None]


def _classification_json(result: Classification) -> dict[str, Any]:
    best = result.best_label
    return {
        "file": result.source,
        "ok": result.ok,
        "error": result.error,
        "version": result.version,
        "best_label": {"id": best.id, "name": best.name, "prob": best.prob} if best else None,
        "labels": [{"id": s.id, "name": s.name, "prob": s.prob} for s in result.labels],
    }


@_with_client
def cmd_insights(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    report = client.insights(task, recompute=args.recompute)
    if args.json:
        dump_json(report.raw)
        return 0
    print(f"Data health of {task.name!r} (computed {report.computed or 'never'}):")
    print(f"\n{len(report.near_duplicates)} group(s) of near-duplicate images")
    table(
        ["IMAGES", "SIMILARITY", "LABELS DIFFER"],
        [
            [" ".join(g["images"]), g["similarity"], g["labels_differ"]]
            for g in report.near_duplicates
        ],
    )
    print(f"\n{len(report.suspected_mislabels)} suspected mislabel(s), most suspicious first")
    table(
        ["IMAGE", "LABELS", "PREDICTED", "PROB"],
        [
            [
                s["id"],
                ", ".join(lbl["name"] for lbl in s["labels"]),
                s["predicted"]["name"],
                s["predicted"]["prob"],
            ]
            for s in report.suspected_mislabels
        ],
    )
    print(f"\n{len(report.test_leaks)} test image(s) leaked from the training set")
    table(
        ["TEST IMAGE", "TRAINING IMAGE", "SIMILARITY"],
        [[x["test_image"], x["train_image"], x["similarity"]] for x in report.test_leaks],
    )
    return 0


@_with_client
def cmd_models_list(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    models = sorted(client.models.iter(task.id), key=lambda m: m.version)
    if args.json:
        dump_json([m.raw for m in models])
    else:
        _models_table(models, task)
    return 0


def _models_table(models: list[Model], task: Task) -> None:
    rows = [
        [
            "*" if m.version == task.production_version else "",
            m.version,
            m.train_status,
            m.accuracy,
            m.images_count,
            m.created,
        ]
        for m in models
    ]
    table(["", "VERSION", "STATUS", "ACCURACY", "IMAGES", "CREATED"], rows)


@_with_client
def cmd_models_deploy(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    updated = client.models.deploy(task, args.version)
    print(f"Task {updated.name!r} now serves version {updated.production_version}.")
    return 0


@_with_client
def cmd_export_model(args: argparse.Namespace, client: VizeClient) -> int:
    task = client.tasks.resolve(args.task)
    version = args.version if args.version is not None else task.production_version
    model = client.models.version(task, version)
    if model is None:
        print(f"Task {task.name!r} has no model version {version}.", file=sys.stderr)
        return 1
    data = client.models.export(model.id)
    out = Path(args.output or f"{task.name}-v{model.version}.zip".replace("/", "_"))
    out.write_bytes(data)
    print(f"Wrote {out} ({len(data) / 2**20:.1f} MB): model.onnx, labels.json, README.md, ...")
    return 0


# -- workspaces ----------------------------------------------------------------------------------


@_with_client
def cmd_workspaces_list(args: argparse.Namespace, client: VizeClient) -> int:
    spaces = client.workspaces()
    if args.json:
        dump_json([w.raw for w in spaces])
    else:
        rows = [[w.id, w.name, w.role, "yes" if w.default else ""] for w in spaces]
        table(["ID", "NAME", "ROLE", "DEFAULT"], rows)
    return 0


@_with_client
def cmd_workspaces_create(args: argparse.Namespace, client: VizeClient) -> int:
    created = client.create_workspace(args.name)
    if args.json:
        dump_json(created.raw)
    else:
        print(f"Created workspace {created.name!r}: {created.id} (use --workspace {created.id}).")
    return 0


def _register_workspaces(sub: Any, common: argparse.ArgumentParser) -> None:
    spaces = sub.add_parser("workspaces", help="list and create workspaces")
    cmds = spaces.add_subparsers(dest="workspaces_command", required=True)
    p = cmds.add_parser("list", parents=[common], help="your workspaces and your role in each")
    _json_flag(p)
    p.set_defaults(func=cmd_workspaces_list)
    p = cmds.add_parser("create", parents=[common], help="create a workspace (you own it)")
    p.add_argument("name")
    _json_flag(p)
    p.set_defaults(func=cmd_workspaces_create)


# -- argument parsing ----------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument("--url", help="server URL (default: VIZE_URL, then the config file)")
    group.add_argument("--token", help="API token (default: VIZE_TOKEN, then the config file)")
    group.add_argument(
        "--config", help="config file (default: VIZE_CONFIG or ~/.config/vize/config.json)"
    )
    group.add_argument(
        "--workspace", help="workspace id to act in (default: VIZE_WORKSPACE, then your default)"
    )
    return common


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _not_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client sub-commands to the ``vize`` parser."""
    common = _common()
    login = sub.add_parser("login", parents=[common], help="save server URL and API token")
    login.set_defaults(func=cmd_login)
    _register_tasks(sub, common)
    _register_labels(sub, common)
    _register_data(sub, common)
    _register_models(sub, common)
    _register_workspaces(sub, common)


def _register_tasks(sub: Any, common: argparse.ArgumentParser) -> None:
    tasks = sub.add_parser("tasks", help="list, create, show, delete tasks")
    cmds = tasks.add_subparsers(dest="tasks_command", required=True)
    p = cmds.add_parser("list", parents=[common], help="list your tasks")
    p.add_argument("--search")
    _json_flag(p)
    p.set_defaults(func=cmd_tasks_list)
    p = cmds.add_parser("create", parents=[common], help="create a task")
    p.add_argument("name")
    p.add_argument("--description", default="")
    p.add_argument("--type", default="multi_class", choices=["multi_class", "multi_label"])
    _json_flag(p)
    p.set_defaults(func=cmd_tasks_create)
    p = cmds.add_parser("show", parents=[common], help="a task, its labels and models")
    p.add_argument("task", help="task id or name")
    _json_flag(p)
    p.set_defaults(func=cmd_tasks_show)
    p = cmds.add_parser("delete", parents=[common], help="delete a task")
    p.add_argument("task", help="task id or name")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_tasks_delete)


def _register_labels(sub: Any, common: argparse.ArgumentParser) -> None:
    labels = sub.add_parser("labels", help="list, create, delete labels")
    cmds = labels.add_subparsers(dest="labels_command", required=True)
    p = cmds.add_parser("list", parents=[common], help="list labels")
    p.add_argument("--task", help="only this task's labels (id or name)")
    p.add_argument("--search")
    _json_flag(p)
    p.set_defaults(func=cmd_labels_list)
    p = cmds.add_parser("create", parents=[common], help="create a label")
    p.add_argument("name")
    p.add_argument("--task", help="attach to this task (id or name)")
    p.add_argument("--description", default="")
    p.add_argument("--output-name", default="")
    p.add_argument("--type", choices=["category", "tag"])
    _json_flag(p)
    p.set_defaults(func=cmd_labels_create)
    p = cmds.add_parser("delete", parents=[common], help="delete a label")
    p.add_argument("label", help="label id or name")
    p.add_argument("--task", help="look the name up among this task's labels")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_labels_delete)


def _register_data(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "import",
        parents=[common],
        help="upload an ImageFolder (one sub-folder per label); resumable",
    )
    p.add_argument("folder")
    p.add_argument("--task", required=True, help="task id or name (created if missing)")
    p.add_argument(
        "--type",
        choices=["multi_class", "multi_label"],
        help="type of a new task (default multi_class)",
    )
    p.add_argument("--workers", type=_positive, default=4, help="parallel uploads")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser(
        "export", parents=[common], help="download a task as an ImageFolder + vize-export.json"
    )
    p.add_argument("task", help="task id or name")
    p.add_argument("dir")
    p.add_argument("--workers", type=_positive, default=4, help="parallel downloads")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("train", parents=[common], help="train a new model version")
    p.add_argument("task", help="task id or name")
    p.add_argument("--wait", action="store_true", help="wait for the end, with progress")
    p.add_argument("--poll-interval", type=float, default=2.0, help="seconds between checks")
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("classify", parents=[common], help="classify image files or URLs")
    p.add_argument("task", help="task id or name")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--version", type=int, help="model version (default: the deployed one)")
    p.add_argument(
        "--resize",
        type=_not_negative,
        default=512,
        help="downscale so the shorter side is at most this (0: send as is)",
    )
    _json_flag(p)
    p.set_defaults(func=cmd_classify)
    p = sub.add_parser(
        "insights",
        parents=[common],
        help="data health: near-duplicates, suspected mislabels, test leaks",
    )
    p.add_argument("task", help="task id or name")
    p.add_argument("--recompute", action="store_true", help="recompute instead of the stored")
    _json_flag(p)
    p.set_defaults(func=cmd_insights)


def _register_models(sub: Any, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser("models", help="list and deploy model versions")
    cmds = models.add_subparsers(dest="models_command", required=True)
    p = cmds.add_parser("list", parents=[common], help="versions of a task")
    p.add_argument("task", help="task id or name")
    _json_flag(p)
    p.set_defaults(func=cmd_models_list)
    p = cmds.add_parser("deploy", parents=[common], help="serve a version")
    p.add_argument("task", help="task id or name")
    p.add_argument("version", type=int)
    p.set_defaults(func=cmd_models_deploy)
    p = sub.add_parser(
        "export-model",
        parents=[common],
        help="download a trained model as a zip (ONNX + labels + thresholds) for onnxruntime",
    )
    p.add_argument("task", help="task id or name")
    p.add_argument("--version", type=int, help="model version (default: the deployed one)")
    p.add_argument("-o", "--output", help="zip file to write (default: <task>-v<N>.zip)")
    p.set_defaults(func=cmd_export_model)
