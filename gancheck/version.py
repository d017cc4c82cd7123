"""The package version, in a module of its own so that any module can read it without importing the package."""

__version__ = "0.1.0"

#: Revision of the statistics a run computes: raised whenever a change could alter any recorded
#: figure, so a run is never resumed or compared across such a change (see gancheck.run.fingerprint).
STATISTICS_REVISION = 1
