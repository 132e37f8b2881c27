"""ImageFolder import and export: ``<root>/<label>/<image>``, plus ``vize-export.json``.

An export is a plain ImageFolder (usable by any training tool) with a manifest beside it that
keeps what folders cannot: multiple labels per image, metadata, test pins, label details.
Importing reads the manifest when there is one and the folder names otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vize.client.client import VizeClient
from vize.client.errors import NotFound, VizeAPIError, VizeError
from vize.client.imageio import IMAGE_EXTENSIONS
from vize.client.objects import Image, Json, Label, Task
from vize.client.resources import UploadItem, UploadResult

MANIFEST = "vize-export.json"
MANIFEST_FORMAT = "vize-export"
_EXT_BY_TYPE = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


@dataclass(frozen=True)
class FolderEntry:
    """One file to import and the label names it gets."""

    path: Path
    rel: str
    labels: tuple[str, ...]
    meta_data: Json | None = None
    test_image: bool = False


@dataclass
class FolderPlan:
    root: Path
    entries: list[FolderEntry]
    label_info: dict[str, Json]  # name -> description/output_name (from a manifest)
    manifest: Json | None = None
    ignored: list[str] = field(default_factory=list)

    @property
    def label_names(self) -> list[str]:
        names = dict.fromkeys(self.label_info)
        for entry in self.entries:
            names.update(dict.fromkeys(entry.labels))
        return list(names)


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    )


def scan_folder(root: Path) -> FolderPlan:
    """What to import from ``root``: its manifest if present, else one label per sub-folder."""
    root = root.expanduser()
    if not root.is_dir():
        raise VizeError(f"{root} is not a folder.")
    manifest_path = root / MANIFEST
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text("utf-8"))
        except ValueError as exc:
            raise VizeError(f"{manifest_path} is not valid JSON: {exc}") from exc
        return _scan_manifest(root, manifest)
    entries: list[FolderEntry] = []
    ignored = [p.name for p in sorted(root.iterdir()) if p.is_file() and not _is_image(p)]
    ignored += [p.name for p in sorted(root.iterdir()) if _is_image(p)]  # no label folder
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(p for p in folder.rglob("*") if _is_image(p)):
            entries.append(FolderEntry(path, path.relative_to(root).as_posix(), (folder.name,)))
    return FolderPlan(root, entries, {}, None, ignored)


def _scan_manifest(root: Path, manifest: Json) -> FolderPlan:
    if manifest.get("format") != MANIFEST_FORMAT:
        raise VizeError(f"{root / MANIFEST} is not a Vize export manifest.")
    info = {str(lbl["name"]): lbl for lbl in manifest.get("labels") or []}
    entries: list[FolderEntry] = []
    ignored: list[str] = []
    for image in manifest.get("images") or []:
        files = [f for f in image.get("files") or [] if (root / f).is_file()]
        if not files:
            ignored.extend(image.get("files") or [str(image.get("id"))])
            continue
        entries.append(
            FolderEntry(
                root / files[0],
                files[0],
                tuple(str(n) for n in image.get("labels") or []),
                image.get("meta_data") or None,
                bool(image.get("test_image")),
            )
        )
    return FolderPlan(root, entries, info, manifest, ignored)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ImportReport:
    task: Task
    task_created: bool
    labels_created: list[str]
    uploaded: int = 0
    existing: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    ignored: list[str] = field(default_factory=list)


@dataclass
class ImportJob:
    """A planned import: ``items`` still need uploading, ``skipped`` files are already there
    with their labels. ``run`` uploads and returns the report."""

    client: VizeClient
    report: ImportReport
    items: list[UploadItem]
    sources: dict[int, str]  # id(item) -> relative path, for the report
    skipped: int

    def run(
        self, workers: int = 4, on_result: Callable[[UploadResult], object] | None = None
    ) -> ImportReport:
        report = self.report
        report.existing += self.skipped
        for result in self.client.images.upload_many(
            self.items, workers=workers, on_result=on_result
        ):
            if result.status == "created":
                report.uploaded += 1
            elif result.status == "exists":
                report.existing += 1
            else:
                reason = _reason(result.error)
                report.failed.append((self.sources.get(id(result.item), result.source), reason))
        return report


def _reason(error: BaseException | None) -> str:
    if isinstance(error, VizeAPIError):
        return error.detail
    return str(error) if error else "unknown error"


def prepare_import(
    client: VizeClient, root: Path, task: str, task_type: str | None = None
) -> ImportJob:
    """Plan an import of ``root`` into ``task`` (id or name; created when missing, with
    ``task_type`` or the manifest's type). Creates missing labels; uploads nothing yet."""
    plan = scan_folder(root)
    manifest_task = (plan.manifest or {}).get("task") or {}
    found = _find_task(client, task)
    created = found is None
    if found is None:
        found = client.tasks.create(
            task,
            str(manifest_task.get("description") or ""),
            task_type or str(manifest_task.get("type") or "multi_class"),
        )
    ids, new_labels = _ensure_labels(client, found, plan)
    report = ImportReport(found, created, new_labels, ignored=plan.ignored)
    have = {} if created else _known_content(client, found)
    items: list[UploadItem] = []
    sources: dict[int, str] = {}
    skipped = 0
    for entry in plan.entries:
        wanted = {ids[name] for name in entry.labels}
        sha = sha256_file(entry.path) if have else None
        if sha in have and wanted <= have[sha]:
            skipped += 1
            continue
        item = UploadItem(
            entry.path, sorted(wanted), entry.meta_data, entry.test_image, entry.path.name
        )
        items.append(item)
        sources[id(item)] = entry.rel
    return ImportJob(client, report, items, sources, skipped)


def _find_task(client: VizeClient, key: str) -> Task | None:
    try:
        return client.tasks.resolve(key)
    except NotFound:
        return None


def _ensure_labels(
    client: VizeClient, task: Task, plan: FolderPlan
) -> tuple[dict[str, str], list[str]]:
    """Label name -> id for every label the plan needs; missing ones are created on the task
    (never borrowed from another task: shared labels would mix the two tasks' images)."""
    ids = {lbl.name: lbl.id for lbl in task.labels}
    created = []
    for name in plan.label_names:
        if name in ids:
            continue
        info = plan.label_info.get(name, {})
        label = client.labels.create(
            name,
            task.id,
            description=str(info.get("description") or ""),
            output_name=str(info.get("output_name") or ""),
        )
        ids[name] = label.id
        created.append(name)
    return ids, created


def _known_content(client: VizeClient, task: Task) -> dict[str, set[str]]:
    """sha256 -> label ids of the task's images, when the server reports content hashes.
    Without them the import still resumes correctly (the server answers "already exists"),
    it just sends the bytes again."""
    known: dict[str, set[str]] = {}
    for image in client.images.iter(task=task.id, page_size=1000):
        if image.sha256 is None:
            return {}
        known[image.sha256] = {lbl.id for lbl in image.labels}
    return known


# -- export ------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    task: Task
    images: int = 0
    downloaded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None


_UNSAFE = re.compile(r"[^\w.\- ()+,=@]+", re.UNICODE)


def safe_name(name: str, fallback: str) -> str:
    """A file or folder name that cannot escape the export folder or upset a filesystem."""
    cleaned = _UNSAFE.sub("_", name).strip(" .")
    return cleaned[:150] or fallback


def _label_dirs(labels: list[Label]) -> dict[str, str]:
    dirs: dict[str, str] = {}
    used: set[str] = set()
    for label in labels:
        name = safe_name(label.name, label.id)
        if name.lower() in used:  # two labels with one name (or one after cleaning)
            name = f"{name}-{label.id[:8]}"
        used.add(name.lower())
        dirs[label.id] = name
    return dirs


def _file_name(image: Image) -> str:
    ext = _EXT_BY_TYPE.get(image.content_type, "")
    name = safe_name(image.file_name, image.id)
    if not Path(name).suffix and ext:
        name += ext
    return name


def _placements(images: list[Image], dirs: dict[str, str]) -> Iterator[tuple[Image, list[str]]]:
    """Where each image goes: into every label folder it has (so a plain-folder re-import
    gives multi-label images all their labels back), or the root when it has none."""
    taken: set[str] = set()
    for image in sorted(images, key=lambda i: (i.file_name, i.id)):
        folders = [dirs[lbl.id] for lbl in image.labels if lbl.id in dirs] or [""]
        name = _file_name(image)
        if any(f"{d}/{name}".lower() in taken for d in folders):
            name = f"{image.id[:8]}-{name}"
        paths = [f"{d}/{name}" if d else name for d in folders]
        taken.update(p.lower() for p in paths)
        yield image, paths


def export_task(
    client: VizeClient,
    task_key: str,
    dest: Path,
    *,
    workers: int = 4,
    on_total: Callable[[int], object] | None = None,
    on_image: Callable[[str], object] | None = None,
) -> ExportReport:
    """Write the task's images as an ImageFolder under ``dest`` plus ``vize-export.json``.
    Files already present are kept: image content never changes, so re-running resumes."""
    task = client.tasks.resolve(task_key)
    dest.mkdir(parents=True, exist_ok=True)
    dirs = _label_dirs(task.labels)
    images = list(client.images.iter(task=task.id, page_size=1000))
    placed = list(_placements(images, dirs))
    report = ExportReport(task, images=len(images))
    if on_total is not None:
        on_total(len(images))
    lock = threading.Lock()

    def fetch(job: tuple[Image, list[str]]) -> None:
        image, paths = job
        targets = [dest / p for p in paths]
        try:
            if not all(t.is_file() for t in targets):
                data = client.images.download(image.id)
                for target in targets:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    _write_atomic(target, data)
                with lock:
                    report.downloaded += 1
        except (VizeError, OSError) as exc:
            with lock:
                report.failed.append((paths[0], _reason(exc)))
        if on_image is not None:
            on_image(paths[0])

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(fetch, placed))
    manifest = _manifest(client, task, dirs, placed)
    report.manifest = dest / MANIFEST
    _write_atomic(report.manifest, json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return report


def _write_atomic(path: Path, data: bytes) -> None:
    # An interrupted export must not leave a truncated file that a re-run would keep.
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _manifest(
    client: VizeClient, task: Task, dirs: dict[str, str], placed: list[tuple[Image, list[str]]]
) -> Json:
    names = {lbl.id: lbl.name for lbl in task.labels}
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "server": client.url,
        "task": {
            k: task.raw.get(k) for k in ("id", "name", "description", "type", "production_version")
        },
        "labels": [
            {
                "id": lbl.id,
                "name": lbl.name,
                "description": lbl.description,
                "output_name": lbl.output_name,
                "type": lbl.type,
                "dir": dirs[lbl.id],
            }
            for lbl in task.labels
        ],
        "images": [_image_entry(image, paths, names) for image, paths in placed],
        "models": _models(client, task),
    }


def _image_entry(image: Image, paths: list[str], names: dict[str, str]) -> Json:
    return {
        "id": image.id,
        "files": paths,
        "labels": [names[lbl.id] for lbl in image.labels if lbl.id in names],
        "file_name": image.file_name,
        "content_type": image.content_type,
        "width": image.img_width,
        "height": image.img_height,
        "meta_data": image.meta_data,
        "test_image": image.test_image,
    }


def _models(client: VizeClient, task: Task) -> list[dict[str, Any]]:
    try:
        return [
            {
                "version": m.version,
                "train_status": m.train_status,
                "accuracy": m.accuracy,
                "images_count": m.images_count,
                "created": m.created,
            }
            for m in client.models.iter(task.id)
        ]
    except NotFound:
        return []  # a server without the model endpoint: the export is still complete
