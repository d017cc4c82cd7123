"""An ONNX generator run through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.sources.base import LatentSource, register
from gancheck.sources.conditions import RandomCondition, is_random
from gancheck.sources.latents import LatentPrior
from gancheck.onnx_runtime import open_session
from gancheck.files import file_sha256

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}
_LATENT_NAMES = ("z", "latent", "latents", "noise", "input", "x")


def parse_value(text: str, dtype) -> np.ndarray:
    """``"3"``, ``"0.7"``, ``"true"`` or a comma list ``"1,0,0"`` as an array of ``dtype``."""
    try:
        if dtype is np.bool_:
            return np.array([t.strip().lower() in ("1", "true", "yes") for t in text.split(",")])
        return np.array([float(t) for t in text.split(",")]).astype(dtype)
    except ValueError:
        raise GancheckError(f"cannot read {text!r} as a value of type {np.dtype(dtype).name}; give a number or a comma-separated list") from None


@register("onnx")
class OnnxGenerator(LatentSource):
    """The latent input's name and shape are read from the model (``latent_input`` overrides the
    choice); every other input gets a fixed value from ``inputs`` (``{name: "value"}``)."""

    options = ("layout", "value_range", "batch_size", "prior", "truncation", "latent_input", "inputs", "device", "threads")

    def __init__(self, path: str, prior: str = "normal", truncation: float = 2.0, latent_input: str | None = None, inputs: dict | None = None, device: str = "auto", threads: int | None = None, **kw):
        super().__init__(**kw)
        self.path = Path(path)
        self.session = open_session(self.path, device=device, threads=threads, what="generator")
        model_inputs = {i.name: i for i in self.session.get_inputs()}
        given = dict(inputs or {})
        unknown = sorted(set(given) - set(model_inputs))
        if unknown:
            raise GancheckError(f"--input names {', '.join(unknown)} not among the model's inputs: {', '.join(model_inputs)}")
        self.latent_name = latent_input or self._guess_latent(model_inputs, given)
        if self.latent_name not in model_inputs:
            raise GancheckError(f"--latent-input {self.latent_name!r} is not an input of {self.path}; its inputs are {', '.join(model_inputs)}")
        latent = model_inputs[self.latent_name]
        if latent.type not in ("tensor(float)", "tensor(double)", "tensor(float16)"):
            raise GancheckError(f"latent input {latent.name!r} has type {latent.type}; a latent input must be floating point (pick another with --latent-input)")
        if len(latent.shape) < 2 or not all(isinstance(s, int) for s in latent.shape[1:]):
            raise GancheckError(
                f"latent input {latent.name!r} has shape {latent.shape}; a generator's latent input must be a batch "
                "(N, d) or (N, d, 1, 1) with fixed sizes after the batch axis"
            )
        self.latent_dtype = _DTYPES[latent.type]
        self.latent_prior = LatentPrior(tuple(latent.shape[1:]), prior, truncation)
        batch = latent.shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        missing = sorted(set(model_inputs) - set(given) - {self.latent_name})
        if missing:
            raise GancheckError(
                f"{self.path} has inputs {', '.join(missing)} besides the latent {self.latent_name!r}; "
                "give each a fixed value with --input NAME=VALUE (e.g. --input label=3)"
            )
        self.random = {name: (RandomCondition.parse(name, text), _DTYPES.get(model_inputs[name].type, np.float32), model_inputs[name].shape)
                       for name, text in given.items() if is_random(text)}
        self.extra = {name: (parse_value(text, _DTYPES.get(model_inputs[name].type, np.float32)), model_inputs[name].shape)
                      for name, text in given.items() if not is_random(text)}
        self.output_name = self.session.get_outputs()[0].name

    @staticmethod
    def _guess_latent(model_inputs: dict, given: dict) -> str:
        free = [i for name, i in model_inputs.items() if name not in given]
        floats = [i for i in free if i.type.startswith("tensor(float") or i.type == "tensor(double)"]
        for i in floats:
            if i.name.lower() in _LATENT_NAMES:
                return i.name
        if floats:
            return floats[0].name
        names = ", ".join(f"{i.name} {i.type}" for i in model_inputs.values())
        raise GancheckError(f"no floating-point latent input found (inputs: {names}); name it with --latent-input")

    def _feed(self, z: np.ndarray, indices: np.ndarray | None = None) -> dict:
        feed = {self.latent_name: z.astype(self.latent_dtype, copy=False)}
        for name, (value, shape) in self.extra.items():
            feed[name] = fixed_input(name, value, shape, len(z))
        for name, (condition, dtype, shape) in self.random.items():  # drawn per sample from (seed, index)
            feed[name] = condition.draw(self.seed, indices, dtype, shape)
        return feed

    def generate(self, z: np.ndarray) -> np.ndarray:
        step = self.fixed_batch or len(z)
        outs = []
        for i in range(0, len(z), step):
            part = z[i : i + step]
            rows = None if not self.random else np.asarray(self.current_indices)[i : i + step]
            pad = step - len(part)
            if pad:  # fixed-batch model: pad with copies, drop their outputs
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
                rows = None if rows is None else np.concatenate([rows, np.repeat(rows[-1:], pad)])
            try:
                out = self.session.run([self.output_name], self._feed(part, rows))[0]
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise GancheckError(f"running {self.path} failed ({msg}); check --input values and the model's signature") from None
            outs.append(np.asarray(out)[: len(part) - pad])
        return np.concatenate(outs)

    def describe(self) -> dict:
        d = super().describe()
        d.update(path=str(self.path), sha256=file_sha256(self.path), latent_input=self.latent_name,
                 inputs=dict({k: v.tolist() for k, (v, _) in self.extra.items()}, **{k: c.to_dict() for k, (c, _, _) in self.random.items()}),
                 fixed_batch=self.fixed_batch)
        return d


def fixed_input(name: str, value: np.ndarray, shape: list, batch: int) -> np.ndarray:
    """One fixed ``--input`` value shaped for a batch: repeated along a batch axis when the input
    has one (symbolic first size), else broadcast to the declared shape."""
    if len(shape) == 0:
        return value.reshape(-1)[:1].reshape(())
    dims = [s if isinstance(s, int) else None for s in shape]
    if dims[0] is None or dims[0] == batch:
        dims[0] = batch
    dims = [value.size if d is None else d for d in dims]
    try:
        return np.ascontiguousarray(np.broadcast_to(value.reshape(dims[1:]) if value.size == int(np.prod(dims[1:])) else value, dims))
    except ValueError:
        raise GancheckError(f"--input {name} has {value.size} values, which do not fit the input's shape {shape}") from None
