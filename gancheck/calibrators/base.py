"""The calibrator plug-in base class and registry, and loading one from its file.

A calibrator is an acceptance probability ``a(z)`` on top of the generator's prior (see
:mod:`gancheck.calibrators.sampling`). Each method is one module that subclasses :class:`Calibrator`,
is registered under its ``--method`` name, fits itself from a :class:`FitData`, and evaluates ``a``.
A third-party method is declared by an entry point in the group ``gancheck.calibrators``, named
after the method (``mymethod = "my_package.calibrator:MyCalibrator"``); ``--method mymethod`` and
files written with it then find it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gancheck.calibrators.fileformat import read_calibrator
from gancheck.calibrators.sampling import CalibratedSampler
from gancheck.errors import GancheckError
from gancheck.registry import Registry
from gancheck.sources.latents import LatentPrior


def load_calibrator(path: str | Path) -> "Calibrator":
    """The calibrator stored in ``path`` (refused with a clear message if damaged or foreign)."""
    header, tensors = read_calibrator(path, _RequiredTensors())
    cls = METHODS[header["method"]]
    cal = cls(header, tensors, path=Path(path))
    cal.validate()
    return cal


class Calibrator(ABC):
    """A fitted calibrator: ``header`` (the file's JSON) and ``tensors`` (name -> array)."""

    method: str = ""
    #: tensors this method's file must hold besides mode_vectors and mode_acceptance
    tensors: tuple[str, ...] = ()
    #: True when a(z) needs the generator's image and the embedder (cannot sample latents alone)
    needs_generator: bool = False

    def __init__(self, header: dict, tensors: dict[str, np.ndarray], path: Path | None = None):
        self.header = header
        self.t = tensors
        self.path = path
        self.prior = LatentPrior.from_dict(header["latent"])

    # -- fitting ---------------------------------------------------------------------------------

    @classmethod
    @abstractmethod
    def fit(cls, data, **options) -> tuple[dict, dict, dict]:
        """``(params, tensors, figures)`` fitted on a :class:`~gancheck.calibration.fitdata.FitData`."""

    @classmethod
    def check_options(cls, **options) -> None:
        """Refuse option values this method cannot use (raise GancheckError), before anything is
        fitted or written."""

    @classmethod
    def learns_from_budget(cls, **options) -> bool:
        """True when a fit with these ``options`` learns a latent region from labelled samples, so the
        embedder budget (extra described samples) improves it."""
        return False

    @classmethod
    @abstractmethod
    def fit_acceptance(cls, data, tensors: dict, params: dict) -> np.ndarray:
        """(n,) a(z) of the fit samples, for the expected draws per kept sample."""

    # -- using -----------------------------------------------------------------------------------

    @property
    def mode_acceptance(self) -> np.ndarray:
        return self.t["mode_acceptance"]

    def validate(self) -> None:
        """Check method-specific tensor shapes against the header (raise GancheckError)."""

    def damaged(self, why: str) -> GancheckError:
        return GancheckError(f"{self.path} is not a usable calibrator file ({why}); re-run gancheck calibrate")

    def acceptance(self, z: np.ndarray) -> np.ndarray:
        """a(z) for float64 latents (k, dim) -> (k,) in [0, 1]."""
        raise GancheckError(f"a {self.method} calibrator decides on the generated image, so it cannot sample latents alone; "
                            "bind it to its generator: load_calibrator(path).bind(source) or gancheck.inputs.calibrated_generator")

    def keep_described(self, latents: np.ndarray, vectors: np.ndarray) -> np.ndarray | None:
        """The keep probability of candidates whose images' descriptor ``vectors`` (as the audit
        stores them) are known, as sampling would decide it; None where the decision needs more
        (a discriminator's view of the image)."""
        return None if self.needs_generator else self.acceptance(latents)

    def descriptor_calls_per_candidate(self, latents: np.ndarray) -> float:
        """Embedder calls sampling pays per candidate latent, on average over ``latents``."""
        return 0.0

    def sample(self, seed: int, indices) -> np.ndarray:
        """Calibrated float32 latents (len(indices), *shape) for sample ``indices`` under ``seed``."""
        return CalibratedSampler(self.prior, self.acceptance).sample(seed, indices)

    def bind(self, source, force: bool = False) -> CalibratedSampler:
        """The sampler to set as ``source.sampler``; refuses another generator unless ``force``."""
        shape = self.check_generator(source, force)
        return CalibratedSampler(self.prior, self._acceptance_for(source), shape)

    def wrap(self, source, force: bool = False):
        """``source`` turned into its calibrated version (its sampler replaced); returns it."""
        source.sampler = self.bind(source, force=force)
        return source

    def _acceptance_for(self, source):
        return self.acceptance

    def runs_at_sampling(self) -> str:
        """The model a ``needs_generator`` calibrator runs on every candidate image, in words."""
        return f"the embedder {self.embedder['spec']!r}"

    @property
    def embedder(self) -> dict:
        """The embedder the file was fitted with (``descriptor`` in files written before 0.2)."""
        return self.header.get("embedder") or self.header.get("descriptor") or {}

    def check_generator(self, source, force: bool) -> tuple[int, ...]:
        """The latent shape to sample for ``source``, after checking it is the generator this file was
        built for (sha256, or the callable's name when it has no file; latent shape; prior)."""
        prior = getattr(source, "latent_prior", None)
        if prior is None:
            raise GancheckError("a calibrator changes how latents are drawn; it cannot apply to a folder of images (give the generator itself)")
        want, have = self.header["generator"], source.describe()
        problems = []
        if want.get("sha256"):
            if have.get("sha256") != want["sha256"]:
                problems.append(f"its sha256 is {str(have.get('sha256'))[:12]}..., the calibrator's is {want['sha256'][:12]}...")
        elif want.get("callable") != have.get("callable"):
            problems.append(f"it is {have.get('callable') or have.get('path')}, the calibrator's is {want.get('callable')}")
        mine = self.prior
        if tuple(prior.shape) != tuple(mine.shape):
            problems.append(f"its latent shape is {list(prior.shape)}, the calibrator's is {list(mine.shape)}")
        if prior.kind != mine.kind or (mine.kind != "normal" and prior.bound != mine.bound):
            problems.append(f"its prior is {prior.kind}, the calibrator's is {mine.kind}" + (f" (bound {mine.bound})" if mine.kind != "normal" else ""))
        if problems and not force:
            raise GancheckError(f"calibrator {self.path} was built for another generator ({'; '.join(problems)}); "
                                "use it with the generator it was built for, or pass --force (force=True) to apply it anyway")
        if prior.dim != mine.dim:
            raise GancheckError(f"calibrator {self.path} draws {mine.dim} latent values per sample but the generator takes {prior.dim}; "
                                "it cannot be applied even with --force: calibrate this generator's own audit")
        return tuple(prior.shape)


METHODS: Registry = Registry("calibrator", group="gancheck.calibrators", base=Calibrator, attribute="method")
register = METHODS.register


class _RequiredTensors(Mapping):
    """Method -> the tensors its file must hold, importing only the method a file names."""

    def __getitem__(self, method: str) -> tuple[str, ...]:
        return METHODS[method].tensors

    def __contains__(self, method: object) -> bool:
        return method in METHODS

    def __iter__(self):
        return iter(METHODS.names())

    def __len__(self) -> int:
        return len(METHODS.names())


def modes_acceptance(inside: np.ndarray, mode_acceptance: np.ndarray) -> np.ndarray:
    """(k,) acceptance from (k, M) membership: the smallest p_m among the modes a sample is in, else 1."""
    return np.min(np.where(inside, mode_acceptance[None, :], 1.0), axis=1, initial=1.0)
