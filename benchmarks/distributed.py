"""Training throughput of 1 vs 2 DDP processes on this machine, the per-step all-reduce cost, and the
multi-node command on loopback.

    python benchmarks/distributed.py [--limit 4096] [--epochs 1] [--workdir DIR]

Through the real CLI: ``edgeres train resnet20 --limit N --epochs E --nproc P`` for P = 1 and 2 (the same
global batch of 128, the same seed), images per second = training images x epochs / the manifest's
``train_seconds`` (which includes one val pass of ``--eval-limit`` images per epoch). Then the gloo
all-reduce of one step's gradients (ResNet-20's, fp32, one flat buffer: what DDP's buckets add up to),
median of 50, in 2 processes under torchrun; and ``torchrun --nnodes 1 --rdzv-backend c10d
--rdzv-endpoint localhost:PORT`` running the same train command, as each node of a cluster would.
On a 2-core machine 2 processes share the cores that 1 process already uses: this is no scaling figure.
JSON to benchmarks/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARGS = ("train", "resnet20", "--batch-size", "128", "--lr", "0.05", "--eval-limit", "200", "--seed", "0")


def _train(workspace: Path, limit: int, epochs: int, launcher: list[str], extra: list[str] = ()) -> dict:
    env = {**os.environ, "EDGERES_WORKSPACE": str(workspace), "COLUMNS": "200"}
    started = time.perf_counter()
    proc = subprocess.run([*launcher, *ARGS, "--limit", str(limit), "--epochs", str(epochs), *extra], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(launcher)} failed:\n{proc.stderr[-3000:]}")
    from edgeres.workspace import Workspace

    (artifact,) = Workspace(workspace).artifacts("train")
    m = artifact.manifest["metrics"]
    return {"processes": m["processes"], "train_images": m["train_images"], "epochs": epochs,
            "train_seconds": m["train_seconds"], "wall_seconds": round(wall, 1),
            "images_per_second": round(m["train_images"] * epochs / m["train_seconds"], 1),
            "final_loss": round(m["history"][-1]["loss"], 4), "test_top1": m["test"]["top1"],
            "test_n": m["test"]["n"]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def allreduce_worker(out: str) -> None:
    """Under torchrun: time the all-reduce of one step's gradients of ResNet-20 (gloo, fp32)."""
    import torch
    import torch.distributed as dist

    from edgeres import distributed, models

    distributed.join()
    params = sum(p.numel() for p in models.build("resnet20", 10, 1).parameters())
    grads = torch.randn(params)
    for _ in range(5):
        dist.all_reduce(grads)
    times = []
    for _ in range(50):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(grads)
        times.append((time.perf_counter() - start) * 1000)
    if distributed.is_main():
        Path(out).write_text(json.dumps({"parameters": params, "bytes": params * 4, "backend": dist.get_backend(),
                                         "median_ms": round(statistics.median(times), 3),
                                         "p90_ms": round(sorted(times)[44], 3), "repeats": 50}))
    dist.destroy_process_group()


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import torch

    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--allreduce-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker:
        return allreduce_worker(args.allreduce_worker)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="edgeres-ddp-bench-"))
    result = {"machine": machine(), "model": "resnet20", "data": "fashion-mnist (real), seeded holdout subset",
              "input_size": "1x28x28", "global_batch": 128, "limit": args.limit, "epochs": args.epochs,
              "threads": "cores / processes per process (2 threads for 1 process, 1 each for 2)"}
    edgeres = [sys.executable, "-m", "edgeres"]
    runs = {}
    for nproc in (1, 2):
        print(f"training with {nproc} process(es) ...", file=sys.stderr)
        runs[nproc] = _train(work / f"nproc{nproc}", args.limit, args.epochs, edgeres, ["--nproc", str(nproc)])
    result["train"] = runs
    result["throughput_ratio_2_vs_1"] = round(runs[2]["images_per_second"] / runs[1]["images_per_second"], 3)
    print("all-reduce ...", file=sys.stderr)
    out = work / "allreduce.json"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    str(Path(__file__).resolve()), "--allreduce-worker", str(out)], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    allreduce = json.loads(out.read_text())
    steps = -(-runs[2]["train_images"] // 128)
    step_ms = runs[2]["train_seconds"] * 1000 / (steps * args.epochs)
    result["allreduce"] = {**allreduce, "train_step_ms_2_processes": round(step_ms, 1),
                           "share_of_a_step": round(allreduce["median_ms"] / step_ms, 4)}
    print("multi-node command on loopback ...", file=sys.stderr)
    port = _free_port()
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "edgeres-bench",
                "-m", "edgeres"]
    loop = _train(work / "multinode", 512, 1, launcher)
    result["multinode_loopback"] = {"command": "torchrun --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d "
                                               f"--rdzv-endpoint localhost:{port} --rdzv-id edgeres-bench -m edgeres "
                                               + " ".join(ARGS) + " --limit 512 --epochs 1",
                                    "ok": True, "processes": loop["processes"], "test_top1": loop["test_top1"]}
    load = result["machine"]["load_average_at_start"][0]
    if load > (os.cpu_count() or 1):
        result["note"] = (f"measured while other jobs loaded this machine (load average {load} on "
                          f"{os.cpu_count()} cores at the start): the throughputs say how the contended cores were "
                          "shared, not how DDP scales")
    path = HERE / "results" / "distributed.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
