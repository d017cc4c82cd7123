"""dlib's face networks as ONNX graphs, built from the user's own .dat files (no download).

- :func:`build_resnet_onnx`: dlib's ResNet face descriptor
  (``dlib_face_recognition_resnet_model_v1.dat``). Input ``chips``: float32 (N, 150, 150, 3), RGB,
  NHWC, pixel values 0..255 as dlib gets them from a ``matrix<rgb_pixel>`` chip (uint8 values cast
  to float; aligned as ``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` does). Output
  ``descriptor``: float32 (N, 128) raw descriptors (not normalised), what
  ``dlib.face_recognition_model_v1.compute_face_descriptor`` returns.
- :func:`build_mmod_onnx`: the layers of dlib's CNN face detector (``mmod_human_face_detector.dat``).
  Input ``pyramid``: float32 (N, 3, H, W), the tiled image pyramid that dlib's
  ``input_rgb_image_pyramid`` builds, already normalised ((pixel - avg) / 256; see
  ``embedders.dlib_cnn_detect``). Output ``scores``: float32 (N, 1, H', W'), the score map that
  ``loss_mmod`` decodes. The decode options travel with the graph (its metadata ``mmod_options``).

What the graphs reproduce from dlib (``dlib/dnn/layers.h``, ``input.h``, ``core.h``):

- input: ``(pixel - avg_channel) / 256`` per channel, with the averages stored in the file
  (122.782, 117.001, 104.298);
- ``con_``: cross-correlation (OIHW filters as stored), symmetric zero padding as stored in the file
  (dlib's default: size/2 for stride 1, 0 for strides > 1), floor output size
  ``1 + (in + 2*pad - size) / stride``;
- ``affine_``: per-channel ``gamma * x + beta`` (the detector's file stores ``bn_`` layers, converted as
  dlib converts them; the descriptor's stores ``affine_``); folded into the preceding convolution
  by default (``fold_affine=True``), or kept as Mul + Add;
- ``max_pool_`` / ``avg_pool_``: windows placed at ``out * stride - pad``, floor output size;
  ``avg_pool_everything`` is a global average; ``fc_no_bias`` is a MatMul;
- ``add_prev_``: dlib adds tensors of different sizes by zero-extending the smaller one at the
  bottom/right (``tt::add`` with bounds checks). This matters in the descriptor: in ``alevel1`` the
  strided 3x3 path of an 8x8 input is 3x3 while the 2x2 average-pooled skip path is 4x4, so the sum
  is 4x4 with the last row/column taken from the skip path alone. The graph pads explicitly.

Cache: :func:`cached_onnx` builds a graph on first use into ``$GANCHECK_CACHE_DIR`` (default
``~/.cache/gancheck``) under ``dlib_onnx/``, named by the source file's sha256 and
:data:`CONVERTER_VERSION`, written atomically; an entry that does not parse or whose recorded source
hash / converter version differs is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from embedders.dlib_dat import Layer, model_path, read_network
from gancheck.errors import GancheckError

#: Bump when the generated graphs change; part of the cache key.
CONVERTER_VERSION = 1
OPSET = 17
DESCRIPTOR_INPUT, DESCRIPTOR_OUTPUT = "chips", "descriptor"
DETECTOR_INPUT, DETECTOR_OUTPUT = "pyramid", "scores"
CHIP_SIZE = 150


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper, TensorProto
    except ImportError:
        raise GancheckError("building dlib's networks as ONNX needs the onnx package; run: pip install onnx") from None
    return onnx, helper, numpy_helper, TensorProto


class _Graph:
    """A small helper that accumulates ONNX nodes and initializers with unique names."""

    def __init__(self):
        _, self.helper, self.numpy_helper, _ = _onnx()
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, base: str, value) -> str:
        name = self.name(base)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str | None = None, output: str | None = None, **attrs) -> str:
        out = output or self.name(base or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out


def _out_size(n, k, s, p):
    return None if n is None else 1 + (n + 2 * p - k) // s


def _sequence(layers: list[Layer], g: _Graph, x: str, shape: tuple, fold_affine: bool) -> tuple[str, tuple]:
    """Emit the layers after the input (``layers`` excludes the input and loss layers).

    ``shape`` is (C, H, W) with None for dynamic sizes. Returns the final tensor and its shape."""
    tags: dict[int, tuple[str, tuple]] = {}
    i = 0
    while i < len(layers):
        layer, p = layers[i], layers[i].params
        if layer.kind == "tag":
            tags[p["id"]] = (x, shape)
        elif layer.kind in ("skip", "add_prev"):
            if p["tag"] not in tags:
                raise GancheckError(f"dlib network refers to tag{p['tag']} before defining it; the file is not a supported network")
            x, shape = tags[p["tag"]] if layer.kind == "skip" else _add_prev(g, x, shape, *tags[p["tag"]])
        elif layer.kind == "con":
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            fold = fold_affine and nxt is not None and nxt.kind == "affine" and not nxt.params["disabled"] and not p["relu"]
            x, shape = _conv(g, x, shape, p, nxt.params if fold else None)
            i += fold  # a folded affine layer is consumed here
        elif layer.kind in _EMITTERS:
            x, shape = _EMITTERS[layer.kind](g, x, shape, layer.kind, p)
        else:
            raise GancheckError(f"dlib layer {layer.kind!r} is not supported by the ONNX converter")
        i += 1
    return x, shape


def _conv(g: _Graph, x: str, shape: tuple, p: dict, affine: dict | None) -> tuple[str, tuple]:
    """A con_ layer, with the following affine layer's scale and shift folded into it when given."""
    wts = p["filters"].astype(np.float32)
    bias = p["bias"].astype(np.float32) if p["bias"] is not None else np.zeros(len(wts), np.float32)
    if affine is not None:
        gamma = affine["gamma"].reshape(-1).astype(np.float32)
        beta = affine["beta"].reshape(-1).astype(np.float32)
        wts = (wts * gamma[:, None, None, None]).astype(np.float32)
        bias = (bias * gamma + beta).astype(np.float32)
    x = g.op("Conv", [x, g.const("W", wts), g.const("B", bias)], base="conv",
             kernel_shape=[p["nr"], p["nc"]], strides=[p["stride_y"], p["stride_x"]],
             pads=[p["padding_y"], p["padding_x"], p["padding_y"], p["padding_x"]])
    _, h, w = shape
    shape = (p["num_filters"], _out_size(h, p["nr"], p["stride_y"], p["padding_y"]), _out_size(w, p["nc"], p["stride_x"], p["padding_x"]))
    return (g.op("Relu", [x]) if p["relu"] else x), shape


def _affine(g: _Graph, x: str, shape: tuple, kind: str, p: dict) -> tuple[str, tuple]:
    if p["disabled"]:
        return x, shape
    if p["mode"] != 0:
        raise GancheckError("dlib network has an affine layer in fc mode after a convolution; not supported")
    k = p["gamma"].size
    x = g.op("Mul", [x, g.const("gamma", p["gamma"].reshape(1, k, 1, 1).astype(np.float32))])
    return g.op("Add", [x, g.const("beta", p["beta"].reshape(1, k, 1, 1).astype(np.float32))]), shape


def _relu(g: _Graph, x: str, shape: tuple, kind: str, p: dict) -> tuple[str, tuple]:
    return (x if p["disabled"] else g.op("Relu", [x])), shape


def _pool(g: _Graph, x: str, shape: tuple, kind: str, p: dict) -> tuple[str, tuple]:
    c, h, w = shape
    if p["nr"] == 0 and p["nc"] == 0:
        return g.op("GlobalMaxPool" if kind == "max_pool" else "GlobalAveragePool", [x]), (c, 1, 1)
    attrs = dict(kernel_shape=[p["nr"], p["nc"]], strides=[p["stride_y"], p["stride_x"]],
                 pads=[p["padding_y"], p["padding_x"], p["padding_y"], p["padding_x"]])
    if kind == "avg_pool":
        attrs["count_include_pad"] = 0  # dlib averages the clipped window
    x = g.op("MaxPool" if kind == "max_pool" else "AveragePool", [x], **attrs)
    return x, (c, _out_size(h, p["nr"], p["stride_y"], p["padding_y"]), _out_size(w, p["nc"], p["stride_x"], p["padding_x"]))


def _add_prev(g: _Graph, x: str, shape: tuple, y: str, yshape: tuple) -> tuple[str, tuple]:
    """A residual addition; dlib's tt::add zero-extends the smaller tensor at the far end of each dimension."""
    if None in shape or None in yshape:
        if shape != yshape:
            raise GancheckError("residual additions on dynamic sizes are not supported")
        out = shape
    else:
        out = tuple(max(a, b) for a, b in zip(shape, yshape))
    operands = []
    for t, s in ((x, shape), (y, yshape)):
        if s != out:
            pads = [0, 0, 0, 0, 0, out[0] - s[0], out[1] - s[1], out[2] - s[2]]
            t = g.op("Pad", [t, g.const("pads", np.array(pads, np.int64))], mode="constant")
        operands.append(t)
    return g.op("Add", operands, base="res"), out


def _fc(g: _Graph, x: str, shape: tuple, kind: str, p: dict) -> tuple[str, tuple]:
    x = g.op("Flatten", [x], axis=1)
    x = g.op("MatMul", [x, g.const("fc_W", p["weights"].astype(np.float32))])
    if p["bias"] is not None:
        x = g.op("Add", [x, g.const("fc_b", p["bias"].astype(np.float32))])
    return x, (p["num_outputs"],)


_EMITTERS = {"affine": _affine, "relu": _relu, "max_pool": _pool, "avg_pool": _pool, "fc": _fc}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _finish(g: _Graph, name: str, inp, out, meta: dict):
    onnx, helper, _, _ = _onnx()
    graph = helper.make_graph(g.nodes, name, [inp], [out], initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="gancheck.embedders.dlib_onnx", producer_version=str(CONVERTER_VERSION))
    model.ir_version = min(model.ir_version, 8)  # readable by onnxruntime >= 1.14
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(model)
    return model


def _input_normalisation(g: _Graph, x: str, inp: Layer) -> str:
    avg = np.array([inp.params["avg_red"], inp.params["avg_green"], inp.params["avg_blue"]], np.float32)
    x = g.op("Sub", [x, g.const("avg_rgb", avg.reshape(1, 3, 1, 1))])
    return g.op("Mul", [x, g.const("inv256", np.array(1 / 256, np.float32))])  # exact: a power of two


def build_resnet_onnx(dat_path=None, fold_affine: bool = True, layers: list[Layer] | None = None):
    """ONNX graph of dlib's ResNet descriptor: (N, 150, 150, 3) RGB 0..255 -> (N, 128) raw descriptors."""
    _, helper, _, TensorProto = _onnx()
    dat_path = Path(dat_path) if dat_path else model_path("resnet")
    layers = layers or read_network(dat_path, "resnet")
    inp = layers[0]
    size = inp.params["nr"]
    g = _Graph()
    x = g.op("Transpose", [DESCRIPTOR_INPUT], perm=[0, 3, 1, 2], base="nchw")
    x = _input_normalisation(g, x, inp)
    x, shape = _sequence(layers[1:-1], g, x, (3, size, size), fold_affine)
    g.op("Identity", [x], output=DESCRIPTOR_OUTPUT)
    meta = dict(source_file=Path(dat_path).name, source_sha256=_sha256(dat_path), converter_version=CONVERTER_VERSION,
                kind="resnet", fold_affine=int(fold_affine),
                input_layout="NHWC RGB float32 0..255, 150x150 dlib face chips",
                output="raw 128-D dlib face descriptors (not normalised)")
    return _finish(g, "dlib_face_recognition_resnet_model_v1",
                   helper.make_tensor_value_info(DESCRIPTOR_INPUT, TensorProto.FLOAT, ["N", size, size, 3]),
                   helper.make_tensor_value_info(DESCRIPTOR_OUTPUT, TensorProto.FLOAT, ["N", shape[0]]), meta)


def output_to_input_map(layers: list[Layer]) -> dict:
    """dlib's ``output_tensor_to_input_tensor`` for a plain conv/pool chain: x_in = ax * x_out + bx."""
    ax, bx, ay, by = 1.0, 0.0, 1.0, 0.0
    for layer in reversed(layers):
        p = layer.params
        if layer.kind in ("con", "max_pool", "avg_pool"):
            # map_output_to_input: p * stride - padding + size/2 (integer size/2), applied output-first.
            bx = bx * p["stride_x"] - p["padding_x"] + p["nc"] // 2
            by = by * p["stride_y"] - p["padding_y"] + p["nr"] // 2
            ax *= p["stride_x"]
            ay *= p["stride_y"]
        elif layer.kind in ("tag", "skip", "add_prev"):
            raise GancheckError("detector networks with residual branches are not supported")
    return dict(ax=ax, bx=bx, ay=ay, by=by)


def build_mmod_onnx(dat_path=None, fold_affine: bool = True, layers: list[Layer] | None = None):
    """ONNX graph of dlib's CNN face detector layers, and the options needed to decode its score map.

    Returns ``(model, options)``; ``options`` holds loss_mmod's options (detector windows, NMS
    overlap thresholds, ...), the input layer's averages and pyramid settings and the
    score-map-to-pyramid coordinate map; it is also stored in the model's metadata."""
    _, helper, _, TensorProto = _onnx()
    dat_path = Path(dat_path) if dat_path else model_path("mmod")
    layers = layers or read_network(dat_path, "mmod")
    inp, loss = layers[0], layers[-1]
    body = layers[1:-1]
    g = _Graph()
    x, shape = _sequence(body, g, DETECTOR_INPUT, (3, None, None), fold_affine)
    if shape[0] != len(loss.params["detector_windows"]):
        raise GancheckError(f"{dat_path}: the detector has {shape[0]} output channels for "
                            f"{len(loss.params['detector_windows'])} detector windows; not a supported network")
    g.op("Identity", [x], output=DETECTOR_OUTPUT)
    options = dict(loss.params)
    options.update(avg_rgb=[inp.params["avg_red"], inp.params["avg_green"], inp.params["avg_blue"]],
                   pyramid_down=inp.params["pyramid"], pyramid_padding=inp.params["pyramid_padding"],
                   pyramid_outer_padding=inp.params["pyramid_outer_padding"], output_to_input=output_to_input_map(body))
    meta = dict(source_file=Path(dat_path).name, source_sha256=_sha256(dat_path), converter_version=CONVERTER_VERSION,
                kind="mmod", fold_affine=int(fold_affine), mmod_options=json.dumps(options),
                input_layout="NCHW float32 tiled image pyramid, (pixel - avg) / 256", output="score map (N, 1, H', W')")
    model = _finish(g, "mmod_human_face_detector",
                    helper.make_tensor_value_info(DETECTOR_INPUT, TensorProto.FLOAT, ["N", 3, "H", "W"]),
                    helper.make_tensor_value_info(DETECTOR_OUTPUT, TensorProto.FLOAT, ["N", shape[0], "Hs", "Ws"]), meta)
    return model, options


BUILDERS = {"resnet": build_resnet_onnx, "mmod": lambda p: build_mmod_onnx(p)[0]}


def metadata(model) -> dict:
    return {p.key: p.value for p in model.metadata_props}


def detector_options(model_or_path) -> dict:
    """The mmod decode options stored in a detector graph built by :func:`build_mmod_onnx`."""
    onnx = _onnx()[0]
    model = model_or_path if hasattr(model_or_path, "metadata_props") else onnx.load(str(model_or_path))
    meta = metadata(model)
    if meta.get("kind") != "mmod" or "mmod_options" not in meta:
        raise GancheckError(f"{model_or_path} is not a dlib detector graph built by gancheck; rebuild it with cached_onnx(..., 'mmod')")
    return json.loads(meta["mmod_options"])


def cache_dir() -> Path:
    """gancheck's cache directory: ``$GANCHECK_CACHE_DIR``, default ``~/.cache/gancheck``."""
    env = os.environ.get("GANCHECK_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gancheck"


def _atomic_write(model, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _cache_entry_valid(path: Path, sha: str, kind: str) -> bool:
    onnx = _onnx()[0]
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception:
        return False
    meta = metadata(model)
    return (meta.get("source_sha256") == sha and meta.get("kind") == kind
            and meta.get("converter_version") == str(CONVERTER_VERSION))


def cached_onnx(dat_path=None, kind: str = "resnet") -> Path:
    """Path of the ONNX graph for ``dat_path`` (default: the installed face-recognition-models
    file for ``kind``), built into the cache on first use and rebuilt whenever the cache entry does
    not parse or was built from another file or converter version."""
    if kind not in BUILDERS:
        raise GancheckError(f"unknown dlib network kind {kind!r}; choose resnet or mmod")
    dat_path = Path(dat_path) if dat_path else model_path(kind)
    try:
        sha = _sha256(dat_path)
    except OSError as exc:
        raise GancheckError(f"cannot read {dat_path}: {exc.strerror or exc}; pass an existing dlib .dat file") from None
    out = cache_dir() / "dlib_onnx" / f"dlib_{kind}_{sha}_c{CONVERTER_VERSION}.onnx"
    if out.is_file() and _cache_entry_valid(out, sha, kind):
        return out
    model = BUILDERS[kind](dat_path)
    try:
        _atomic_write(model, out)
    except OSError as exc:
        raise GancheckError(f"cannot write the ONNX cache entry {out}: {exc.strerror or exc}; "
                            "set GANCHECK_CACHE_DIR to a writable folder") from None
    return out


def export_descriptor(out, dat_path=None, fold_affine: bool = True) -> Path:
    """Write dlib's descriptor graph to ``out`` (for ``gancheck export-embedder dlib --out FILE``)."""
    out = Path(out)
    model = build_resnet_onnx(dat_path, fold_affine=fold_affine)
    try:
        _atomic_write(model, out)
    except OSError as exc:
        raise GancheckError(f"cannot write {out}: {exc.strerror or exc}; choose a writable --out path") from None
    return out


def open_session(path, threads: int | None = None, device: str = "cpu"):
    """An onnxruntime session for a graph built here (all graph optimisations, ``threads`` intra-op).

    ``device``: ``cpu``, ``cuda`` (CUDA execution provider, a clear error without onnxruntime-gpu and
    a GPU) or ``auto`` (CUDA when present); :func:`gancheck.onnx_runtime.providers_for` decides."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise GancheckError("running dlib's networks as ONNX needs onnxruntime; run: pip install onnxruntime") from None
    from gancheck.onnx_runtime import providers_for
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads) if threads else len(os.sched_getaffinity(0))
    opts.inter_op_num_threads = 1
    # Spinning worker threads only burn CPU that the generator or other workers could use
    # (measured: same throughput on 2 idle cores, up to 2x the CPU time per chip under load).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers_for(device))


class OnnxDescriptor:
    """dlib's face descriptor through onnxruntime: ``describe_chips(uint8 (N,150,150,3)) -> (N,128)``."""

    def __init__(self, dat_path=None, threads: int | None = None, batch: int = 64, device: str = "cpu"):
        self.path = cached_onnx(dat_path, "resnet")
        self.session = open_session(self.path, threads, device)
        self.batch = batch

    def describe_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise GancheckError(f"dlib's embedder takes 150x150 RGB chips (N, 150, 150, 3), got shape {chips.shape}")
        out = [self.session.run(None, {DESCRIPTOR_INPUT: chips[i : i + self.batch].astype(np.float32)})[0]
               for i in range(0, len(chips), self.batch)]
        return np.concatenate(out) if out else np.zeros((0, 128), np.float32)
