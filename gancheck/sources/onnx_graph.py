"""Writing the small ONNX graphs that gancheck builds itself (the planted-collapse demo generator,
the simulated generators and descriptors of known truth): one place for the model's boilerplate.
Needs the ``onnx`` package (test extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_graph(path: str | Path, name: str, nodes: list, inputs: dict[str, list], outputs: dict[str, list],
               initializers: dict[str, np.ndarray], opset: int, producer: str) -> Path:
    """Write the graph ``nodes`` (float tensors ``inputs`` and ``outputs``, name -> shape; constant
    ``initializers``, name -> array, in file order) as a checked ONNX model at ``path``; returns it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def values(specs):
        return [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in specs.items()]

    graph = helper.make_graph(nodes, name, values(inputs), values(outputs),
                              [numpy_helper.from_array(array, n) for n, array in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
