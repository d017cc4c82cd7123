"""A real test bed for `gancheck coverage`, `gancheck ldr` and `calibrate --method drs`, built offline.

scikit-learn's bundled handwritten digits (1797 real 8x8 images, no download) train a small GAN
whose generator makes every digit class but one (the *dropped* class): its first latent value picks
a class among the other nine, and a frozen digit classifier's loss holds it to that class. Its
discriminator sees every real digit, the dropped class included, so over training it learns that
those images are real and never generated: its checkpoints' log density ratio (LDRM/LDRV,
Self-Diagnosing GAN) should rank the dropped class's training images highest. Everything is
exported with ``torch.onnx.export``:

    generator.onnx        z (N, 16) ~ N(0, I) -> image (N, 1, 8, 8) in [-1, 1]
    disc_01..T.onnx       image (N, 1, 8, 8) in [-1, 1] -> logit (N, 1): T checkpoints over the
                          second half of training (the last one is the discriminator for drs)
    classifier.onnx       image (N, 1, 8, 8) in [-1, 1] -> softmax (N, 10): the attribute model
    reference/            every real digit as PNG, named CLASS_INDEX.png

Run ``python examples/digits_gan/digits_gan.py OUT_DIR`` (about a minute on 2 cores); the tests
build a smaller version with ``build(out, small=True)``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

LATENT = 16
#: Relative shares of the kept classes, in order, repeating: the generator over-produces some digits.
SHARES = (1, 2, 3)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """float32 (1797, 1, 8, 8) images in [-1, 1] and int labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0) * 2.0 - 1.0
    return x[:, None], d.target.astype(np.int64)


def _generator(torch, kept: list[int]):
    """z (N, LATENT) -> image (N, 1, 8, 8). z[:, 0] picks the digit class among ``kept`` through the
    normal CDF, with unequal shares (``SHARES``, repeating: some digits are over-produced, which
    discriminator rejection sampling should correct) and the dropped class impossible; the other
    values shape the image."""
    nn = torch.nn

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("classes", torch.tensor(kept, dtype=torch.int64))
            share = torch.tensor([float(SHARES[i % len(SHARES)]) for i in range(len(kept))])
            self.register_buffer("bounds", torch.cumsum(share / share.sum(), 0)[:-1])
            self.net = nn.Sequential(nn.Linear(LATENT - 1 + 10, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2),
                                     nn.Linear(128, 64), nn.Tanh())

        def labels(self, z):
            u = 0.5 * (1.0 + torch.erf(z[:, 0] / 2**0.5))
            return self.classes[(u[:, None] >= self.bounds[None, :]).sum(dim=1)]

        def forward(self, z):
            onehot = (self.labels(z)[:, None] == torch.arange(10)[None, :]).float()
            return self.net(torch.cat([z[:, 1:], onehot], dim=1)).reshape(-1, 1, 8, 8)

    return Generator()


def _discriminator(torch):
    nn = torch.nn
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))


def train_classifier(x: np.ndarray, y: np.ndarray, steps: int, seed: int):
    """A digit classifier (the attribute model); returns the logit network."""
    import torch

    torch.manual_seed(seed + 2)
    nn = torch.nn
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    data, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(data), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def train_gan(x: np.ndarray, kept: list[int], classifier, steps: int, checkpoints: int, seed: int):
    """A non-saturating GAN whose discriminator sees every real digit and whose generator makes only
    the ``kept`` classes (its class loss comes from the frozen ``classifier``). Returns the
    generator and ``checkpoints`` copies of the discriminator taken evenly over the second half."""
    import copy

    import torch

    torch.manual_seed(seed)
    gen, disc = _generator(torch, kept), _discriminator(torch)
    for p in classifier.parameters():
        p.requires_grad_(False)
    og = torch.optim.Adam(gen.parameters(), 2e-3, betas=(0.5, 0.99))
    od = torch.optim.Adam(disc.parameters(), 2e-3, betas=(0.5, 0.99))
    data = torch.from_numpy(x)
    bce, ce = torch.nn.functional.binary_cross_entropy_with_logits, torch.nn.functional.cross_entropy
    rng = np.random.default_rng(seed)
    every = max(steps // (2 * checkpoints), 1)
    saved = []
    for step in range(1, steps + 1):
        real = data[rng.integers(0, len(data), 64)]
        fake = gen(torch.randn(64, LATENT))
        loss_d = bce(disc(real), torch.ones(64, 1)) + bce(disc(fake.detach()), torch.zeros(64, 1))
        od.zero_grad()
        loss_d.backward()
        od.step()
        z = torch.randn(64, LATENT)
        images = gen(z)
        loss_g = bce(disc(images), torch.ones(64, 1)) + ce(classifier(images), gen.labels(z))
        og.zero_grad()
        loss_g.backward()
        og.step()
        if step > steps - every * checkpoints and (steps - step) % every == 0:
            saved.append(copy.deepcopy(disc).eval())
    return gen.eval(), saved


def export(model, example, path: Path, input_name: str, output_name: str) -> Path:
    import torch

    torch.onnx.export(model, example, str(path), input_names=[input_name], output_names=[output_name],
                      dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def write_pngs(x: np.ndarray, y: np.ndarray, folder: Path, keep: np.ndarray | None = None) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.clip(np.rint((x[:, 0] + 1.0) * 127.5), 0, 255).astype(np.uint8)
    for i in np.flatnonzero(keep) if keep is not None else range(len(x)):
        Image.fromarray(pixels[i], mode="L").save(folder / f"{y[i]}_{i:04d}.png")


def build(out: str | Path, dropped: int = 0, small: bool = False, seed: int = 0) -> dict:
    """Train and export everything into ``out``; returns the paths and the training time."""
    import torch

    torch.set_num_threads(1)  # tiny networks: a second thread only adds overhead
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = digits()
    kept = [c for c in range(10) if c != dropped]
    gan_steps, checkpoints, cls_steps = (1500, 4, 200) if small else (6000, 8, 400)
    t0 = time.perf_counter()
    classifier = train_classifier(x, y, cls_steps, seed)
    gen, discs = train_gan(x, kept, classifier, gan_steps, checkpoints, seed)
    seconds = time.perf_counter() - t0
    z, img = torch.zeros(2, LATENT), torch.zeros(2, 1, 8, 8)
    paths = {"generator": export(gen, z, out / "generator.onnx", "z", "image"),
             "discriminators": [export(d, img, out / f"disc_{t + 1:02d}.onnx", "image", "logit") for t, d in enumerate(discs)],
             "classifier": export(torch.nn.Sequential(classifier, torch.nn.Softmax(dim=1)), img, out / "classifier.onnx", "image", "probabilities")}
    write_pngs(x, y, out / "reference")
    info = {"dropped_class": dropped, "small": small, "seed": seed, "train_seconds": round(seconds, 1),
            "gan_steps": gan_steps, "discriminator_checkpoints": checkpoints}
    (out / "testbed.json").write_text(json.dumps(info, indent=2))
    return dict(paths, **info)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dropped", type=int, default=0, help="the digit class the generator never sees")
    parser.add_argument("--small", action="store_true", help="the tests' shorter training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps({k: str(v) for k, v in build(args.out, args.dropped, args.small, args.seed).items()}, indent=2))
