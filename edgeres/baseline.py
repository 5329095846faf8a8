"""The full-precision baseline every benchmark row is compared with: the FP32 PyTorch model.

It runs on this machine's CUDA GPU when torch sees one, else on its CPU, and is labelled so
(``torch fp32 (cuda)`` / ``torch fp32 (cpu)``). It is measured with the very method the device
runner applies to exported files (``edgeres.runtimes.runner``: warm-up, timed batch-1 runs until a
minimum count and time, p50/p90/p99, throughput, top-1 on the same evaluation images), through a
torch ``Session``, so that the two are comparable. It runs inside the benchmarking process, whose
peak memory is not the model's own: ``peak_rss_mb`` is left out.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeres.runtimes import runner
from edgeres.runtimes.base import Session


def device() -> str:
    """Where the baseline runs: ``cuda`` when available, else ``cpu``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def label(where: str) -> str:
    return f"torch fp32 ({where})"


class TorchSession(Session):
    """A torch module behind the runtime ``Session`` interface (NCHW float32 in, float32 logits out)."""

    runtime = "torch"

    def __init__(self, model: nn.Module, where: str):
        self.device = where
        self._model = model.to(where).eval()

    @torch.inference_mode()
    def run(self, x: np.ndarray) -> np.ndarray:
        # .cpu() waits for the GPU, so a timed call covers the whole inference
        return self._model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)).float().cpu().numpy()

    def info(self) -> dict[str, Any]:
        info = {**super().info(), "version": torch.__version__}
        if self.device == "cuda":
            info["gpu"] = torch.cuda.get_device_name()
        return info


def measure(model: nn.Module, x: np.ndarray, y: np.ndarray, method: dict[str, Any],
            threads: int | None = None) -> dict[str, Any]:
    """Measure ``model`` as the runner measures a variant; the same report shape (``host``, ``result``)."""
    where = device()
    method = {**runner.DEFAULT_METHOD, **method}
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    result: dict[str, Any] = {"name": label(where), "ok": False, "error": None}
    try:
        start = time.perf_counter()
        session = TorchSession(model, where)
        result["load_seconds"] = time.perf_counter() - start
        times = runner.time_latency(session, x, method)
        result["latency_ms"] = runner.latency_summary(times)
        batch = int(method["throughput_batch"] or 1)
        result["throughput_ips"], result["throughput_batch"] = runner.throughput(session, x, batch, method), batch
        logits, accuracy_batch = runner.all_logits(session, x)
        predictions = logits.argmax(axis=1)
        result.update(top1=float((predictions == y).mean() * 100), n=int(len(y)), predictions=predictions.tolist(),
                      info={**session.info(), "threads": threads, "accuracy_batch": accuracy_batch}, ok=True)
    except (RuntimeError, ValueError) as exc:  # torch reports device and shape faults as these
        result["error"] = f"{label(where)} failed: {(str(exc).strip().splitlines() or [''])[0][:300]}"
    return {"host": runner.host_info(), "result": result}
