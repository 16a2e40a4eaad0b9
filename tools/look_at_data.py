"""Load an image tree (or CIFAR) through colabkit and save a grid of augmented samples.

    python tools/look_at_data.py data/cifar10-jpeg.tar.gz --out grid.png

Prints counts per class and the per-channel mean and std; the grid shows, per row, one
image per class and then the same images through an experiment's augmentation.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from colabkit.data.augment import Augmenter  # noqa: E402
from colabkit.data.sources import load_dataset  # noqa: E402
from colabkit.experiments import get_experiment  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("root", help="folder with train/ and test/, a .tar.gz of one, or a CIFAR data root")
    p.add_argument("--dataset", default="folder")
    p.add_argument("--experiment", default="da")
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--out", default="augmented.png")
    args = p.parse_args(argv)

    t = time.perf_counter()
    ds = load_dataset(args.dataset, args.root)
    print(f"loaded in {time.perf_counter() - t:.2f} s: {len(ds.y_train)} train, {len(ds.y_test)} test")
    print("train per class:", ds.counts("train"))
    print("test per class: ", ds.counts("test"))
    print("mean:", tuple(round(m, 4) for m in ds.mean), "std:", tuple(round(s, 4) for s in ds.std))

    rng = np.random.default_rng(0)
    k = ds.num_classes
    idx = np.array([rng.choice(np.flatnonzero(ds.y_train == c)) for c in range(k)])
    x = torch.from_numpy(ds.x_train[idx]).permute(0, 3, 1, 2).float() / 255
    aug = Augmenter(get_experiment(args.experiment).augment)
    g = torch.Generator().manual_seed(0)
    rows = [x] + [aug(x, g) for _ in range(args.rows - 1)]
    fig = Figure(figsize=(k * 0.9, args.rows * 0.95), layout="constrained")
    axes = fig.subplots(args.rows, k)
    for r, batch in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(batch[c].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(ds.classes[c], fontsize=7)
    axes[0, 0].set_ylabel("original", fontsize=7)
    axes[1, 0].set_ylabel(f"'{args.experiment}'", fontsize=7)
    fig.savefig(args.out, dpi=120)
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
