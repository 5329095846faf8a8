"""``edgeres diagnose``: which layer lost the accuracy, in which file, and what fixes it; which operator
takes the time; what runs in float. One module per concern: ``points`` (where the formats are compared),
``taps_onnx`` / ``taps_openvino`` / ``taps_tflite`` (their tensors there), ``metrics``, ``culprit``
(blame and keep-float trials), ``fallback`` (compute left in float), ``oplatency`` (profilers), ``plot``,
``step`` (the whole step)."""
