"""Data: CIFAR-12 (the report's data set), CIFAR-10, an image folder, a synthetic set;
built once, cached as one file, and served from the training device.

CIFAR-10 and CIFAR-100: Krizhevsky, "Learning Multiple Layers of Features from Tiny
Images", 2009. CIFAR-12 = CIFAR-10 + CIFAR-100's coarse classes 1 (fish) and 2
(flowers), read from the ``coarse_labels`` key of CIFAR-100's python pickles.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import tarfile
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ..colab import drive
from ..registry import SettingError, lookup, setting
from ..rundir.files import atomic_write
from .archives import (CIFAR_ARCHIVES, COMPLETE, DataError, cifar_folder, find_archive,
                       missing_hint, work_root)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR12_CLASSES = CIFAR10_CLASSES + ("fish", "flowers")
CIFAR100_EXTRA = {1: "fish", 2: "flowers"}  # CIFAR-100 coarse label -> our class
SOURCES = ("cifar12", "cifar10", "folder", "synthetic")
CACHE_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@dataclass
class Dataset:
    """A data set in memory: uint8 images (N, 32, 32, 3), int64 labels, class names and
    the per-channel mean and std of the training split on the [0, 1] scale."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    x_val: np.ndarray | None = None  # a hold-out from the training split (``holdout``)
    y_val: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        val = f", {len(self.y_val):,} validation" if self.y_val is not None else ""
        return (f"Dataset({self.name!r}: {len(self.y_train):,} training{val} and "
                f"{len(self.y_test):,} test images of {self.x_train.shape[1]}x"
                f"{self.x_train.shape[2]}, {self.num_classes} classes {list(self.classes)})")

    def for_run(self, val_size: int | None, train_size: int | None, test_size: int | None,
                seed: int) -> "Dataset":
        """The splits one run trains on: the validation hold-out first (so the same images
        are held out for any ``train_size``), then the seeded subsets."""
        data = self.holdout(val_size, seed) if val_size else self
        return data.subset(train_size, test_size, seed)

    def holdout(self, val_size: int, seed: int = 0) -> "Dataset":
        """Move ``val_size`` training images, stratified by class and seeded, into a
        validation split (``x_val``, ``y_val``): each class keeps its share (largest
        remainders), and the same seed always holds out the same images."""
        n = len(self.y_train)
        if not 0 < val_size < n:
            raise SettingError(lambda field: f"{field} must be between 1 and {n - 1} (the "
                               f"training split has {n} images), got {val_size}",
                               field=setting("val_size"))
        counts = np.bincount(self.y_train, minlength=self.num_classes)
        quota = val_size * counts / n
        take = np.floor(quota).astype(int)
        for c in np.argsort(-(quota - take), kind="stable")[: val_size - take.sum()]:
            take[c] += 1
        val = np.concatenate([
            np.random.default_rng([seed, 2, c]).permutation(np.flatnonzero(self.y_train == c))[:k]
            for c, k in enumerate(take)])
        val = np.sort(val)
        keep = np.setdiff1d(np.arange(n), val)
        return replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep],
                       x_val=self.x_train[val], y_val=self.y_train[val])

    def subset(self, train_size: int | None = None, test_size: int | None = None,
               seed: int = 0) -> "Dataset":
        """A seeded random subset of each split (same seed, same images); mean and std
        stay those of the whole training split."""
        def pick(x, y, n, stream):
            if n is None or n >= len(y):
                return x, y
            # one generator per split: the test subset does not depend on train_size
            idx = np.sort(np.random.default_rng([seed, stream]).permutation(len(y))[:n])
            return x[idx], y[idx]

        x_tr, y_tr = pick(self.x_train, self.y_train, train_size, 0)
        x_te, y_te = pick(self.x_test, self.y_test, test_size, 1)
        return replace(self, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)

    def counts(self, split: str = "train") -> dict[str, int]:
        y = self.y_train if split == "train" else self.y_test
        return {c: int(n) for c, n in zip(self.classes, np.bincount(y, minlength=len(self.classes)))}


def channel_mean_std(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A data set's per-channel mean and std (``Dataset.mean``, ``Dataset.std``), computed
    from its uint8 NHWC images, on the [0, 1] scale."""
    flat = x.reshape(-1, x.shape[-1])
    mean = flat.mean(axis=0, dtype=np.float64)
    sq = np.einsum("ij,ij->j", flat, flat, dtype=np.float64) / len(flat)  # no float copy
    std = np.sqrt(sq - mean ** 2)
    return tuple(float(m) / 255 for m in mean), tuple(float(s) / 255 for s in std)


def _make(name, x_tr, y_tr, x_te, y_te, classes) -> Dataset:
    mean, std = channel_mean_std(x_tr)
    return Dataset(name, np.ascontiguousarray(x_tr, dtype=np.uint8), y_tr.astype(np.int64),
                   np.ascontiguousarray(x_te, dtype=np.uint8), y_te.astype(np.int64),
                   tuple(classes), mean, std)


# ------------------------------------------------------------------ CIFAR ----


def _read_cifar(root: Path, which: int, download: bool, read):
    """``read(folder)``; a folder whose files cannot be read (extracted only in part by
    an earlier, killed session) is extracted afresh from the archive, never trusted."""
    folder = cifar_folder(root, which, download)
    try:
        return read(folder)
    except DataError:
        if (folder / COMPLETE).is_file() or find_archive(root, CIFAR_ARCHIVES[which]) is None:
            raise
    return read(cifar_folder(root, which, download, rebuild=True))


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path} is missing: the CIFAR folder is incomplete. Delete "
                        f"{path.parent} and run again to extract it afresh.")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as e:
        raise DataError(f"{path} is damaged ({type(e).__name__}): delete {path.parent} and run "
                        "again to extract it afresh") from e
    if not isinstance(d, dict) or "data" not in d:
        raise DataError(f"{path} is not a CIFAR python pickle: delete {path.parent} and run again")
    return d


def _pickle_images(d: dict) -> np.ndarray:
    # rows of 3072 bytes: 1024 red, 1024 green, 1024 blue, each 32x32 row-major
    return np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(d: dict, key: str, n_classes: int, path: str) -> np.ndarray:
    y = np.asarray(d[key])
    if len(y) != len(d["data"]) or (len(y) and (y.min() < 0 or y.max() >= n_classes)):
        raise DataError(f"{path}: labels out of range or not one per image: not a CIFAR pickle. "
                        "Delete the folder and run again to extract it afresh")
    return y


def _read_cifar10(root: Path, download: bool):
    def read(folder):
        parts = [_unpickle(folder / f"data_batch_{i}") for i in range(1, 6)]
        test = _unpickle(folder / "test_batch")
        x_tr = np.concatenate([_pickle_images(p) for p in parts])
        y_tr = np.concatenate([_labels(p, "labels", 10, str(folder)) for p in parts])
        return x_tr, y_tr, _pickle_images(test), _labels(test, "labels", 10, str(folder))
    return _read_cifar(root, 10, download, read)


def _read_cifar100_extra(root: Path, download: bool):
    """CIFAR-100 images whose coarse label is fish or flowers, relabelled 10 and 11."""
    def read(folder):
        out = []
        for split in ("train", "test"):
            d = _unpickle(folder / split)
            if "coarse_labels" not in d:
                raise DataError(f"{folder / split} has no 'coarse_labels': not a CIFAR-100 "
                                "python pickle. Delete the folder and run again.")
            coarse = _labels(d, "coarse_labels", 20, str(folder / split))
            keep = np.isin(coarse, list(CIFAR100_EXTRA))
            new_label = {c: 10 + i for i, c in enumerate(sorted(CIFAR100_EXTRA))}
            out += [_pickle_images(d)[keep], np.array([new_label[c] for c in coarse[keep]])]
        return out
    return _read_cifar(root, 100, download, read)


def build_cifar10(root: Path, download: bool = True) -> Dataset:
    return _make("cifar10", *_read_cifar10(root, download), CIFAR10_CLASSES)


def build_cifar12(root: Path, download: bool = True) -> Dataset:
    if not download:  # name every archive that is missing, not only the first
        missing = [s.archive for s in CIFAR_ARCHIVES.values() if find_archive(root, s) is None
                   and not any((b / s.folder).is_dir() for b in (root, work_root(root)))]
        if missing:
            raise DataError(f"CIFAR-12 needs CIFAR-10 and CIFAR-100, and {root.resolve()} lacks "
                            f"{' and '.join(missing)}, and this call does not download. " + missing_hint(missing, root))
    x_tr, y_tr, x_te, y_te = _read_cifar10(root, download)
    ex_tr, ey_tr, ex_te, ey_te = _read_cifar100_extra(root, download)
    return _make("cifar12", np.concatenate([x_tr, ex_tr]), np.concatenate([y_tr, ey_tr]),
                 np.concatenate([x_te, ex_te]), np.concatenate([y_te, ey_te]),
                 CIFAR12_CLASSES)


# ----------------------------------------------------------------- folder ----

def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise DataError(f"cannot read image {where}: {e}") from e
    if arr.shape != (32, 32, 3):
        raise DataError(f"image {where} is {arr.shape[1]}x{arr.shape[0]}; colabkit's "
                        "models take 32x32 images: resize the folder's images first")
    return arr


def _folder_entries(root: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """(split, class, name, bytes) for each image of a tree or a tar(.gz) of one."""
    if root.is_file():
        with tarfile.open(root) as tar:
            for m in tar:
                parts = Path(m.name).parts
                if m.isfile() and len(parts) >= 3 and Path(m.name).suffix.lower() in IMAGE_SUFFIXES:
                    split, cls = parts[-3], parts[-2]
                    if split in ("train", "test"):
                        yield split, cls, m.name, tar.extractfile(m).read()
        return
    for split in ("train", "test"):
        for path in sorted((root / split).glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield split, path.parent.name, str(path), path.read_bytes()


def build_folder(root: Path) -> Dataset:
    """``root/train/<class>/*.png|jpg`` and ``root/test/<class>/...`` (or a .tar.gz of
    that tree); classes in sorted order; every image 32x32."""
    if root.is_dir() and not ((root / "train").is_dir() and (root / "test").is_dir()):
        raise DataError(f"{root} must hold train/<class>/ and test/<class>/ folders of "
                        "images (or be a .tar.gz of such a tree)")
    if not root.exists():
        raise DataError(lambda data_root: f"{root} does not exist: give the data root "
                        f"({data_root}) as a folder holding train/ and test/, or a .tar.gz of one",
                        data_root=setting("data_root"))
    images = {"train": ([], []), "test": ([], [])}
    try:
        for split, cls, where, data in _folder_entries(root):
            images[split][0].append(_decode(data, where))
            images[split][1].append(cls)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DataError(f"{root} is not a readable .tar.gz ({type(e).__name__}: {e}): the archive "
                        "is damaged or truncated; make it again, or give the extracted folder") from e
    train_classes, test_classes = sorted(set(images["train"][1])), sorted(set(images["test"][1]))
    if not train_classes:
        raise DataError(f"no images found under {root}/train/<class>/")
    if train_classes != test_classes:
        missing = sorted(set(train_classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(train_classes))
        raise DataError(f"train/ and test/ of {root} must hold the same classes: "
                        f"missing from test/: {missing}; only in test/: {extra}")
    index = {c: i for i, c in enumerate(train_classes)}
    arrays = []
    for split in ("train", "test"):
        xs, names = images[split]
        arrays += [np.stack(xs), np.array([index[c] for c in names])]
    return _make("folder", *arrays, train_classes)


def _fingerprint(root: Path) -> str:
    """Changes when the folder's files change, so a stale cache is rebuilt."""
    h = hashlib.sha256()
    paths = [root] if root.is_file() else sorted(root.glob("*/*/*"))
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root.parent)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# -------------------------------------------------------------- synthetic ----

def synthetic(train_size: int = 6000, test_size: int = 1200, num_classes: int = 12,
              seed: int = 0) -> Dataset:
    """A procedurally generated 32x32 set a small ResNet learns in a few epochs: class k
    has its own colour and stripe frequency; each image adds random phase, brightness
    and noise. Seeded and offline: the default for demos and tests."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.15, 0.85, size=(num_classes, 3))
    freqs = 1 + np.arange(num_classes) % 4
    yy, xx = np.mgrid[0:32, 0:32] / 32.0

    def split(n):
        y = np.arange(n) % num_classes
        rng.shuffle(y)
        phase = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        orient = (np.arange(n) % 2)[:, None, None]  # stripes either way: not the cue
        coord = np.where(orient == 1, xx[None], yy[None])
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freqs[y][:, None, None] * coord + phase)
        img = colours[y][:, None, None, :] * (0.55 + 0.45 * stripes[..., None])
        img = img * rng.uniform(0.8, 1.2, size=(n, 1, 1, 1)) + rng.normal(0, 0.06, img.shape)
        return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), y

    x_tr, y_tr = split(train_size)
    x_te, y_te = split(test_size)
    classes = [f"class{k:02d}" for k in range(num_classes)]
    if num_classes == 12:
        classes = list(CIFAR12_CLASSES)  # stand-ins, so reports look like the real thing
    return _make("synthetic", x_tr, y_tr, x_te, y_te, classes)


# the synthetic set load_dataset gives: fixed content, generated once per process (a second
# or more of float arithmetic) and handed out as copies
_synthetic_set = functools.lru_cache(maxsize=1)(lambda: synthetic(seed=0))


# ------------------------------------------------------------------ cache ----

_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in _ARRAYS + ("classes", "mean", "std", "fingerprint"):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}{a.dtype}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def save_cache(ds: Dataset, path: Path, fingerprint: str = "") -> None:
    """Write atomically: a partial file never takes the cache's name."""
    arrays = {k: getattr(ds, k) for k in _ARRAYS}
    arrays.update(classes=np.array(ds.classes), mean=np.array(ds.mean),
                  std=np.array(ds.std), fingerprint=np.array(fingerprint),
                  version=np.array(CACHE_VERSION))
    arrays["checksum"] = np.array(_checksum(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def load_cache(path: Path, name: str, fingerprint: str = "") -> Dataset | None:
    """The cached data set, or None if absent, stale or failing its checksum."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        current = (int(arrays["version"]) == CACHE_VERSION
                   and str(arrays["fingerprint"]) == fingerprint)
        ok = current and str(arrays["checksum"]) == _checksum(arrays)
    except Exception as e:
        warnings.warn(f"data cache {path} is unreadable ({e}); rebuilding it")
        return None
    if not current:  # the source changed (or an older colabkit wrote it): rebuilt quietly
        return None
    if not ok:
        warnings.warn(f"data cache {path} failed its checksum; rebuilding it")
        return None
    return Dataset(name, *(arrays[k] for k in _ARRAYS), tuple(str(c) for c in arrays["classes"]),
                   tuple(float(v) for v in arrays["mean"]), tuple(float(v) for v in arrays["std"]))


def load_dataset(name: str = "cifar12", root: str | os.PathLike = "data", *,
                 download: bool = True, cache: bool = True,
                 train_size: int | None = None, test_size: int | None = None,
                 seed: int = 0) -> Dataset:
    """Load a data set by name: ``cifar12``, ``cifar10``, ``folder`` or ``synthetic``.

    ``root`` is where CIFAR archives are downloaded or found, or for ``folder`` the tree
    holding ``train/`` and ``test/`` (or a .tar.gz of it). Built sets are cached in one
    file (``colabkit-<name>.npz``) beside the source; later loads read only that file.
    ``train_size``/``test_size`` take a seeded random subset.
    """
    lookup(SOURCES, name, "dataset")
    root = Path(root).expanduser()
    if name == "synthetic":
        # fixed content, generated once; the seeded subset (or the whole set) is copied, so
        # no caller shares arrays with the cache
        ds = _synthetic_set().subset(train_size, test_size, seed)
        return replace(ds, **{k: np.array(getattr(ds, k)) for k in _ARRAYS})

    fingerprint = _fingerprint(root) if name == "folder" and root.exists() else ""
    cache_path = (root.parent if root.is_file() else root) / f"colabkit-{name}.npz"
    ds = load_cache(cache_path, name, fingerprint) if cache else None
    if ds is None:
        build = {"cifar12": build_cifar12, "cifar10": build_cifar10}.get(name)
        ds = build(root, download) if build else build_folder(root)
        if cache and not drive.mount_live(cache_path):
            # under Colab's Drive mount point while Drive is not mounted: the file would land
            # on the VM's disk, be lost with it, and make the next drive.mount refuse
            warnings.warn(f"the data cache {cache_path} is not written: Drive is not mounted at "
                          f"{drive.DRIVE_MOUNTPOINT}. Run colabkit.mount_drive() first, and the next "
                          "load reads the cache instead of building the data set again")
        elif cache:
            try:
                save_cache(ds, cache_path, fingerprint)
            except OSError as e:
                warnings.warn(f"could not write the data cache {cache_path} ({e}); "
                              "the next load will build the data set again")
    return ds.subset(train_size, test_size, seed)


