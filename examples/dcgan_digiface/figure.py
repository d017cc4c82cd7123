"""The paper's Figure 4 for a gancheck run: the worst-case mode and its nearest neighbours in C,
next to a random anchor and its own.

    python examples/dcgan_digiface/figure.py RUN_DIR GENERATOR.onnx [--k 8] [--out worst_vs_random.png]

Images are regenerated from (seed, sample index); nothing but the run directory is read. The
worst mode's neighbours come from RUN_DIR/neighbors.parquet; the random anchor's are computed from
RUN_DIR/embeddings.parquet (audit with --save-embeddings) and the anchor's stored embedding.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gancheck.sources.latents import LatentPrior  # noqa: E402
from gancheck.maths import angular_distance  # noqa: E402


def generate(onnx_path: Path, seed: int, indices) -> np.ndarray:
    """Images (N, 64, 64, 3) in [0, 1] for sample indices, as the audit drew them."""
    import onnxruntime as ort

    z = LatentPrior(shape=(100, 1, 1)).sample(seed, indices)
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
    return np.clip((out.transpose(0, 2, 3, 1) + 1) / 2, 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("generator", type=Path)
    parser.add_argument("--k", type=int, default=8, help="neighbours shown per row")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "worst_vs_random.png")
    parser.add_argument("--pick", type=int, default=0, help="seed choosing the random anchor")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq

    report = json.loads((args.run / "report.json").read_text())
    seed, r = report["seed"], report["radius"]
    nb = pq.read_table(args.run / "neighbors.parquet").to_pydict()
    worst = report["worst_mode"]["sample_index"]
    rows = {"worst": (worst, [(s, d) for a, s, d in sorted(zip(nb["anchor_index"], nb["sample_index"], nb["distance"]),
                                                            key=lambda t: t[2]) if a == worst][: args.k])}

    anchors = pq.read_table(args.run / "anchors.parquet").to_pydict()
    emb = pq.read_table(args.run / "embeddings.parquet").to_pydict()
    i = int(np.random.default_rng(args.pick).integers(len(anchors["sample_index"])))
    anchor_vec = np.asarray(anchors["embedding"][i], np.float32)
    coll = np.asarray(emb["embedding"], np.float32)
    d = angular_distance(coll @ anchor_vec)
    order = np.argsort(d)[: args.k]
    rows["random"] = (anchors["sample_index"][i], [(emb["sample_index"][j], d[j]) for j in order])

    mccs = dict(zip(anchors["sample_index"], anchors["mccs"]))
    counts = dict(zip(anchors["sample_index"], anchors["neighbors"]))
    fig, axes = plt.subplots(2, args.k + 1, figsize=(1.3 * (args.k + 1), 3.8))
    names = {"worst": "worst mode $I_w$", "random": "random anchor"}
    for row, (label, (anchor, neighbours)) in enumerate(rows.items()):
        images = generate(args.generator, seed, [anchor] + [s for s, _ in neighbours])
        titles = [f"{names[label]}\nMCCS {mccs[anchor]:.3f}\n$N_r$ = {counts[anchor]}"] + [f"d = {dist:.4f}" for _, dist in neighbours]
        colours = ["black"] + ["red" if dist <= r else "black" for _, dist in neighbours]
        for ax, im, title, colour in zip(axes[row], images, titles, colours):
            ax.imshow(im)
            ax.set_title(title, fontsize=7, color=colour)
            ax.axis("off")
    fig.suptitle(f"nearest neighbours in C (red: within r = {r:.4f})", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
