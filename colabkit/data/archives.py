"""The CIFAR archives: found in the data folder or downloaded (md5-checked), and extracted
on local disk, never on Google Drive (Drive is slow for many files, and what is replaced
there fills its Trash). An extraction is atomic and marked complete; a half-extracted
folder left by a killed session is rebuilt from the archive, never trusted."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..colab.places import is_drive, local_area
from ..registry import Advice
from ..rundir.files import empty_then_remove, temp_path


class DataError(Advice):
    """Data could not be found, downloaded or read; the message says what to do."""


@dataclass(frozen=True)
class Archive:
    which: int
    folder: str
    archive: str
    md5: str
    files: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"https://www.cs.toronto.edu/~kriz/{self.archive}"


CIFAR_ARCHIVES = {  # the md5 sums the CIFAR page publishes (torchvision checks the same)
    10: Archive(10, "cifar-10-batches-py", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")),
    100: Archive(100, "cifar-100-python", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                 ("train", "test", "meta")),
}


COMPLETE = ".colabkit-complete"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, timeout_s: float = 60) -> None:
    """``url`` saved as ``dest`` whole and md5-checked, or not at all: the bytes go to a
    temporary name that is renamed only once they check out. The standard library does it,
    so reading CIFAR imports no torchvision (2-3 s of every process's start)."""
    tmp = temp_path(dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
        if _md5(tmp) != md5:
            raise OSError(f"the download from {url} is damaged (its md5 is not {md5})")
        os.replace(tmp, dest)
    finally:
        empty_then_remove(tmp)


def work_root(root: Path) -> Path:
    """Where archives are downloaded and extracted: ``root`` itself, or for a ``root``
    on Google Drive a local folder (Drive is slow for many files, and what is replaced
    there fills its Trash); only the .npz cache goes to Drive."""
    return local_area() / "data" if is_drive(root) else root


def find_archive(root: Path, src: Archive) -> Path | None:
    """The archive in ``root`` or in the local working area, if either has it."""
    return next((b / src.archive for b in (root, work_root(root)) if (b / src.archive).is_file()), None)


def missing_hint(names: list[str], root: Path) -> str:
    return (f"Place {' and '.join(names)} (from https://www.cs.toronto.edu/~kriz/cifar.html) in "
            f"{root.resolve()} and run again, or use the data set 'folder' (--dataset folder) "
            "with a train/<class>/ and test/<class>/ image tree, or 'synthetic' (--dataset "
            "synthetic) to run without any download.")


def _extract(archive: Path, src: Archive, dest_root: Path) -> Path:
    """Extract into a temporary folder, then rename it: a kill never leaves a folder
    that looks complete. A marker file says it was."""
    dest_root.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest_root / src.folder)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if Path(m.name).parts[:1] == (src.folder,)]
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **safe)
        (tmp / src.folder / COMPLETE).write_text(archive.name)
        final = dest_root / src.folder
        if final.exists():
            _discard(final)
        os.replace(tmp / src.folder, final)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive} could not be extracted ({type(e).__name__}: {e}): delete it "
                        "and run again to download it afresh") from e
    finally:
        if tmp.exists():
            _discard(tmp)
    return final


def _discard(folder: Path) -> None:
    """Remove derived data (an extracted folder), emptying large files first."""
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_dir():
            p.rmdir()
        else:
            empty_then_remove(p)
    folder.rmdir()


def cifar_folder(root: Path, which: int, download: bool, rebuild: bool = False) -> Path:
    """The extracted CIFAR folder: one already complete, else extracted from the archive
    (found in ``root`` or downloaded, md5-checked). ``rebuild``: the folder found was
    damaged; extract it afresh."""
    src = CIFAR_ARCHIVES[which]
    work = work_root(root)
    for base in dict.fromkeys((root, work)):
        folder = base / src.folder
        if not rebuild and folder.is_dir() and all((folder / f).is_file() for f in src.files):
            return folder
    archive = find_archive(root, src)
    if archive is not None and _md5(archive) != src.md5:
        raise DataError(f"{archive} is damaged: its md5 is not CIFAR-{which}'s. Delete it and run "
                        f"again to download it afresh, or replace it with a good copy from {src.url}")
    if archive is None:
        partial = next((b / src.folder for b in (root, work) if (b / src.folder).is_dir()), None)
        if not download and partial is not None:
            missing = [f for f in src.files if not (partial / f).is_file()]
            raise DataError(f"{partial} is incomplete (extracted only in part? missing "
                            f"{', '.join(missing) or 'nothing, but a file is damaged'}). "
                            + missing_hint([src.archive], root) + " It is rebuilt from the archive.")
        if not download:
            raise DataError(f"CIFAR-{which} is not in {root.resolve()}, and this call does not download. "
                            + missing_hint([src.archive], root))
        try:
            work.mkdir(parents=True, exist_ok=True)
            download(src.url, work / src.archive, src.md5)
        except Exception as e:  # URLError, socket errors, md5 mismatch: all say the same
            raise DataError(f"CIFAR-{which} could not be downloaded into {work.resolve()} "
                            f"({type(e).__name__}: {e}). " + missing_hint([src.archive], root)) from e
        archive = work / src.archive
    return _extract(archive, src, work)
