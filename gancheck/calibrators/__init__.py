"""Calibrator plug-ins: how a fitted calibrator draws latents (Wu et al., section 3.2).

Each method is one module with a :class:`Calibrator` subclass registered under its ``--method``
name: ``gmm`` (Alg. 1), ``is`` (Alg. 2), ``rejection`` (descriptor space), ``drs`` (a discriminator's
logit). The file format is docs/calibrator-format.md; fitting one from an audit is :mod:`gancheck.calibrate`.
"""

from gancheck.calibrators.base import METHODS, Calibrator, load_calibrator
from gancheck.calibrators import drs, gmm, importance, rejection  # noqa: E402,F401  (register the methods)

__all__ = ["METHODS", "Calibrator", "load_calibrator"]
