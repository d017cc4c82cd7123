"""Calibrator plug-ins: how a fitted calibrator draws latents (Wu et al., section 3.2).

Each method is one module with a :class:`Calibrator` subclass registered under its ``--method``
name: ``gmm`` (Alg. 1), ``is`` (Alg. 2), ``rejection`` (descriptor space), ``cascade`` (a latent screen in front of rejection), ``drs`` (a discriminator's
logit). The file format is docs/calibrator-format.md; fitting one from an audit is :mod:`gancheck.calibration`.
A third-party method needs no edit here: its package declares an entry point in the group
``gancheck.calibrators`` named after the method (``mymethod = "my_package.calibrator:MyCalibrator"``).
"""

from gancheck.calibrators.base import METHODS, Calibrator, load_calibrator
from gancheck.calibrators import cascade, drs, gmm, importance, rejection  # noqa: E402,F401  (register the built-in methods)

__all__ = ["METHODS", "Calibrator", "load_calibrator"]
