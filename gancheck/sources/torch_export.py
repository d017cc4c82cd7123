"""PyTorch 2 files (``.pt2``): a ``torch.export`` program (``torch.export.save``) or an AOTInductor
package (``torch._inductor.aoti_compile_and_package``), told apart by their zip entries, not their
suffix. Needs the ``torch`` extra.

The latent input's name, shape and batch sizes come from the file itself: a program's graph
signature, or the input checks AOTInductor writes into the package's wrapper source.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancheck.errors import GancheckError
from gancheck.files import file_sha256
from gancheck.sources.base import LatentSource, register
from gancheck.sources.conditions import RandomCondition, is_random
from gancheck.sources.latents import LatentPrior
from gancheck.sources.onnx_generator import fixed_input, parse_value
from gancheck.sources.torch_files import READ, pt2_kind, what_file
from gancheck.sources.torchscript import import_torch, torch_device

_LATENT_NAMES = ("z", "latent", "latents", "noise", "input", "x")
_FLOATS = (np.float32, np.float64, np.float16)
_AOTI_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
                "int32": np.int32, "bool": np.bool_}


@dataclass(frozen=True)
class Port:
    """One tensor input: its name, numpy dtype (None: not a plain dtype), shape (None: a dynamic
    size) and the least and largest (None: unbounded) size of a dynamic batch axis."""

    name: str
    dtype: type | None
    shape: list
    batch: tuple[int, int | None] = (1, None)


def _entry(path: Path, suffix: str) -> str | None:
    with zipfile.ZipFile(path) as archive:
        name = next((n for n in archive.namelist() if n.endswith(suffix)), None)
        return None if name is None else archive.read(name).decode("utf-8", "replace")


def _batch_bounds(latent: Port, path: Path) -> tuple[int | None, int, int | None]:
    """(fixed batch or None, least batch, largest batch or None) of the latent input."""
    shape = latent.shape
    if len(shape) < 2 or any(s is None for s in shape[1:]):
        raise GancheckError(f"the input {latent.name!r} of {path} has shape {['N' if s is None else s for s in shape]}, which is not a latent batch; "
                            "a generator's latent input must be (N, d) or (N, d, 1, 1) with fixed sizes after the batch axis (export it so)")
    if shape[0] is not None:
        return int(shape[0]), int(shape[0]), int(shape[0])
    return None, max(1, latent.batch[0]), latent.batch[1]


@register("pt2")
class Pt2Generator(LatentSource):
    """A ``.pt2`` program or package. A program's latent input is chosen as the ONNX source chooses it
    (``latent_input`` overrides); an AOTInductor package must have the latent as its only input."""

    options = ("layout", "value_range", "batch_size", "prior", "truncation", "latent_input", "inputs", "device", "threads")

    def __init__(self, path: str, prior: str = "normal", truncation: float = 2.0, latent_input: str | None = None,
                 inputs: dict | None = None, device: str = "auto", threads: int | None = None, **kw):
        super().__init__(**kw)
        self.path = Path(path)
        if not self.path.is_file():
            raise GancheckError(f"generator file not found: {self.path} (check the path)")
        self.format_kind = pt2_kind(self.path)
        if self.format_kind is None:
            what = what_file(self.path) or ("an empty file" if self.path.stat().st_size == 0 else "no zip archive (PyTorch files are zip archives)")
            raise GancheckError(f"{self.path} is {what}, not a torch.export program or AOTInductor package; {READ}")
        torch = self.torch = import_torch()
        if threads:
            torch.set_num_threads(int(threads))  # process-wide, as onnxruntime's intra-op threads are per session
        given = dict(inputs or {})
        ports = self._open_package(device, given, latent_input) if self.format_kind == "aoti" else self._open_program(device)
        self._plan(ports, given, latent_input, prior, truncation)

    # -- opening ---------------------------------------------------------------------------------

    def _open_program(self, device: str):
        torch = self.torch
        self.device = torch_device(torch, device)
        self._check_schema()
        try:
            program = torch.export.load(str(self.path))
        except Exception as exc:
            raise GancheckError(f"{self.path} is not a loadable torch.export program ({_first_line(exc)}); save it with torch.export.save") from None
        if self.device.type != "cpu":
            program = torch.export.passes.move_to_device_pass(program, self.device)
        self.run = program.module()
        return program_ports(torch, program)

    def _check_schema(self) -> None:
        """A program saved by a newer torch (a newer export schema) is refused before torch fails on it."""
        try:
            from torch._export.serde.schema import SCHEMA_VERSION
        except ImportError:  # a private module: without it, torch.export.load's own error has to do
            return
        text = _entry(self.path, "/models/model.json")
        saved = json.loads(text) if text else {}
        version = saved.get("schema_version") or {}
        theirs = (int(version.get("major", 0)), int(version.get("minor", 0)))
        if theirs > tuple(SCHEMA_VERSION):
            raise GancheckError(f"{self.path} was saved by torch {saved.get('torch_version', '?')} (export schema {theirs[0]}.{theirs[1]}), "
                                f"newer than the installed torch {self.torch.__version__} (schema {SCHEMA_VERSION[0]}.{SCHEMA_VERSION[1]}); "
                                f"upgrade torch or save the program again with torch {self.torch.__version__}")

    def _open_package(self, device: str, given: dict, latent_input: str | None):
        torch = self.torch
        if given or latent_input:
            raise GancheckError(f"{self.path} is an AOTInductor package, whose inputs have no names; --input and --latent-input "
                                "need the torch.export program it was compiled from (torch.export.save)")
        compiled_for = json.loads(_entry(self.path, "_metadata.json") or "{}").get("AOTI_DEVICE_KEY", "cpu")
        if compiled_for == "cuda" and not torch.cuda.is_available():
            raise GancheckError(f"{self.path} is an AOTInductor package compiled for cuda, but torch sees no CUDA GPU here; "
                                "compile it for cpu (aoti_compile_and_package on a CPU program) or audit the torch.export program")
        if device not in ("auto", compiled_for):
            raise GancheckError(f"{self.path} is an AOTInductor package compiled for {compiled_for}, but --device {device} was asked for; "
                                f"use --device {compiled_for} or compile the package for {device}")
        self.device = torch.device(compiled_for)
        ports = package_ports(_entry(self.path, ".wrapper.cpp"), self.path)
        try:
            self.run = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:
            raise GancheckError(f"{self.path} is not a loadable AOTInductor package ({_first_line(exc)}); "
                                "compile it again with this torch's aoti_compile_and_package") from None
        return ports

    # -- inputs ----------------------------------------------------------------------------------

    def _plan(self, ports: list[Port], given: dict, latent_input, prior: str, truncation: float) -> None:
        by_name = {p.name: p for p in ports}
        unknown = sorted(set(given) - set(by_name))
        if unknown:
            raise GancheckError(f"--input names {', '.join(unknown)} not among the program's inputs: {', '.join(by_name)}")
        self.latent_name = latent_input or _guess_latent(ports, given, self.path)
        if self.latent_name not in by_name:
            raise GancheckError(f"--latent-input {self.latent_name!r} is not an input of {self.path}; its inputs are {', '.join(by_name)}")
        latent = by_name[self.latent_name]
        if latent.dtype not in _FLOATS:
            raise GancheckError(f"the input {latent.name!r} of {self.path} is not floating point, so not a latent batch; "
                                "export the generator with its latent as a float input (or pick one with --latent-input)")
        self.fixed_batch, self.least_batch, self.most_batch = _batch_bounds(latent, self.path)
        missing = sorted(set(by_name) - set(given) - {self.latent_name})
        if missing:
            raise GancheckError(f"{self.path} has inputs {', '.join(missing)} besides the latent {self.latent_name!r}; "
                                "give each a fixed value with --input NAME=VALUE (e.g. --input label=3)")
        self.latent_dtype = latent.dtype
        self.latent_prior = LatentPrior(tuple(latent.shape[1:]), prior, truncation)
        self.order = [p.name for p in ports]
        self.random = {n: (RandomCondition.parse(n, t), by_name[n].dtype or np.float32, by_name[n].shape) for n, t in given.items() if is_random(t)}
        self.extra = {n: (parse_value(t, by_name[n].dtype or np.float32), by_name[n].shape) for n, t in given.items() if not is_random(t)}

    def _feed(self, z: np.ndarray, rows) -> list:
        arrays = {self.latent_name: z.astype(self.latent_dtype, copy=False)}
        for name, (value, shape) in self.extra.items():
            arrays[name] = fixed_input(name, value, shape, len(z))
        for name, (condition, dtype, shape) in self.random.items():  # drawn per sample from (seed, index)
            arrays[name] = condition.draw(self.seed, rows, dtype, shape)
        return [self.torch.from_numpy(np.ascontiguousarray(arrays[n])).to(self.device) for n in self.order]

    # -- running ---------------------------------------------------------------------------------

    def generate(self, z: np.ndarray) -> np.ndarray:
        step = self.fixed_batch or min(len(z), self.most_batch or len(z))
        outs = []
        for i in range(0, len(z), step):
            part = z[i : i + step]
            rows = None if not self.random else np.asarray(self.current_indices)[i : i + step]
            pad = max(step if self.fixed_batch else self.least_batch, len(part)) - len(part)
            if pad:  # a fixed (or least) batch size: pad with copies, drop their outputs
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
                rows = None if rows is None else np.concatenate([rows, np.repeat(rows[-1:], pad)])
            outs.append(self._call(part, rows)[: len(part) - pad])
        return np.concatenate(outs)

    def _call(self, part: np.ndarray, rows) -> np.ndarray:
        try:
            with self.torch.no_grad():
                out = self.run(*self._feed(part, rows))
        except Exception as exc:
            raise GancheckError(f"running {self.path} failed ({_first_line(exc)}); check --input values and the program's signature") from None
        if isinstance(out, (tuple, list)):  # several outputs: the first is the image batch, as for ONNX
            out = out[0]
        return out.detach().cpu().numpy()

    def describe(self) -> dict:
        d = super().describe()
        d.update(path=str(self.path), sha256=file_sha256(self.path), format=self.format_kind, torch=self.torch.__version__,
                 latent_input=self.latent_name, fixed_batch=self.fixed_batch,
                 inputs=dict({k: v.tolist() for k, (v, _) in self.extra.items()}, **{k: c.to_dict() for k, (c, _, _) in self.random.items()}))
        return d


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _guess_latent(ports: list[Port], given: dict, path: Path) -> str:
    floats = [p for p in ports if p.name not in given and p.dtype in _FLOATS]
    named = [p for p in floats if p.name.lower() in _LATENT_NAMES]
    if named or floats:
        return (named or floats)[0].name
    kinds = ", ".join(f"{p.name} {np.dtype(p.dtype).name if p.dtype else 'non-tensor'}" for p in ports) or "none"
    raise GancheckError(f"{path} has no floating-point input, so no latent batch (inputs: {kinds}); export the generator with a float latent input")


def program_ports(torch, program) -> list[Port]:
    """The user inputs of an ExportedProgram, with the range the program guards of each dynamic batch axis."""
    from torch.export.graph_signature import InputKind

    values = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    ports = []
    for spec in program.graph_signature.input_specs:
        if spec.kind != InputKind.USER_INPUT:
            continue
        name = getattr(spec.arg, "name", str(spec.arg))
        value = values.get(name)
        if not isinstance(value, torch.Tensor):
            ports.append(Port(name, None, []))
            continue
        shape = [int(s) if isinstance(s, int) else None for s in value.shape]
        batch = (1, None)
        if shape and shape[0] is None:
            rc = program.range_constraints.get(value.shape[0].node.expr)
            upper = int(rc.upper) if rc is not None and getattr(rc.upper, "is_Integer", False) else None  # int_oo: unbounded
            batch = (int(rc.lower) if rc is not None else 1, upper)
        ports.append(Port(name, _numpy_dtype(torch, value.dtype), shape, batch))
    return ports


def _numpy_dtype(torch, dtype):
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype.type
    except TypeError:  # bfloat16 and other dtypes numpy lacks
        return None


_CHECK = re.compile(r"ConstantHandle (\w+) = ConstantHandle\(input_handles\[(\d+)\]\)")


def package_ports(wrapper: str | None, path: Path) -> list[Port]:
    """The one input of an AOTInductor package, read from the input checks of its wrapper source."""
    if not wrapper:
        raise GancheckError(f"cannot read the input of the AOTInductor package {path}: its wrapper source is not in the package; "
                            "compile it with aoti_compile_and_package (which keeps it), or audit the torch.export program")
    handles = dict((int(i), name) for name, i in _CHECK.findall(wrapper))
    if len(handles) != 1:
        raise GancheckError(f"the AOTInductor package {path} has {len(handles)} inputs; gancheck reads packages whose only input is the latent "
                            "batch (audit the torch.export program to give the other inputs with --input)")
    arg = handles[0]
    sizes = re.search(rf"assert_size_stride\({arg}, \{{([^}}]*)\}}", wrapper)
    dtype = re.search(rf"{arg}_expected_dtype = aoti_torch_dtype_(\w+)\(\)", wrapper)
    if sizes is None or dtype is None:
        raise GancheckError(f"cannot read the input's shape from the AOTInductor package {path} (made by another torch?); "
                            "compile it again with this torch, or audit the torch.export program")
    shape = [int(s[:-1]) if re.fullmatch(r"\d+L", s) else None for s in (t.strip() for t in sizes.group(1).split(","))]
    least = re.search(rf"if \({arg}_size\[0\] < (\d+)\)", wrapper)
    most = re.search(rf"if \({arg}_size\[0\] > (\d+)\)", wrapper)
    batch = (int(least.group(1)) if least else 1, int(most.group(1)) if most else None)
    return [Port("input", _AOTI_DTYPES.get(dtype.group(1)), shape, batch)]
