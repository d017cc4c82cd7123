"""gancheck: black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al., ACM TOMM 2021).

The pipeline, in order: sample latents (:mod:`gancheck.latents`) -> generate
(:mod:`gancheck.generators`) -> embed (:mod:`embedders`) -> accumulate statistics
(:mod:`gancheck.engine`, maths in :mod:`gancheck.stats`) -> report (:mod:`gancheck.report`).
"""

__version__ = "0.1.0"

from gancheck.errors import GancheckError  # noqa: E402


def audit(*args, **kwargs):
    """See :func:`gancheck.api.audit`."""
    from gancheck.api import audit as _audit

    return _audit(*args, **kwargs)


__all__ = ["GancheckError", "audit", "__version__"]
