"""gancheck: black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al., ACM TOMM 2021).

The pipeline, in order (docs/architecture.md): sample latents and generate (:mod:`gancheck.sources`)
-> embed (:mod:`embedders`) -> accumulate statistics (:mod:`gancheck.engine`, the equations in
:mod:`gancheck.maths`) into a run directory (:mod:`gancheck.run`) -> analyse it
(:mod:`gancheck.analysis`) -> render it (:mod:`gancheck.render`); calibrate on top
(:mod:`gancheck.calibrate`). :mod:`gancheck.api` is the Python API; :mod:`gancheck.cli` the CLI.
"""

from gancheck.api import audit, calibrate, compare, open_run, report
from gancheck.errors import GancheckError
from gancheck.version import __version__

__all__ = ["GancheckError", "audit", "calibrate", "compare", "open_run", "report", "__version__"]
