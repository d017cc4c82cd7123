"""gancheck: black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al., ACM TOMM 2021).

The pipeline, in order (docs/architecture.md): sample latents and generate (:mod:`gancheck.sources`)
-> embed (:mod:`embedders`) -> accumulate statistics (:mod:`gancheck.engine`, the equations in
:mod:`gancheck.maths`) into a run directory (:mod:`gancheck.run`) -> analyse it
(:mod:`gancheck.analysis`) -> render it (:mod:`gancheck.render`); calibrate on top
(:mod:`gancheck.calibration`); :mod:`gancheck.audits` runs one audit straight through. :mod:`gancheck.api`
is the Python API, each command a function also reached as ``gancheck.X``; :mod:`gancheck.cli` the CLI.
"""

from gancheck.errors import GancheckError
from gancheck.version import __version__

# every command is a function here with its name (gancheck.api); the calibration workflow's package is gancheck.calibration
_API = ("audit", "calibrate", "compare", "coverage", "demo", "export_embedder", "export_descriptor", "ldr", "leakage", "load_embedder",
        "load_descriptor", "open_run", "report", "sample", "sample_images", "sweep", "theta")
__all__ = ["GancheckError", "__version__", *(n for n in _API if n not in ("export_descriptor", "load_descriptor"))]


def __getattr__(name: str):
    # The API is loaded on first use, so that a plug-in (embedders/, a source) can import
    # gancheck.errors without loading the whole pipeline above it.
    if name in _API:
        from gancheck import api

        return getattr(api, name)
    raise AttributeError(f"module 'gancheck' has no attribute {name!r}")
