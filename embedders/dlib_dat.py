"""Reader for dlib's own serialization of DNN networks (``dlib::serialize(net)`` .dat files).

Supports the two networks shipped in PyPI ``face-recognition-models``:

- ``dlib_face_recognition_resnet_model_v1.dat``: the 128-D face descriptor (``anet_type`` of
  dlib's ``dnn_face_recognition_ex.cpp`` / ``tools/python/src/face_recognition.cpp``);
- ``mmod_human_face_detector.dat``: the CNN face detector (``net_type`` of
  ``dnn_mmod_face_detection_ex.cpp`` / ``tools/python/src/cnn_face_detector.cpp``).

The file format (dlib 19.x/20.x, ``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``,
``input.h``, ``loss.h``, ``dlib/cuda/tensor.h``):

- integers are "packed": one control byte (bit 7: negative; low 4 bits: byte count 1..8) followed by
  that many little-endian magnitude bytes; ``bool`` is the character ``'0'`` / ``'1'``;
  ``unsigned char`` / ``uint8_t`` is one raw byte; a ``std::string`` is a packed length + bytes;
- ``float`` / ``double`` are ``float_details``: packed int64 mantissa and packed int16 exponent,
  value ``mantissa * 2**exponent`` (exponents 32000/32001/32002 are +inf/-inf/NaN);
- a ``resizable_tensor`` is packed version 2, then num_samples, k, nr, nc as packed ints, then the
  values as raw little-endian float32; an ``alias_tensor`` is version 1 and the four dimensions only;
- ``add_loss_layer``: version 1, the loss details, the subnetwork. ``add_layer``: version 2 (or 1),
  the subnetwork, the layer details, three bools and the x_grad / cached_output (/ params_grad)
  tensors. The ``add_layer`` that sits directly on the input layer: version 3 (or 2), the input
  layer, the details, three bools, x_grad, cached_output, grad_final and (version 3) the
  sample_expansion_factor. ``add_tag_layer`` / ``add_skip_layer``: version 1 and the subnetwork --
  their tag ids are *not* stored, which is why the expected architecture drives the parse.

So a file lists the wrapper versions from the output layer inwards, then the input layer, then the
layer details from the input outwards. :func:`read_network` walks an architecture template (the
C++ type, written out as a list of layers from the output inwards) against that stream, checks
every stored layer against it and returns a plain list of :class:`Layer` from input to output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MMOD_FILE = "mmod_human_face_detector.dat"
INSTALL_HINT = "pip install --force-reinstall face-recognition-models"


class _Truncated(Exception):
    pass


class _Mismatch(Exception):
    """The stream is a dlib network but not the expected one (or not dlib's format at all)."""


@dataclass
class Layer:
    """One layer of a parsed network. ``kind`` is dlib's layer name without the trailing ``_``:

    input_rgb_image_sized, input_rgb_image_pyramid, con, fc, affine, relu, max_pool, avg_pool,
    add_prev, tag, skip, loss_metric, loss_mmod. ``params`` holds the hyper-parameters and numpy
    float32 arrays (con: ``filters`` (O, I, kh, kw) and ``bias`` (O,) or None; fc: ``weights``
    (inputs, outputs) and ``bias``; affine: ``gamma`` and ``beta`` of shape (k,) in conv mode).
    """

    kind: str
    params: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        shown = {k: (f"array{v.shape}" if isinstance(v, np.ndarray) else v) for k, v in self.params.items()}
        return f"Layer({self.kind}, {shown})"


# --------------------------------------------------------------------------------------------
# Architecture templates: the C++ network types written out from the output layer inwards.


def _con(n, nr, nc, sy, sx):
    # dlib's default padding: stride 1 -> size/2 ("same" for odd sizes), otherwise 0.
    return ("con", dict(num_filters=n, nr=nr, nc=nc, stride_y=sy, stride_x=sx,
                        padding_y=nr // 2 if sy == 1 else 0, padding_x=nc // 2 if sx == 1 else 0))


def _pool(kind, nr, nc, sy, sx):
    return (kind, dict(nr=nr, nc=nc, stride_y=sy, stride_x=sx,
                       padding_y=nr // 2 if sy == 1 else 0, padding_x=nc // 2 if sx == 1 else 0))


_AFFINE, _RELU = ("affine", {}), ("relu", {})


def _block(n, stride):  # BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [_AFFINE, _con(n, 3, 3, 1, 1), _RELU, _AFFINE, _con(n, 3, 3, stride, stride)]


def _ares(n):  # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [_RELU, ("add_prev", {"tag": 1})] + _block(n, 1) + [("tag", {"id": 1})]


def _ares_down(n):  # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return ([_RELU, ("add_prev", {"tag": 2}), _pool("avg_pool", 2, 2, 2, 2), ("skip", {"tag": 1}), ("tag", {"id": 2})]
            + _block(n, 2) + [("tag", {"id": 1})])


def resnet_template() -> list:
    """``anet_type`` of dlib's face recognition example, output layer first, input layer last."""
    levels = (
        _ares_down(256)                                          # alevel0
        + _ares(256) + _ares(256) + _ares_down(256)              # alevel1
        + _ares(128) + _ares(128) + _ares_down(128)              # alevel2
        + _ares(64) + _ares(64) + _ares(64) + _ares_down(64)     # alevel3
        + _ares(32) + _ares(32) + _ares(32)                      # alevel4
    )
    return ([("loss_metric", {}), ("fc", {"num_outputs": 128, "bias_mode": 1}), _pool("avg_pool", 0, 0, 1, 1)]
            + levels
            + [_pool("max_pool", 3, 3, 2, 2), _RELU, _AFFINE, _con(32, 7, 7, 2, 2),
               ("input_rgb_image_sized", {"nr": 150, "nc": 150})])


def mmod_template() -> list:
    """``net_type`` of dlib's CNN face detector example, output layer first, input layer last."""
    def rcon5(n):
        return [_RELU, _AFFINE, _con(n, 5, 5, 1, 1)]

    def con5d(n):
        return [_RELU, _AFFINE, _con(n, 5, 5, 2, 2)]

    return ([("loss_mmod", {}), _con(1, 9, 9, 1, 1)] + rcon5(45) + rcon5(45) + rcon5(45)
            + con5d(32) + con5d(32) + con5d(16) + [("input_rgb_image_pyramid", {"pyramid": 6})])


TEMPLATES = {"resnet": resnet_template, "mmod": mmod_template}
KIND_FILES = {"resnet": RESNET_FILE, "mmod": MMOD_FILE}
KIND_WHAT = {"resnet": "dlib's ResNet face descriptor", "mmod": "dlib's CNN (MMOD) face detector"}


# --------------------------------------------------------------------------------------------
# Primitive readers.


class _Stream:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise _Truncated()
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self, signed: bool = True, max_bytes: int = 8) -> int:
        ctrl = self.byte()
        size = ctrl & (0x0F if signed else 0x8F)
        if size == 0 or size > max_bytes:
            raise _Mismatch(f"bad integer control byte 0x{ctrl:02x} at offset {self.pos - 1}")
        value = int.from_bytes(self.take(size), "little")
        return -value if signed and ctrl & 0x80 else value

    def uint(self) -> int:
        return self.int(signed=False)

    def bool(self) -> bool:
        ch = self.byte()
        if ch not in (0x30, 0x31):
            raise _Mismatch(f"bad bool byte 0x{ch:02x} at offset {self.pos - 1}")
        return ch == 0x31

    def float(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise _Mismatch(f"old ASCII float encoding at offset {self.pos} (not supported)")
        mantissa = self.int(max_bytes=8)
        exponent = self.int(max_bytes=2)
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def string(self, max_len: int = 256) -> str:
        n = self.uint()
        if n > max_len:
            raise _Mismatch(f"implausible string length {n} at offset {self.pos}")
        raw = self.take(n)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _Mismatch(f"non-text layer name at offset {self.pos - n}") from None

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise _Mismatch(f"unexpected resizable_tensor version {version} at offset {self.pos}")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0 or math.prod(shape) > 1 << 28:
            raise _Mismatch(f"implausible tensor shape {shape}")
        raw = self.take(4 * math.prod(shape))
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self) -> tuple:
        version = self.int()
        if version != 1:
            raise _Mismatch(f"unexpected alias_tensor version {version} at offset {self.pos}")
        return tuple(self.int() for _ in range(4))


# --------------------------------------------------------------------------------------------
# Layer detail readers. Each checks what dlib's own deserialize() checks for the C++ type.


def _expect(cond: bool, msg: str) -> None:
    if not cond:
        raise _Mismatch(msg)


def _read_con(s: _Stream, want: dict) -> dict:
    name = s.string()
    _expect(name in ("con_4", "con_5", "con_6"), f"expected a con_ layer, found {name!r}")
    params = s.tensor().reshape(-1)
    num_filters = s.int()
    nr, nc, sy, sx, py, px = (s.int() for _ in range(6))
    filt = s.alias()
    bias_shape = s.alias()
    for _ in range(4):
        s.float()  # learning-rate / weight-decay multipliers
    use_bias = s.bool() if name in ("con_5", "con_6") else True
    use_relu = s.bool() if name == "con_6" else False
    got = dict(num_filters=num_filters, nr=nr, nc=nc, stride_y=sy, stride_x=sx, padding_y=py, padding_x=px)
    _expect(got == want, f"expected con {want}, found {got}")
    _expect(filt[0] == num_filters and filt[2:] == (nr, nc), f"con filter shape {filt} does not match")
    n_filt = math.prod(filt)
    _expect(params.size == n_filt + (num_filters if use_bias else 0), "con parameter count does not match its shape")
    filters = params[:n_filt].reshape(filt).copy()
    bias = params[n_filt:].copy() if use_bias else None
    if use_bias:
        _expect(math.prod(bias_shape) == num_filters, "con bias shape does not match")
    return dict(got, filters=filters, bias=bias, relu=use_relu)


def _read_fc(s: _Stream, want: dict) -> dict:
    name = s.string()
    _expect(name in ("fc_2", "fc_3"), f"expected an fc_ layer, found {name!r}")
    num_outputs, num_inputs = s.uint(), s.uint()
    params = s.tensor().reshape(-1)
    w_shape = s.alias()
    s.alias()  # biases alias
    bias_mode = s.int()
    for _ in range(4):
        s.float()
    use_bias = s.bool() if name == "fc_3" else True
    _expect(num_outputs == want["num_outputs"] and bias_mode == want["bias_mode"],
            f"expected fc with {want['num_outputs']} outputs and bias mode {want['bias_mode']}, "
            f"found {num_outputs} outputs and bias mode {bias_mode}")
    _expect(w_shape[:2] == (num_inputs, num_outputs), f"fc weight shape {w_shape} does not match")
    has_bias = bias_mode == 0 and use_bias
    n_w = num_inputs * num_outputs
    _expect(params.size == n_w + (num_outputs if has_bias else 0), "fc parameter count does not match")
    return dict(num_outputs=num_outputs, num_inputs=num_inputs,
                weights=params[:n_w].reshape(num_inputs, num_outputs).copy(),
                bias=params[n_w:].copy() if has_bias else None)


def _read_affine(s: _Stream, want: dict) -> dict:
    name = s.string()
    if name in ("bn_con2", "bn_fc2"):
        # affine_'s deserialize converts a stored bn_ layer (layers.h, affine_(const bn_&)):
        # gamma' = gamma / sqrt(running_variance + eps), beta' = beta - gamma' * running_mean, in float32.
        params = s.tensor().reshape(-1)
        g_shape, b_shape = s.alias(), s.alias()
        s.tensor(), s.tensor()  # means, invstds (batch statistics, unused at inference)
        running_means = s.tensor().reshape(-1)
        running_variances = s.tensor().reshape(-1)
        s.uint(), s.uint()  # num_updates, running_stats_window_size
        for _ in range(4):
            s.float()
        eps = s.float()
        n = math.prod(g_shape)
        _expect(params.size == 2 * n and running_means.size == n and running_variances.size == n,
                "bn_ parameter count does not match")
        g = (params[:n] / np.sqrt(running_variances + np.float32(eps))).astype(np.float32)
        b = (params[n:] - g * running_means).astype(np.float32)
        mode = 0 if name == "bn_con2" else 1
        return dict(gamma=g.reshape(g_shape), beta=b.reshape(b_shape), mode=mode, disabled=False, converted_from="bn")
    _expect(name in ("affine_", "affine_2"), f"expected an affine_ layer, found {name!r}")
    params = s.tensor().reshape(-1)
    g_shape, b_shape = s.alias(), s.alias()
    mode = s.int()
    disabled = s.bool() if name == "affine_2" else False
    if disabled:
        return dict(gamma=None, beta=None, mode=mode, disabled=True)
    n = math.prod(g_shape)
    _expect(params.size == 2 * n, "affine parameter count does not match")
    return dict(gamma=params[:n].reshape(g_shape).copy(), beta=params[n:].reshape(b_shape).copy(),
                mode=mode, disabled=False)


def _read_relu(s: _Stream, want: dict) -> dict:
    name = s.string()
    _expect(name in ("relu_", "relu_2"), f"expected a relu_ layer, found {name!r}")
    return dict(disabled=s.bool() if name == "relu_2" else False)


def _read_pool(kind: str):
    def read(s: _Stream, want: dict) -> dict:
        name = s.string()
        _expect(name == f"{kind}_2", f"expected a {kind}_ layer, found {name!r}")
        got = dict(zip(("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"), (s.int() for _ in range(6))))
        _expect(got == want, f"expected {kind} {want}, found {got}")
        return got
    return read


def _read_add_prev(s: _Stream, want: dict) -> dict:
    name = s.string()
    _expect(name == "add_prev_", f"expected an add_prev_ layer, found {name!r}")
    return dict(tag=want["tag"])


_DETAIL_READERS = {
    "con": _read_con,
    "fc": _read_fc,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool("max_pool"),
    "avg_pool": _read_pool("avg_pool"),
    "add_prev": _read_add_prev,
}

_KNOWN_LOSSES = ("loss_metric_", "loss_metric_2", "loss_mmod_", "loss_multiclass_log_", "loss_binary_log_",
                 "loss_mean_squared_", "loss_mean_squared_multioutput_", "loss_multiclass_log_per_pixel_")


def _read_input(s: _Stream, want_kind: str, want: dict) -> dict:
    name = s.string()
    if want_kind == "input_rgb_image_sized":
        _expect(name == "input_rgb_image_sized", f"expected input_rgb_image_sized, found {name!r}")
        avg = [s.float() for _ in range(3)]
        nr, nc = s.uint(), s.uint()
        _expect((nr, nc) == (want["nr"], want["nc"]), f"expected a {want['nr']}x{want['nc']} input, found {nr}x{nc}")
        return dict(avg_red=avg[0], avg_green=avg[1], avg_blue=avg[2], nr=nr, nc=nc)
    _expect(name in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"),
            f"expected input_rgb_image_pyramid, found {name!r}")
    avg = [s.float() for _ in range(3)]
    padding, outer = (s.uint(), s.uint()) if name == "input_rgb_image_pyramid2" else (10, 11)
    return dict(avg_red=avg[0], avg_green=avg[1], avg_blue=avg[2], pyramid=want["pyramid"],
                pyramid_padding=padding, pyramid_outer_padding=outer)


def _read_loss(s: _Stream, want_kind: str) -> dict:
    name = s.string()
    if want_kind == "loss_metric":
        _expect(name in ("loss_metric_", "loss_metric_2"), f"the network's loss layer is {name!r}, not loss_metric_")
        if name == "loss_metric_":
            return dict(margin=0.1, dist_thresh=0.75)
        return dict(margin=s.float(), dist_thresh=s.float())
    _expect(name == "loss_mmod_", f"the network's loss layer is {name!r}, not loss_mmod_")
    version = s.int()
    _expect(1 <= version <= 4, f"unexpected mmod_options version {version}")
    windows = []
    if version == 1:
        windows.append(dict(width=s.uint(), height=s.uint(), label=""))
    else:
        for _ in range(s.uint()):
            wv = s.int()
            _expect(wv in (1, 2), f"unexpected detector window version {wv}")
            w, h = s.uint(), s.uint()
            windows.append(dict(width=w, height=h, label=s.string(4096) if wv == 2 else ""))
    opts = dict(detector_windows=windows, loss_per_false_alarm=s.float(), loss_per_missed_target=s.float(),
                truth_match_iou_threshold=s.float())
    opts["overlaps_nms"] = dict(iou_thresh=s.float(), percent_covered_thresh=s.float())
    opts["overlaps_ignore"] = dict(iou_thresh=s.float(), percent_covered_thresh=s.float())
    opts["assume_image_pyramid"] = bool(s.byte()) if version >= 3 else True
    opts["use_bounding_box_regression"], opts["bbr_lambda"] = False, 100.0
    if version >= 4:
        opts["use_bounding_box_regression"] = s.bool()
        opts["bbr_lambda"] = s.float()
    _expect(len(windows) > 0, "loss_mmod_ has no detector windows")
    return opts


# --------------------------------------------------------------------------------------------


def parse_network(data: bytes, template: list) -> list[Layer]:
    """Parse a serialized network against ``template`` (output first); returns layers input first.

    Raises :class:`_Truncated` or :class:`_Mismatch`."""
    s = _Stream(data)
    loss_kind, _ = template[0]
    wrappers = template[1:-1]
    input_kind, input_want = template[-1]
    if len(data) < 4:
        raise _Mismatch("file too short")
    version = s.int()
    _expect(version == 1, f"unexpected add_loss_layer version {version}")
    loss = _read_loss(s, loss_kind)
    versions = []
    for i, (kind, _) in enumerate(wrappers):
        v = s.int()
        innermost = i == len(wrappers) - 1
        if kind in ("tag", "skip"):
            _expect(v == 1 and not innermost, f"layer {i}: unexpected {kind} version {v}")
        elif innermost:
            _expect(v in (2, 3), f"layer {i}: unexpected input add_layer version {v}")
        else:
            _expect(v in (1, 2), f"layer {i}: unexpected add_layer version {v}")
        versions.append(v)
    inp = _read_input(s, input_kind, input_want)
    layers_out_first: list[Layer | None] = [None] * len(wrappers)
    for i in reversed(range(len(wrappers))):
        kind, want = wrappers[i]
        if kind in ("tag", "skip"):
            layers_out_first[i] = Layer(kind, dict(want))
            continue
        params = _DETAIL_READERS[kind](s, want)
        for _ in range(3):
            s.bool()  # this_layer_setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled
        s.tensor(), s.tensor()  # x_grad, cached_output
        if i == len(wrappers) - 1:
            s.tensor()  # grad_final
            if versions[i] >= 3:
                s.int()  # sample_expansion_factor
        elif versions[i] >= 2:
            s.tensor()  # params_grad
        layers_out_first[i] = Layer(kind, params)
    return [Layer(input_kind, inp)] + layers_out_first[::-1] + [Layer(loss_kind, loss)]


def _sniff_loss(data: bytes) -> str | None:
    """The loss layer's name if ``data`` starts like a dlib network (``add_loss_layer`` v1)."""
    try:
        s = _Stream(data)
        if s.int() != 1:
            return None
        name = s.string(64)
        return name if name.startswith("loss_") else None
    except (_Truncated, _Mismatch):
        return None


def read_network(path, kind: str) -> list[Layer]:
    """Parse dlib network file ``path`` as ``kind`` ("resnet" or "mmod"); a list of layers, input first.

    Any problem raises GancheckError with a one-line message naming the file and the fix."""
    if kind not in TEMPLATES:
        raise ValueError(f"kind must be one of {sorted(TEMPLATES)}")
    path = Path(path)
    what, expected_file = KIND_WHAT[kind], KIND_FILES[kind]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GancheckError(f"cannot read {path}: {exc.strerror or exc}; pass the path of {expected_file} "
                            f"(from face-recognition-models: {INSTALL_HINT})") from None
    try:
        return parse_network(data, TEMPLATES[kind]())
    except _Truncated:
        if _sniff_loss(data) is None:
            raise GancheckError(f"{path} is not a dlib network file (it ends after {len(data)} bytes); pass "
                                f"{expected_file} from face-recognition-models ({INSTALL_HINT})") from None
        raise GancheckError(f"{path} is truncated ({len(data)} bytes); it is not a complete copy of {what} "
                            f"({expected_file}); reinstall it with: {INSTALL_HINT}") from None
    except _Mismatch as exc:
        loss = _sniff_loss(data)
        if loss is None:
            raise GancheckError(f"{path} is not a dlib network file ({exc}); pass {expected_file} "
                                f"from face-recognition-models ({INSTALL_HINT})") from None
        raise GancheckError(f"{path} is a dlib network of another architecture than {what} ({exc}); "
                            f"pass {expected_file} from face-recognition-models ({INSTALL_HINT})") from None


def model_path(kind: str) -> Path:
    """Path of the .dat for ``kind`` in the installed face-recognition-models (package not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise GancheckError(f"{KIND_WHAT[kind]} needs the face-recognition-models package; "
                            "run: pip install face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / KIND_FILES[kind]
    if not path.is_file():
        raise GancheckError(f"{path} is missing; reinstall with: {INSTALL_HINT}")
    return path


def summarize(layers: list[Layer]) -> str:
    """One line per layer, for debugging."""
    return "\n".join(f"{i:3d} {layer!r}" for i, layer in enumerate(layers))


__all__ = ["Layer", "read_network", "parse_network", "model_path", "resnet_template", "mmod_template", "summarize"]

