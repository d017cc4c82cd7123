"""The figures of examples/digits_gan/README.md: build the test bed (unless OUT already holds it),
then run coverage, ldr and drs on it through gancheck's Python API and print what they find.

    python examples/digits_gan/measure.py OUT_DIR [--small]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import digits_gan  # noqa: E402

import gancheck.api as api  # noqa: E402
from embedders.scorer import ImageScorer  # noqa: E402


def class_histogram(classifier: Path, images: np.ndarray) -> np.ndarray:
    probs = ImageScorer(classifier, what="classifier").scores(images)
    return np.bincount(probs.argmax(1), minlength=10) / len(images)


def main(out: Path, small: bool) -> dict:
    if not (out / "testbed.json").is_file():
        digits_gan.build(out, small=small)
    bed = json.loads((out / "testbed.json").read_text())
    gen, ref, classifier = out / "generator.onnx", out / "reference", out / "classifier.onnx"
    discs = sorted(out.glob("disc_*.onnx"))
    dropped = str(bed["dropped_class"])
    cov = api.coverage(str(gen), ref, n=10_000, embedder_options={"size": 8}, out=out / "coverage", attributes=f"onnx:{classifier}",
                       attribute_names=[str(d) for d in range(10)])
    first_dropped = [all(n.startswith(dropped + "_") for n in d["examples"]) for d in cov["dropped"]]
    ldr = api.ldr(discs, ref, out=out / "ldr.parquet", weights_out=out / "weights.csv", top=178, html=out / "ldr.html")
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    table = pq.read_table(out / "ldr.parquet").to_pydict()
    labels = np.array([int(f.split("_")[0]) for f in table["file"]])
    ldrm = np.asarray(table["ldrm"])
    run = out / "run"
    api.audit(str(gen), n=10_000, anchors=1_000, embedder_options={"size": 8}, out=run, overwrite=True)
    cal = api.calibrate(run, method="drs", discriminator=discs[-1], overwrite=True)
    real = np.bincount(labels, minlength=10) / len(labels)
    plain = class_histogram(classifier, api.sample_images(str(gen), n=10_000, seed=1))
    drs = class_histogram(classifier, api.sample_images(str(gen), n=10_000, seed=1, calibrator=run / "calibrator-drs.safetensors"))
    figures = {
        "train_seconds": bed["train_seconds"],
        "coverage": {"ndb": cov["ndb"], "k": cov["k"], "ndb_over_k": cov["ndb_over_k"], "under": cov["under_generated"],
                     "leading_dropped_bins_all_dropped_class": int(np.argmin(first_dropped + [False])) if first_dropped else 0,
                     "first_dropped": cov["dropped"][0], "attribute_findings": cov["attributes"]["findings"],
                     "frechet_attribute_distance": cov["attributes"]["frechet_attribute_distance"]},
        "ldr": {"auc_ldrm": roc_auc_score(labels == int(dropped), ldrm), "auc_score": roc_auc_score(labels == int(dropped), table["score"]),
                "dropped_share_of_top": float(np.mean([t["file"].startswith(dropped + "_") for t in ldr["top"]])),
                "mean_ldrm_per_class": [round(float(ldrm[labels == k].mean()), 2) for k in range(10)]},
        "drs": {"draws_per_sample": cal["after"]["draws_per_sample"], "real": real.round(3).tolist(), "plain": plain.round(3).tolist(),
                "drs": drs.round(3).tolist(), "tv_plain": float(0.5 * np.abs(plain - real).sum()), "tv_drs": float(0.5 * np.abs(drs - real).sum())},
    }
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    print(json.dumps(main(args.out, args.small), indent=2))
