"""``edgeres tune``: the fastest variant of a model that keeps the accuracy, measured on the device.

The search runs over pruning ratios, int8 (PTQ, QAT where asked), export targets and precisions, through
the very steps the other commands run (``prune``, ``quantize``, ``export``, ``bench``), each result an
artifact found again by its configuration, so a stopped search resumes where it stopped. Files:
``space`` (the request and its candidates), ``evaluate`` (making and measuring one candidate), ``pareto``
(the front, the choice and why the others lost), ``report`` (table, JSON, plot) and ``step`` (the search).
"""

from edgeres.tune.space import TuneRequest
from edgeres.tune.step import TuneResult, run_tune

__all__ = ["TuneRequest", "TuneResult", "run_tune"]
