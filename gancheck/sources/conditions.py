"""Conditioning inputs drawn per sample: ``--input NAME=random:onehot:K`` (a one-hot class vector)
or ``--input NAME=random:values:A,B,C`` (one of the values), for an audit over the class mixture.

Sample ``i``'s class is ``splitmix64(seed, i) mod K``: reproducible from ``(seed, i)`` alone, so it
does not depend on batching, and uniform over the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gancheck.errors import GancheckError

PREFIX = "random:"
_SALT = 0xC1A55_5EED


def is_random(text: str) -> bool:
    return str(text).startswith(PREFIX)


def class_of(seed: int, indices: np.ndarray, count: int) -> np.ndarray:
    """The class in ``0..count-1`` of each sample index (splitmix64 of seed and index)."""
    with np.errstate(over="ignore"):
        x = np.asarray(indices, dtype=np.uint64) + np.uint64((int(seed) * 0x9E3779B97F4A7C15 + _SALT) % 2**64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(count)).astype(np.int64)


@dataclass(frozen=True)
class RandomCondition:
    """One per-sample conditioning input."""

    name: str
    kind: str  # onehot | values
    values: tuple

    @classmethod
    def parse(cls, name: str, text: str) -> "RandomCondition":
        kind, _, arg = str(text)[len(PREFIX):].partition(":")
        hint = f"write --input {name}=random:onehot:K or --input {name}=random:values:A,B,C"
        try:
            if kind == "onehot" and int(arg) >= 2:
                return cls(name, kind, tuple(range(int(arg))))
            values = tuple(float(v) for v in arg.split(",") if v.strip())
        except ValueError:
            raise GancheckError(f"cannot read --input {name}={text}; {hint}") from None
        if kind != "values" or len(values) < 2:
            raise GancheckError(f"cannot read --input {name}={text}; {hint}")
        return cls(name, kind, values)

    def draw(self, seed: int, indices: np.ndarray, dtype, shape: list) -> np.ndarray:
        """The input for a batch: (N, K) one-hot rows, or (N,) values shaped like the input (``shape``
        without its batch size, ``None`` for unknown sizes)."""
        k = class_of(seed, indices, len(self.values))
        x = np.eye(len(self.values), dtype=dtype)[k] if self.kind == "onehot" else np.asarray(self.values)[k].astype(dtype)
        rest = [s for s in shape[1:]]
        if self.kind == "values" and rest and all(s in (1, None) for s in rest):
            x = x.reshape((len(k),) + (1,) * len(rest))
        return x

    def to_dict(self) -> dict:
        return {"random": self.kind, "values": list(self.values)}
