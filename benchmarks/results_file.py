"""The one way a benchmark script saves its raw output: benchmarks/results/NAME.json, stamped with the
machine, the package versions, the command and the date, next to the script's own fields (model, data,
input size, threads)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

from edgeres.runtimes import runner

RESULTS = Path(__file__).parent / "results"
PACKAGES = ("torch", "nncf", "onnxruntime", "openvino", "ai-edge-litert", "tensorflow")


def machine() -> dict:
    """CPU model, cores, memory and the CPU features that decide int8 and bf16 speed."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "asimddp", "i8mm")
    return {"cpu": runner.cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
            "memory_gib": round(memory, 1), "features": sorted(f for f in wanted if f in flags),
            "load_average_at_end": os.getloadavg()}


def write(name: str, payload: dict) -> Path:
    """Save ``payload`` (which names its model, data, input size and threads) as results/NAME.json."""
    doc = {"benchmark": name, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "versions": runner.installed_versions(PACKAGES), **payload}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return path
