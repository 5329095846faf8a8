"""The ``bench`` step: every exported variant of one model on one device, beside the FP32 baseline.

The variants are the newest export artifact per (format, precision) of one lineage: exports whose
``parent`` links lead to the same FP32 ``train``/``prune`` artifact (int8 files through their
``quantize`` artifact); ``BenchRequest.exports`` names exactly which instead (a recipe's own run). A
profile's ``torch.precisions`` adds the PyTorch model itself on the device (the ``gpu`` profile: fp32
and fp16 on CUDA). Each is measured on the device by its backend (``edgeres.backends``: here, or over
ssh) with the runner's method on the same real test images, preprocessed as the model was trained.
The baseline is that FP32 network, BatchNorm folded as in the exported files, in PyTorch on this
machine's CPU or CUDA GPU (``--baseline``; ``edgeres.baseline``), measured the same way in a process of
its own. Latency is taken in ``ROUNDS`` rounds of fresh processes, rows in turn.

Each row gets its numbers by one of three modes (``edgeres.bench.modes``: measured, emulated, estimated).
Every latency says what it is (``latency_kind``): ``p50_ms`` and its kin hold measurements only. Rows that
cannot be measured are estimated when asked (``--estimate``) or when the device cannot be used now, with
the estimate in ``estimated_p50_ms``, priced on the unit that really runs the file (``Estimate.unit_for``).
Rows run on an emulation of the device (qemu-user for aarch64 boards; Qualcomm's HTP emulator on x86) are
``emulated``: their top-1 is the device's, beside this host's run of the same file and the estimate; the
emulator's own speed is kept apart (``emulated_p50_ms``) and never stands as the device's latency.
Emulation evaluates a capped, stated number of images unless ``--eval-limit`` asks for more.

Each row has two ratios, each saying one thing: ``speedup`` (baseline p50 / row p50, both measured on
this machine) and ``speedup_vs_fp32`` (the same runtime's fp32 file / this row, same device). A row
measured on another machine (ssh) gets ``speedup_cross_machine`` instead of ``speedup``; estimated and
emulated rows get neither. A variant that fails is marked failed and the others go on. The plan and its
expected time are printed before anything runs. The result is a ``bench`` artifact with JSON, CSV,
Markdown and PNG reports (``edgeres.report``).
"""

from edgeres.bench.modes import expected_seconds
from edgeres.bench.plan import DEFAULT_EVAL_IMAGES, ROUNDS
from edgeres.bench.request import BenchRequest, BenchResult
from edgeres.bench.run import RESULTS_FORMAT, run_bench
from edgeres.bench.select import Variant, select_variants

__all__ = ["DEFAULT_EVAL_IMAGES", "RESULTS_FORMAT", "ROUNDS", "BenchRequest", "BenchResult", "Variant", "expected_seconds",
           "run_bench", "select_variants"]
