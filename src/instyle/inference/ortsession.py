"""How instyle opens an ONNX graph in ONNX Runtime, importable without torch.

The ``onnxruntime`` backend and the torch-free fast start (``instyle.inference.faststart``) both
open the cached graph here, with the same options, so a fast-start file is byte-for-byte the one
the torch path writes (ONNX Runtime's CPU kernels are deterministic for a fixed thread count).
"""

from __future__ import annotations

from typing import Any


def open_session(data: bytes, threads: int) -> Any:
    """An ``InferenceSession`` on the CPU provider with every graph optimisation and ``threads``
    intra-op threads; raises ImportError without the ``export`` extra."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
