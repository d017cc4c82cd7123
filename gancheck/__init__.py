"""gancheck: black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al., ACM TOMM 2021).

The pipeline, in order (docs/architecture.md): sample latents and generate (:mod:`gancheck.sources`)
-> embed (:mod:`embedders`) -> accumulate statistics (:mod:`gancheck.engine`, the equations in
:mod:`gancheck.maths`) into a run directory (:mod:`gancheck.run`) -> analyse it
(:mod:`gancheck.analysis`) -> render it (:mod:`gancheck.render`); calibrate on top
(:mod:`gancheck.calibrate`). :mod:`gancheck.api` is the Python API; :mod:`gancheck.cli` the CLI.
"""

from gancheck.errors import GancheckError
from gancheck.version import __version__

# (calibrate is gancheck.api.calibrate: gancheck.calibrate is the calibration package)
_API = ("audit", "compare", "open_run", "report", "sample_images")
__all__ = ["GancheckError", "__version__", *_API]


def __getattr__(name: str):
    # The API is loaded on first use, so that a plug-in (embedders/, a source) can import
    # gancheck.errors without loading the whole pipeline above it.
    if name in _API:
        from gancheck import api

        return getattr(api, name)
    raise AttributeError(f"module 'gancheck' has no attribute {name!r}")
