"""A cascade calibrator in a deployment: the screen graph, the generator and the embedder, wired
together in ten lines (docs/calibration.md, "Deploying a cascade").

    gancheck calibrate RUN --method cascade --export-onnx screen.onnx

writes ``screen.onnx`` (latent ``z`` in; ``keep_probability``, ``screen_scores`` and ``describe`` out) and
prints the modes' anchors, r0 and acceptance probabilities, which are also in the calibrator file
(``mode_vectors``, ``r0``, ``mode_acceptance``: :func:`cascade_constants`). ``generate`` maps latents
to images as the audit saw them and ``describe`` images to ``(vectors, found)``, as the run's
embedder does (for dlib, ``gancheck export-embedder dlib`` gives its network as ONNX; its face
alignment runs before it). tests/test_cascade.py checks these decisions against gancheck's own.
"""

import numpy as np


def cascade_keep(z, u, screen, generate, describe, anchors, r0, p):
    """Whether to keep each candidate latent ``z`` (k, dim) given uniforms ``u`` (k,) in [0, 1)."""
    keep, _, doubt = screen.run(["keep_probability", "screen_scores", "describe"], {"z": np.asarray(z, np.float32)})
    if doubt.any():  # only the candidates the screen doubts are generated and described
        v, found = describe(generate(z[doubt]))
        v = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
        d = np.arccos(np.clip(v @ (anchors / np.linalg.norm(anchors, axis=1, keepdims=True)).T, -1, 1)) / np.pi
        near = (d <= r0) & np.asarray(found, bool)[:, None]  # an image without a face is near no mode
        keep[doubt] = np.where(near, p[None, :], 1.0).min(axis=1, initial=1.0)
    return u < keep


def cascade_constants(calibrator_path):
    """``(anchors, r0, p)`` from a cascade calibrator file (safetensors tensors and its JSON header)."""
    from safetensors.numpy import load_file
    from safetensors import safe_open
    import json

    tensors = load_file(calibrator_path)
    with safe_open(calibrator_path, "np") as f:
        header = json.loads(f.metadata()["gancheck"])
    return tensors["mode_vectors"], float(header["r0"]), tensors["mode_acceptance"]
