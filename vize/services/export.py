"""Export of a trained model version as a zip to run without the service (onnxruntime)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vize.db.states import TrainStatus
from vize.db.tables import Label, Model, Task
from vize.errors import Conflict
from vize.ml import model_export, openset
from vize.ml.backbones import get_backbone_config
from vize.ml.predictor import Head
from vize.services.recognition import Recognizer
from vize.storage import BlobStore

README = """# {task} - version {version}

`model.onnx` takes `image`: uint8 [N, {size}, {size}, 3] RGB, each picture resized as a
whole (no crop) to {size}x{size} (bicubic, see preprocess.json); it outputs `probabilities`
[N, {n}] in the order of labels.json{known}.

```python
import json, numpy as np, onnxruntime as ort
from PIL import Image
labels = json.load(open("labels.json"))
session = ort.InferenceSession("model.onnx")
img = Image.open("photo.jpg").convert("RGB").resize(({size}, {size}), Image.BICUBIC)
batch = np.asarray(img, dtype=np.uint8)[None]
probs = session.run(["probabilities"], {{"image": batch}})[0][0]
best = int(probs.argmax())
print(labels[best]["name"], float(probs[best]))
```

thresholds.json holds the thresholds of the "unknown" answer: {rule}
"""

KNOWN_NOTE = " and `known_score` [N, {n}], compared with the thresholds of thresholds.json"
RULE_SCORE = (
    "answer 'unknown' when `known_score[i, best]` is below `labels[best].threshold` "
    "(method {method}), or, for one global threshold, when `probs[best]` is below it."
)
RULE_PROB = "a tag is present when its probability reaches its `threshold`."


def export_zip(
    db: Session, recognizer: Recognizer, blobs: BlobStore, model: Model
) -> tuple[str, bytes]:
    """(file name, zip bytes) of a trained ``model`` (the caller checked its owner)."""
    if model.train_status != TrainStatus.TRAINED or not model.artifact_key:
        raise Conflict("Only a trained model version can be exported.", code="not_trained")
    task = db.get(Task, model.task_id)
    artifact = blobs.get(model.artifact_key)
    head = Head.from_bytes(artifact)
    cal = openset.from_artifact(artifact)
    rows = db.execute(select(Label.id, Label.name).where(Label.id.in_(head.label_ids))).all()
    names: dict[str, str] = {lid: name for lid, name in rows}
    paths = {name: recognizer.embedder.backbone(name).onnx_path for name in head.backbones}
    graph = model_export.build(head, paths, cal)
    labels = [{"id": lid, "name": names.get(lid, "")} for lid in head.label_ids]
    size = model_export.input_size(head)
    has_known = any(o.name == "known_score" for o in graph.graph.output)
    files = {
        "model.onnx": graph.SerializeToString(),
        "labels.json": _json(labels),
        "preprocess.json": _json(_preprocess(head, size)),
        "thresholds.json": _json(_thresholds(head, cal, labels, task)),
        "README.md": README.format(
            task=task.name if task else "model",
            version=model.version,
            size=size,
            n=len(labels),
            known=KNOWN_NOTE.format(n=len(labels)) if has_known else "",
            rule=RULE_PROB
            if head.kind == "multi_label"
            else RULE_SCORE.format(method=cal.method if cal else "-"),
        ).encode(),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return f"vize-model-{model.task_id[:8]}-v{model.version}.zip", buf.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


def _preprocess(head: Head, size: int) -> dict[str, Any]:
    return {
        "input": "image",
        "input_size": size,
        "layout": "NHWC",
        "dtype": "uint8",
        "color": "RGB",
        "resize": "whole image to input_size x input_size (aspect ratio not kept, no crop), "
        "bicubic, antialiased when shrinking (PIL Image.resize BICUBIC)",
        "view": "orig",
        "exif_orientation": "applied before resizing",
        "transparency": "composited on white",
        "normalisation": "inside the graph: (x - mean) / std per backbone",
        "backbones": [
            {
                "name": name,
                "input_size": get_backbone_config(name).input_size,
                "mean": get_backbone_config(name).mean,
                "std": get_backbone_config(name).std,
            }
            for name in head.backbones
        ],
        "kind": head.kind,
    }


def _thresholds(
    head: Head, cal: openset.Calibration | None, labels: list[dict[str, Any]], task: Task | None
) -> dict[str, Any]:
    method = cal.method if cal else None
    values = cal.thresholds if cal is not None else np.full(len(labels), np.nan)
    return {
        "task_setting": task.unknown if task else "off",
        "method": method,
        "output": "known_score" if method == openset.METHOD else "probabilities",
        "default_probability_threshold": head.threshold if head.kind == "multi_label" else 0.5,
        "labels": [
            {**lbl, "threshold": float(t) if np.isfinite(t) else None}
            for lbl, t in zip(labels, values, strict=True)
        ],
    }
