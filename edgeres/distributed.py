"""Data-parallel training across processes: PyTorch's DDP under ``torchrun``, nothing home-made.

``edgeres train ... --nproc N`` re-runs the same command under ``torchrun --standalone``;
the same command started by ``torchrun`` itself (one node or many) finds ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK`` in its environment and joins the process group: gloo on CPU, NCCL on CUDA (one GPU per
local rank). Rank 0 alone writes artifacts and checkpoints and prints status; the others stay quiet.
Torch is imported inside the functions: reading the rank costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any, Iterator

from edgeres.errors import EdgeresError

# torchrun's own switches that ``--nproc`` adds; the rest of the command line is passed on unchanged
_LAUNCHER = ("-m", "torch.distributed.run", "--standalone")


def rank() -> int:
    """This process's global rank (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """How many of them run on this machine (they share its cores)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def is_main() -> bool:
    """Whether this process writes artifacts and prints status: rank 0, or the only process."""
    return rank() == 0


def restarted() -> bool:
    """Whether torchrun restarted this worker after a failure (``--max-restarts``): it resumes, then."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def active() -> bool:
    """Whether a process group of more than one process is up."""
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def join() -> None:
    """Join the process group that torchrun's environment describes (once; no-op for a single process):
    NCCL with one GPU per local rank where CUDA is available, else gloo. Ranks other than 0 go quiet."""
    import torch
    import torch.distributed as dist

    if world_size() <= 1 or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:
        raise EdgeresError("WORLD_SIZE is set but MASTER_ADDR is not: not a torchrun environment",
                           hint="start it with torchrun, or with --nproc N")
    # torchrun's agent keeps one store across its restarts (--max-restarts), with the old workers' addresses
    # still in it: a restarted group that read them would connect to dead ports. Each attempt gets its own
    # key space, numbered by how many processes joined before (the same count on every node).
    store, rank_, size = next(dist.rendezvous("env://"))
    attempt = (store.add("edgeres/joined", 1) - 1) // size
    store = dist.PrefixStore(f"edgeres/attempt-{attempt}/", store)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl", store=store, rank=rank_, world_size=size)
    else:
        dist.init_process_group("gloo", store=store, rank=rank_, world_size=size)
    if not is_main():
        from edgeres.console import configure

        configure(quiet=True)


@contextlib.contextmanager
def joined() -> Iterator[None]:
    """A command's time in the process group: joined on entry; on success every rank meets at a barrier
    (the others wait there while rank 0 writes the artifact) and the group is torn down. On an error
    the process leaves at once: torchrun stops (or restarts) the others."""
    join()
    yield
    if active():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over every rank (the values themselves for one process)."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def sync_buffers(module: Any) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics, which each rank updates from its own
    shard), so that all evaluate, and keep, one model."""
    if not active():
        return
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (picklable; tensors travel on the CPU)."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not active():
        return [value]
    import torch.distributed as dist

    box: list[Any] = [None] * world_size()
    dist.all_gather_object(box, value)
    return box


def max_processes() -> tuple[int, str]:
    """How many processes this machine can usefully run, and what bounds it: one per GPU with CUDA, else
    one per core (more would only share the cores)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.device_count(), "GPUs"
    return os.cpu_count() or 1, "CPU cores"


def check_nproc(nproc: int) -> None:
    """``--nproc`` within [1, the machine's GPUs or cores], or one clear error."""
    most, what = max_processes()
    if not 1 <= nproc <= most:
        raise EdgeresError(f"--nproc {nproc}: this machine runs 1 to {most} training processes (one per "
                           f"{what[:-1]}; it has {most} {what})",
                           hint="for more processes, add machines: run the same command under "
                                "`torchrun --nnodes N --rdzv-endpoint HOST:PORT ...` on each (README)")


def launch(argv: list[str], nproc: int, *, max_restarts: int = 0) -> int:
    """Run ``edgeres ARGV`` in ``nproc`` processes under ``torchrun --standalone`` (this machine only) and
    return its exit status. ``argv`` is the command line without ``--nproc``."""
    check_nproc(nproc)
    if world_size() > 1:
        raise EdgeresError("--nproc inside torchrun: the processes are already torchrun's",
                           hint="leave out --nproc, or run the command without torchrun")
    command = [sys.executable, *_LAUNCHER, "--nproc-per-node", str(nproc), "--max-restarts", str(max_restarts),
               "-m", "edgeres", *argv]
    cores = max(1, (os.cpu_count() or 1) // nproc)  # set here, torchrun would say it chose 1
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(cores))}
    try:
        return subprocess.run(command, env=env).returncode
    except KeyboardInterrupt:
        return 130


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less its ``--nproc N`` / ``--nproc=N`` options."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out
