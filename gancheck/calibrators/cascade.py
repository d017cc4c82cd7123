"""The cascade: a latent screen in front of rejection in descriptor space.

The latent methods (``is``, ``gmm``) decide on the latent alone and stop short where a mode's
latents are spread through latent space; ``rejection`` is exact but runs the generator and the
embedder on every candidate. The cascade spends the embedder only where the latent screen is unsure:

- the screen is the latent method's own fitted region model (``--screen is`` or ``gmm``, chosen by
  validation as that method chooses it), with that method's thresholds ``t_m``;
- a candidate whose score reaches a mode's *describe* threshold ``u_m`` is generated, described and
  kept with probability ``p_m`` when its image lies within r0 of mode m's anchor (as ``rejection``);
- every other candidate gets the latent method's decision (``p_m`` inside mode m's region, else 1).

``u`` holds back the same top share of every mode's scores, that share chosen so that the union
holds ``describe_share`` Q of all prior draws (on the run's samples no model trained on): Q = 0 is
the latent method, Q = 1 is ``rejection``. A price list (excess removed, draws and descriptor calls
per kept sample, Fréchet shift, for a grid of Q) is predicted on those samples to choose Q from a
budget, and measured again on the proof's fresh plain draw.
"""

from __future__ import annotations

import numpy as np

from gancheck.calibrators.base import modes_acceptance, register
from gancheck.calibrators.regions import (DEFAULT_MAX_DRAWS, Decision, add_decision, cut_at, decision_bytes, described, frechet_shift, held_apart,
                                          proof_noise_floor, region_figures, split_of, stored_thresholds)
from gancheck.calibrators.rejection import RejectionCalibrator, image_acceptance
from gancheck.errors import GancheckError
from gancheck.maths import excess_removed

#: describe shares the price list is drawn for
PRICE_SHARES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
#: shares a budget chooses among
FINE_SHARES = np.round(np.linspace(0.0, 1.0, 101), 2)
#: with no budget given: the smallest share predicted to remove this much of what describing
#: every candidate removes
KNEE = 0.9
SCREENS = ("is", "gmm")


def describe_thresholds(scores: np.ndarray, share: float) -> np.ndarray:
    """(M,) describe thresholds: every mode's column cut at the same top share q (its threshold holds
    back that share of the rows), q the smallest whose union of the modes' cuts holds ``share`` of
    the rows. 0: +inf (describe none); 1: -inf (describe every candidate)."""
    scores = np.asarray(scores, np.float64)
    M = scores.shape[1]
    if share <= 0:
        return np.full(M, np.inf)
    if share >= 1:
        return np.full(M, -np.inf)

    def cuts(q: float) -> np.ndarray:
        return np.array([cut_at(scores[:, m], q) for m in range(M)])

    lo, hi = 0.0, float(share)  # the union is at least each mode's own share
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if (scores >= cuts(mid)).any(axis=1).mean() < share else (lo, mid)
    return cuts(hi)


def cascade_keep(scores: np.ndarray, thresholds: np.ndarray, describe: np.ndarray, mode_acceptance: np.ndarray,
                 image_keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(keep probability, described)`` per candidate from its screen ``scores`` (k, M): the image's
    decision ``image_keep`` (k,) where some score reaches its describe threshold, the latent
    method's (the smallest p_m among the regions z lies in, else 1) elsewhere."""
    doubt = (scores >= describe[None, :]).any(axis=1)
    latent = modes_acceptance(scores >= thresholds[None, :], mode_acceptance)
    return np.where(doubt, image_keep, latent), doubt


def price_point(keep: np.ndarray, doubt: np.ndarray, near: np.ndarray, floor: float) -> dict:
    """One share's price on samples with known mode labels ``near`` (k, M): the excess removed
    (keep-weighted, as the proof's paired estimate), draws and descriptor calls per kept sample."""
    count = near.sum(axis=1).astype(np.float64)
    excess = count.mean() - near.shape[1] * floor
    return {"excess_removed": float(excess_removed(keep, count, near.shape[1] * floor)) if excess > 0 else None,
            "draws_per_kept_sample": float(1.0 / keep.mean()), "descriptor_calls_per_candidate": float(doubt.mean()),
            "descriptor_calls_per_kept_sample": float(doubt.mean() / keep.mean())}


def choose_share(prices: list[dict], describe_share: float | None, max_descriptor_calls: float | None) -> tuple[float, str]:
    """The describe share and the rule that chose it, from ``prices`` over ``FINE_SHARES``."""
    if describe_share is not None:
        return float(describe_share), "--describe-share"
    if max_descriptor_calls is not None:
        within = [p for p in prices if p["descriptor_calls_per_kept_sample"] <= max_descriptor_calls]
        share = max(p["describe_share"] for p in within)
        if share == 0:
            raise GancheckError(f"--max-descriptor-calls {max_descriptor_calls} lets the cascade describe none of the candidates "
                                f"(describing {FINE_SHARES[1]:.0%} of them costs {prices[1]['descriptor_calls_per_kept_sample']:.3f} "
                                "calls per kept sample): raise it, or use the latent method itself (--method is or gmm)")
        return share, f"the largest share within --max-descriptor-calls {max_descriptor_calls} per kept sample"
    best = prices[-1]["excess_removed"] or 0.0
    share = next(p["describe_share"] for p in prices if (p["excess_removed"] or 0.0) >= KNEE * best)
    return share, f"the smallest share predicted to remove {KNEE:.0%} of what describing every candidate removes"


def price_list(scores: np.ndarray, near: np.ndarray, image_keep: np.ndarray, thresholds: np.ndarray, mode_acceptance: np.ndarray,
               floor: float, shares=FINE_SHARES, off: np.ndarray | None = None, off_vectors: np.ndarray | None = None,
               noise_floor: float = 0.0, seed: int = 0) -> list[dict]:
    """The price of each describe share on samples with screen ``scores``, mode labels ``near`` and
    the image decision ``image_keep``; with ``off`` (mask of off-mode samples) and their descriptor
    vectors, also the Fréchet shift their thinning adds, as a share of ``noise_floor``."""
    out = []
    for q in shares:
        keep, doubt = cascade_keep(scores, thresholds, describe_thresholds(scores, q), mode_acceptance, image_keep)
        row = dict(describe_share=float(q), **price_point(keep, doubt, near, floor))
        if off is not None and noise_floor > 0:
            row["frechet_shift_vs_floor"] = float(frechet_shift(off_vectors, keep[off], seed) / noise_floor)
        out.append(row)
    return out


def screen_of(data, screen: str, region: str | None):
    """The latent method ``screen``'s fitted region model (:class:`~.regions.Screen`)."""
    if screen == "is":
        from gancheck.calibrators.importance import LEARNED, check_mode_counts, learned_screen

        region = region or "auto"
        if region not in LEARNED:
            raise GancheckError(f"--region for a cascade with --screen is must be a learned region ({', '.join(LEARNED)}), got {region!r}")
        check_mode_counts(data, region)
        return learned_screen(data, region)
    from gancheck.calibrators.gmm import mixture_screen

    if region not in (None, "mixture"):
        raise GancheckError(f"--region for a cascade with --screen gmm must be mixture, got {region!r}")
    return mixture_screen(data)


@register("cascade")
class CascadeCalibrator(RejectionCalibrator):
    """The latent method's region decision, with the candidates its screen doubts described and
    decided exactly in descriptor space."""

    tensors = ("decision_onnx", "region_thresholds", "describe_thresholds")
    needs_generator = True

    @classmethod
    def learns_from_budget(cls, **_) -> bool:
        return True

    @classmethod
    def check_options(cls, describe_share: float | None = None, max_descriptor_calls: float | None = None, screen: str | None = None, **_) -> None:
        if describe_share is not None and max_descriptor_calls is not None:
            raise GancheckError("give --describe-share or --max-descriptor-calls, not both (the share is chosen from the budget)")
        if describe_share is not None and not 0 < describe_share <= 1:
            raise GancheckError(f"--describe-share must lie in (0, 1] (the share of candidates to describe), got {describe_share}")
        if max_descriptor_calls is not None and not max_descriptor_calls > 0:
            raise GancheckError(f"--max-descriptor-calls must be above 0 (embedder calls per kept sample), got {max_descriptor_calls}")
        if screen is not None and screen not in SCREENS:
            raise GancheckError(f"--screen must be one of {', '.join(SCREENS)}, got {screen!r}")

    @classmethod
    def fit(cls, data, screen: str | None = None, region: str | None = None, max_draws: float | None = None, max_frechet: float | None = None,
            describe_share: float | None = None, max_descriptor_calls: float | None = None, **_) -> tuple[dict, dict, dict]:
        cls.check_options(describe_share, max_descriptor_calls, screen)
        screen = screen or "is"
        max_draws = DEFAULT_MAX_DRAWS if max_draws is None else float(max_draws)
        fitted = screen_of(data, screen, region)
        thresholds, chosen = held_apart(data, fitted.scores, max_draws, max_frechet)
        apart = split_of(data.indices) >= 1  # the run's samples no model trained on
        scores, near = fitted.scores(data.latents[apart]), data.near[apart]
        vectors, found = described(data.vectors[apart], data.no_face)
        image_keep = image_acceptance(vectors, found, data.mode_vectors, data.r0, data.mode_acceptance, data.no_face)
        floor = data.typical_count / data.n
        prices = price_list(scores, near, image_keep, thresholds, data.mode_acceptance, floor)
        share, rule = choose_share(prices, describe_share, max_descriptor_calls)
        describe = describe_thresholds(scores, share)
        off = found & ~near.any(axis=1)
        grid = price_list(scores, near, image_keep, thresholds, data.mode_acceptance, floor, PRICE_SHARES, off, vectors[off],
                          proof_noise_floor(vectors[off], data.indices[apart][off]), data.seed)
        test = split_of(data.indices) == 2
        regions = region_figures(fitted.scores(data.latents[test]), data.near[test], thresholds, probabilities=fitted.probabilities)
        graph = add_decision(fitted.graph(), "scores", stored_thresholds(thresholds), data.mode_acceptance, stored_thresholds(describe))
        price_describe = np.stack([stored_thresholds(describe_thresholds(scores, q)) for q in PRICE_SHARES])
        params = dict(fitted.params, screen=screen, max_draws=max_draws, describe_share=share, describe_rule=rule, no_face=data.no_face,
                      needs_embedder_at_sampling=True,
                      describe="a candidate whose screen score reaches a mode's describe threshold is generated and described")
        tensors = dict(fitted.tensors, decision_onnx=decision_bytes(graph), region_thresholds=stored_thresholds(thresholds),
                       describe_thresholds=stored_thresholds(describe), price_shares=np.asarray(PRICE_SHARES, np.float64),
                       price_describe_thresholds=price_describe)
        figures = {"regions": regions, "thresholds": chosen, "predicted_price_list": grid,
                   "predicted_on": "the run's samples no model trained on (sample index mod 5 in 3, 4)",
                   "chosen": price_list(scores, near, image_keep, thresholds, data.mode_acceptance, floor, [share])[0]}
        return params, tensors, figures

    @classmethod
    def fit_acceptance(cls, data, tensors: dict, params: dict) -> np.ndarray:
        keep, scores, _ = Decision(tensors["decision_onnx"]).outputs(data.latents)
        vectors, found = described(data.vectors, data.no_face)
        image_keep = image_acceptance(vectors, found, data.mode_vectors, data.r0, data.mode_acceptance, data.no_face)
        return cascade_keep(scores, tensors["region_thresholds"], tensors["describe_thresholds"], data.mode_acceptance, image_keep)[0]

    def validate(self) -> None:
        super().validate()
        m = len(self.mode_acceptance)
        if self.t["decision_onnx"].dtype != np.uint8:
            raise self.damaged("its decision_onnx is not a serialised graph")
        if self.t["region_thresholds"].shape != (m,) or self.t["describe_thresholds"].shape != (m,):
            raise self.damaged(f"region_thresholds or describe_thresholds is not ({m},)")
        self._decision = Decision(self.t["decision_onnx"])

    def screen(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(latent keep probability, scores, described)`` of candidate latents (k, dim)."""
        return self._decision.outputs(z)

    def keep_described(self, latents: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """The keep probability of candidates whose images' descriptor ``vectors`` (as the audit
        stores them) are known: what sampling would decide, without generating them again."""
        keep, _, doubt = self.screen(latents)
        image = super().keep_described(latents, vectors)
        return np.where(doubt, image, keep)

    def descriptor_calls_per_candidate(self, latents: np.ndarray) -> float:
        return float(self.screen(latents)[2].mean())

    def priced(self, latents: np.ndarray, vectors: np.ndarray):
        """``(share, keep probability, described)`` for each share of the file's price list, on
        candidates whose descriptor ``vectors`` are known (the proof's fresh plain draw)."""
        _, scores, _ = self.screen(latents)
        image = super().keep_described(latents, vectors)
        for q, u in zip(self.t["price_shares"], self.t["price_describe_thresholds"]):
            yield (float(q), *cascade_keep(scores, self.t["region_thresholds"], u, self.mode_acceptance, image))

    def _acceptance_for(self, source):
        on_images = super()._acceptance_for(source)

        def acceptance(z: np.ndarray) -> np.ndarray:
            keep, _, doubt = self.screen(z)
            if doubt.any():
                keep[doubt] = on_images(z[doubt])
            return keep

        return acceptance
