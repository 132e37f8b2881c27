"""ONNX Runtime inference for backbones: one lazily created session per backbone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vize.ml.backbones import Backbone, create_backbone

ArrayBatch = np.ndarray | Sequence[np.ndarray]


class Embedder:
    """Thread-safe, blocking embedding of preprocessed images.

    Sessions are created on first use under a lock and kept for the object's lifetime.
    ``intra_op_threads`` defaults to 1 so that N concurrent requests on an N-core server each
    get a core instead of oversubscribing; a batch job (training) may create its own
    ``Embedder`` with more threads. ``InferenceSession.run`` is itself thread-safe.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        *,
        intra_op_threads: int = 1,
        max_batch: int = 32,
        cpu_arena: bool = False,
    ) -> None:
        if intra_op_threads < 1 or max_batch < 1:
            raise ValueError("intra_op_threads and max_batch must be >= 1")
        self.cache_dir = Path(cache_dir)
        self.intra_op_threads = intra_op_threads
        self.max_batch = max_batch
        self.cpu_arena = cpu_arena
        self._lock = threading.Lock()
        self._backbones: dict[str, Backbone] = {}
        self._sessions: dict[str, ort.InferenceSession] = {}

    def backbone(self, name: str) -> Backbone:
        """The named backbone (its ONNX file converted and cached on first use)."""
        with self._lock:
            bb = self._backbones.get(name)
            if bb is None:
                bb = create_backbone(name, self.cache_dir)
                self._backbones[name] = bb
            return bb

    def session(self, name: str) -> ort.InferenceSession:
        bb = self.backbone(name)
        with self._lock:
            sess = self._sessions.get(name)
            if sess is None:
                sess = ort.InferenceSession(
                    str(bb.onnx_path), self._options(), providers=["CPUExecutionProvider"]
                )
                self._sessions[name] = sess
            return sess

    def _options(self) -> ort.SessionOptions:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The arena keeps the peak activation memory of the largest batch ever run, per
        # session, for the life of the process; without it that memory goes back after each
        # run (bench/memory_bench.py: see BENCHMARKS.md for the measured difference).
        opts.enable_cpu_mem_arena = self.cpu_arena
        # The intra-op threads spin while a forward runs (its many short parallel sections
        # need them awake) but stop as soon as it returns: spinning on afterwards took the
        # cores from the request's decoding, the event loop and the next request.
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        return opts

    def _run(self, name: str, batch: ArrayBatch, output: str) -> np.ndarray:
        size = self.backbone(name).config.input_size
        arr = np.asarray(batch, dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (3, size, size):
            raise ValueError(f"{name} expects arrays of shape (3, {size}, {size}), got {arr.shape}")
        sess = self.session(name)
        parts = [
            sess.run([output], {"input": arr[i : i + self.max_batch]})[0]
            for i in range(0, len(arr), self.max_batch)
        ]
        return np.concatenate(parts, axis=0) if parts else np.zeros((0, 0), np.float32)

    def embed(self, name: str, batch: ArrayBatch) -> np.ndarray:
        """Raw (not normalised) pooled features, shape (N, embedding_dim), float32."""
        return self._run(name, batch, "embedding")

    def logits(self, name: str, batch: ArrayBatch) -> np.ndarray:
        """ImageNet logits, shape (N, 1000); used by tests and diagnostics."""
        return self._run(name, batch, "logits")
