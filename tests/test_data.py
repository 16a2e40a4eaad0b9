"""colabkit.data.sources, colabkit.data.archives, colabkit.data.loader: data sets built, cached and batched."""
import tarfile
from pathlib import Path
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest
import torch

from colabkit.data.archives import DataError
from colabkit.data.augment import Augmenter
from colabkit.data.sources import CIFAR12_CLASSES, channel_mean_std, load_dataset, synthetic
from colabkit.data.loader import DeviceLoader
from colabkit.experiments import PRESETS

from conftest import write_cifar10, write_cifar100, write_image_folder


@pytest.fixture
def cifar_root(tmp_path):
    root = tmp_path / "data"
    c10 = write_cifar10(root, per_class_train=3, per_class_test=2)
    c100 = write_cifar100(root, per_fine_train=2, per_fine_test=1)
    return root, c10, c100


def test_cifar12_from_real_pickle_formats(cifar_root):
    root, (y10_train, y10_test), c100 = cifar_root
    ds = load_dataset("cifar12", root, download=False)
    assert ds.classes == CIFAR12_CLASSES and ds.classes[10:] == ("fish", "flowers")
    # CIFAR-10: 3/2 per class; CIFAR-100 coarse 1 and 2: fine 5..9 and 10..14, 2/1 each
    assert len(ds.y_train) == 30 + 2 * 5 * 2 and len(ds.y_test) == 20 + 2 * 5 * 1
    counts = ds.counts("train")
    assert all(counts[c] == 3 for c in CIFAR12_CLASSES[:10])
    assert counts["fish"] == counts["flowers"] == 10
    assert ds.x_train.shape == (50, 32, 32, 3) and ds.x_train.dtype == np.uint8
    # the first red byte is the image's code: CIFAR-10 label, or 100 + CIFAR-100 fine label
    code = ds.x_train[:, 0, 0, 0].astype(int)
    assert np.array_equal(code[:30], y10_train) and np.array_equal(ds.y_train[:30], y10_train)
    fine = code[30:] - 100
    assert set(fine) == set(range(5, 15))
    assert np.array_equal(ds.y_train[30:], np.where(fine < 10, 10, 11))  # fish -> 10, flowers -> 11
    # channels unpacked from CIFAR's planar rows: green 200, blue 100 at pixel (0, 0)
    assert (ds.x_train[:, 0, 0, 1] == 200).all() and (ds.x_train[:, 0, 0, 2] == 100).all()
    mean, std = channel_mean_std(ds.x_train)
    assert ds.mean == pytest.approx(mean) and all(0 < s < 0.5 for s in ds.std)


def test_cifar10_keeps_ten_classes(cifar_root):
    root, (y_train, y_test), _ = cifar_root
    ds = load_dataset("cifar10", root, download=False)
    assert ds.num_classes == 10 and np.array_equal(ds.y_test, y_test)


def test_second_load_reads_only_the_cache(cifar_root):
    root, _, _ = cifar_root
    first = load_dataset("cifar12", root, download=False)
    assert (root / "colabkit-cifar12.npz").is_file()
    for d in ("cifar-10-batches-py", "cifar-100-python"):
        for f in (root / d).iterdir():
            f.unlink()
    second = load_dataset("cifar12", root, download=False)
    assert np.array_equal(first.x_train, second.x_train) and second.classes == first.classes
    assert second.mean == first.mean


def test_corrupt_cache_is_rebuilt_not_used(cifar_root):
    root, _, _ = cifar_root
    good = load_dataset("cifar12", root, download=False)
    cache = root / "colabkit-cifar12.npz"
    raw = bytearray(cache.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flip a byte inside the image array: the zip CRC notices
    cache.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="unreadable"):
        again = load_dataset("cifar12", root, download=False)
    assert np.array_equal(again.x_train, good.x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is clean again
        load_dataset("cifar12", root, download=False)


def test_cache_with_valid_zip_but_wrong_content_fails_its_own_checksum(cifar_root):
    root, _, _ = cifar_root
    good = load_dataset("cifar12", root, download=False)
    cache = root / "colabkit-cifar12.npz"
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["x_train"] = arrays["x_train"].copy()
    arrays["x_train"][0, 0, 0, 0] ^= 1  # one pixel, the stored checksum kept: CRCs all valid
    np.savez(cache, **arrays)
    with pytest.warns(UserWarning, match="failed its checksum"):
        again = load_dataset("cifar12", root, download=False)
    assert np.array_equal(again.x_train, good.x_train)


def _archive(root, folder_name, out):
    with tarfile.open(out, "w:gz") as tar:
        tar.add(root / folder_name, arcname=folder_name)
    import hashlib
    return hashlib.md5(out.read_bytes()).hexdigest()


def test_archives_on_drive_are_extracted_locally_and_only_the_cache_goes_to_drive(tmp_path, monkeypatch):
    import dataclasses

    from colabkit.data import archives

    src, drive_root, local = tmp_path / "src", tmp_path / "drive" / "data", tmp_path / "local"
    write_cifar10(src)
    write_cifar100(src)
    drive_root.mkdir(parents=True)
    monkeypatch.setenv("COLABKIT_DRIVE", str(tmp_path / "drive"))
    monkeypatch.setenv("COLABKIT_LOCAL", str(local))
    for which in (10, 100):
        s = archives.CIFAR_ARCHIVES[which]
        md5 = _archive(src, s.folder, drive_root / s.archive)
        monkeypatch.setitem(archives.CIFAR_ARCHIVES, which, dataclasses.replace(s, md5=md5))
    ds = load_dataset("cifar12", drive_root, download=False)
    assert len(ds.y_train) == 30 + 20
    assert sorted(p.name for p in drive_root.iterdir()) == [
        "cifar-10-python.tar.gz", "cifar-100-python.tar.gz", "colabkit-cifar12.npz"]
    assert (local / "data" / "cifar-10-batches-py" / ".colabkit-complete").is_file()
    assert not [p for p in (local / "data").iterdir() if ".tmp-" in p.name]


def test_half_extracted_folder_is_rebuilt_from_the_archive_never_trusted(tmp_path, monkeypatch):
    import dataclasses

    from colabkit.data import archives

    root = tmp_path / "data"
    y_train, _ = write_cifar10(root)
    s = archives.CIFAR_ARCHIVES[10]
    md5 = _archive(root, s.folder, root / s.archive)
    monkeypatch.setitem(archives.CIFAR_ARCHIVES, 10, dataclasses.replace(s, md5=md5))
    # an earlier session was killed while extracting in place: the last file is cut short
    last = root / s.folder / "test_batch"
    last.write_bytes(last.read_bytes()[:100])
    ds = load_dataset("cifar10", root, download=False, cache=False)
    assert np.array_equal(ds.y_train, y_train) and len(ds.y_test) == 10
    assert (root / s.folder / ".colabkit-complete").is_file()


def test_a_damaged_archive_is_named_as_damaged(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(b"not really a tarball")
    with pytest.raises(DataError, match=r"cifar-10-python\.tar\.gz is damaged: its md5"):
        load_dataset("cifar10", root)


def test_cifar12_offline_names_both_archives(tmp_path):
    with pytest.raises(DataError, match=r"lacks cifar-10-python\.tar\.gz and cifar-100-python\.tar\.gz"):
        load_dataset("cifar12", tmp_path, download=False)


def test_failed_build_leaves_no_cache(tmp_path):
    root = tmp_path / "data"
    write_cifar10(root)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py is incomplete .*missing data_batch_3"):
        load_dataset("cifar10", root, download=False)
    assert list(root.glob("colabkit-*")) == []


def test_a_download_is_installed_whole_when_its_md5_checks_out_and_never_otherwise(tmp_path):
    """The archive's bytes are renamed into place only after their md5 matches: a damaged
    download leaves neither the archive nor a temporary behind."""
    import hashlib

    from colabkit.data.archives import download

    served = tmp_path / "served.tar.gz"
    served.write_bytes(b"CIFAR bytes" * 100_000)
    good = hashlib.md5(served.read_bytes()).hexdigest()
    dest = tmp_path / "data"
    dest.mkdir()
    with pytest.raises(OSError, match="damaged"):
        download(served.as_uri(), dest / "a.tar.gz", md5="0" * 32)
    assert list(dest.iterdir()) == []
    download(served.as_uri(), dest / "a.tar.gz", md5=good)
    assert [p.name for p in dest.iterdir()] == ["a.tar.gz"]
    assert (dest / "a.tar.gz").read_bytes() == served.read_bytes()


def test_no_network_gives_a_clear_error(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as e:
        load_dataset("cifar12", tmp_path / "nowhere")
    msg = str(e.value)
    assert "could not be downloaded" in msg and "cifar-10-python.tar.gz" in msg
    assert str((tmp_path / "nowhere").resolve()) in msg
    assert "--dataset folder" in msg and "--dataset synthetic" in msg


def test_folder_source_reads_a_png_tree_and_its_targz(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root, classes=("cat", "dog", "emu"), n_train=4, n_test=2)
    ds = load_dataset("folder", root)
    assert ds.classes == ("cat", "dog", "emu")
    assert ds.counts("train") == {"cat": 4, "dog": 4, "emu": 4}
    assert ds.counts("test") == {"cat": 2, "dog": 2, "emu": 2}
    assert np.array_equal(ds.x_train[:, 0, 0, 0], ds.y_train * 40)  # label matches its image
    with tarfile.open(tmp_path / "imgs.tar.gz", "w:gz") as tar:
        tar.add(root / "train", arcname="train")
        tar.add(root / "test", arcname="test")
    from_tar = load_dataset("folder", tmp_path / "imgs.tar.gz")
    assert from_tar.classes == ds.classes and np.array_equal(from_tar.x_test, ds.x_test)


def test_folder_cache_is_rebuilt_when_the_folder_changes(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root, n_train=2, n_test=1)
    assert len(load_dataset("folder", root).y_train) == 6
    write_image_folder(root, classes=("cat",), n_train=3, n_test=1, seed=5)  # adds cat/0002
    assert len(load_dataset("folder", root).y_train) == 7


def test_folder_wrong_size_and_missing_class_fail_clearly(tmp_path):
    write_image_folder(tmp_path / "big", size=(64, 48), n_train=1, n_test=1)
    with pytest.raises(DataError, match=r"is 64x48; .*32x32 images: resize"):
        load_dataset("folder", tmp_path / "big")
    root = tmp_path / "missing"
    write_image_folder(root, n_train=1, n_test=1)
    for f in (root / "test" / "dog").iterdir():
        f.unlink()
    (root / "test" / "dog").rmdir()
    with pytest.raises(DataError, match=r"missing from test/: \['dog'\]"):
        load_dataset("folder", root)
    with pytest.raises(DataError, match="must hold train/<class>/ and test/<class>/"):
        load_dataset("folder", tmp_path)


def test_synthetic_is_seeded_balanced_and_subsets_are_seeded():
    a, b = synthetic(seed=0), synthetic(seed=0)
    assert np.array_equal(a.x_train, b.x_train) and a.num_classes == 12
    assert set(a.counts().values()) == {500}
    s1 = load_dataset("synthetic", train_size=100, test_size=50, seed=1)
    s2 = load_dataset("synthetic", train_size=100, test_size=50, seed=1)
    s3 = load_dataset("synthetic", train_size=100, test_size=50, seed=2)
    assert len(s1.y_train) == 100 and len(s1.y_test) == 50
    assert np.array_equal(s1.x_train, s2.x_train) and not np.array_equal(s1.y_train, s3.y_train)


def test_unknown_source_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'; known: \['cifar10', "
                                         r"'cifar12', 'folder', 'synthetic'\]"):
        load_dataset("imagenet")


def _loader(**kw):
    ds = synthetic(train_size=200, test_size=70)
    args = dict(device="cpu", mean=ds.mean, std=ds.std, train=True, seed=7,
                augment=Augmenter(PRESETS["da"].augment))
    args.update(kw)
    return ds, DeviceLoader(ds.x_train, ds.y_train, 32, **args)


def test_same_seed_and_epoch_give_identical_batches_another_epoch_another_order():
    _, a = _loader()
    _, b = _loader()
    ea, eb = list(a.epoch(3)), list(b.epoch(3))
    assert len(ea) == 200 // 32 == len(a)  # train drops the last partial batch
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(ea, eb))
    e4 = list(a.epoch(4))
    assert not torch.equal(torch.cat([y for _, y in ea]), torch.cat([y for _, y in e4]))


def test_a_loader_is_iterated_by_epoch_never_bare():
    """A bare ``for x, y in loader`` once gave epoch 1's order and augmentation in every
    epoch; it is an error now, saying to name the epoch."""
    _, loader = _loader()
    with pytest.raises(TypeError, match=r"depend on the epoch: iterate over loader\.epoch\(n\)"):
        iter(loader)
    with pytest.raises(TypeError):
        next(x for x in loader)
    first = torch.cat([y for _, y in loader.epoch(1)])
    assert not torch.equal(first, torch.cat([y for _, y in loader.epoch(2)]))


def test_batches_are_normalized_float_in_the_asked_memory_format():
    ds, loader = _loader(augment=None)
    x, y = next(loader.epoch(1))
    assert x.dtype == torch.float32 and x.shape == (32, 3, 32, 32)
    assert x.is_contiguous()  # CPU default
    _, cl = _loader(augment=None, channels_last=True)
    x_cl, _ = next(cl.epoch(1))
    assert x_cl.is_contiguous(memory_format=torch.channels_last) and torch.equal(x_cl, x)
    allx = torch.cat([x for x, _ in loader.epoch(1)])
    assert allx.mean(dim=(0, 2, 3)).abs().max() < 0.1  # mean/std of the split applied
    assert allx.std(dim=(0, 2, 3)).sub(1).abs().max() < 0.1


def test_test_loader_never_drops_and_keeps_order():
    ds = synthetic(train_size=200, test_size=70)
    loader = DeviceLoader(ds.x_test, ds.y_test, 32, mean=ds.mean, std=ds.std)
    ys = torch.cat([y for _, y in loader.epoch(1)])
    assert len(loader) == 3 and torch.equal(ys, torch.from_numpy(ds.y_test))


@pytest.mark.parametrize("world", [2, 4])
def test_each_rank_gets_exactly_its_slice_of_the_single_process_augmented_batch(world):
    ds = synthetic(train_size=200, test_size=70)
    aug = Augmenter(PRESETS["da"].augment)
    kw = dict(train=True, seed=1, mean=ds.mean, std=ds.std, augment=aug)
    whole = DeviceLoader(ds.x_train, ds.y_train, 32, **kw)
    ranks = [DeviceLoader(ds.x_train, ds.y_train, 32, rank=r, world_size=world, **kw)
             for r in range(world)]
    n = 0
    for (x, y), *parts in zip(whole.epoch(2), *(r.epoch(2) for r in ranks)):
        assert all(len(py) == 32 // world for _, py in parts)
        assert torch.equal(torch.cat([py for _, py in parts]), y)
        assert torch.equal(torch.cat([px for px, _ in parts]), x)  # bit-exact, augmented
        n += 1
    assert n == len(whole) == 6
    with pytest.raises(ValueError, match="divisible"):
        DeviceLoader(ds.x_train, ds.y_train, 30, world_size=4)


def test_crop_augmentation_is_split_exactly_too():
    ds = synthetic(train_size=64, test_size=8)
    aug = Augmenter({"crop_padding": 4, "hflip": 0.5})
    whole = DeviceLoader(ds.x_train, ds.y_train, 32, train=True, seed=3, augment=aug)
    parts = [DeviceLoader(ds.x_train, ds.y_train, 32, train=True, seed=3, augment=aug, rank=r,
                          world_size=2) for r in range(2)]
    for (x, _), (x0, _), (x1, _) in zip(whole.epoch(1), parts[0].epoch(1), parts[1].epoch(1)):
        assert torch.equal(torch.cat([x0, x1]), x)


def test_test_subset_does_not_depend_on_the_train_subset():
    a = load_dataset("synthetic", train_size=100, test_size=50, seed=3)
    b = load_dataset("synthetic", test_size=50, seed=3)
    assert np.array_equal(a.x_test, b.x_test) and len(b.y_train) == 6000


def test_validation_holdout_is_stratified_disjoint_and_seeded():
    ds = synthetic(train_size=600, test_size=60)
    a = ds.holdout(120, seed=3)
    b = ds.holdout(120, seed=3)
    c = ds.holdout(120, seed=4)
    assert len(a.y_val) == 120 and len(a.y_train) == 480
    assert np.array_equal(a.x_val, b.x_val)       # same seed, same images
    assert not np.array_equal(a.x_val, c.x_val)   # another seed, other images
    # stratified: each of the 12 classes (50 images each) gives 10
    assert set(np.bincount(a.y_val, minlength=12)) == {10}
    # disjoint: no validation image is left in the training split, none lost
    tr = {bytes(x) for x in a.x_train}
    assert not any(bytes(x) in tr for x in a.x_val)
    assert sorted(bytes(x) for x in np.concatenate([a.x_train, a.x_val])) == sorted(bytes(x) for x in ds.x_train)
    assert np.array_equal(a.x_test, ds.x_test)  # the test split is untouched
    with pytest.raises(ValueError, match="val_size must be between 1 and 599"):
        ds.holdout(600)


def test_the_synthetic_set_is_the_same_at_every_load_and_a_change_to_one_copy_stays_there():
    """load_dataset generates the synthetic set once per process and hands out copies."""
    a = load_dataset("synthetic")
    fresh = synthetic(seed=0)
    assert all(np.array_equal(getattr(a, k), getattr(fresh, k))
               for k in ("x_train", "y_train", "x_test", "y_test"))
    a.x_train[:] = 0
    a.y_test[:] = 0
    b = load_dataset("synthetic")
    assert np.array_equal(b.x_train, fresh.x_train) and np.array_equal(b.y_test, fresh.y_test)


def test_a_runs_splits_hold_out_the_same_validation_images_whatever_its_training_subset():
    """Dataset.for_run holds the validation images out first, then takes the subsets: a
    smaller train_size never moves an image between validation and training."""
    ds = synthetic(train_size=240, test_size=60, seed=3)
    small = ds.for_run(24, 48, 30, seed=5)
    large = ds.for_run(24, 120, 30, seed=5)
    assert np.array_equal(small.x_val, large.x_val) and len(small.y_val) == 24
    assert (len(small.y_train), len(large.y_train), len(small.y_test)) == (48, 120, 30)
    val = {bytes(x) for x in small.x_val}
    assert not val & {bytes(x) for x in large.x_train}
    assert np.array_equal(ds.for_run(None, 48, 30, seed=5).x_train, ds.subset(48, 30, 5).x_train)


def test_no_data_cache_is_written_under_colabs_mount_point_while_drive_is_not_mounted(fake_colab):
    """A Drive data root whose mount dropped: the data set is built from the folders
    already extracted on this VM, and its cache is not written under the mount point,
    where it would live on the VM's disk and make the next drive.mount refuse."""
    from colabkit.colab.drive import mount_drive
    from colabkit.colab.places import local_area

    mp = Path(fake_colab.mountpoint)
    home = mount_drive()
    fake_colab.flush_and_unmount()  # the drop: an empty folder on the VM's disk
    write_cifar10(local_area() / "data", per_class_train=3, per_class_test=2)
    with pytest.warns(UserWarning, match=r"the data cache .* is not written: Drive is not mounted "
                                         r"at .*colabkit\.mount_drive\(\)"):
        ds = load_dataset("cifar10", home / "data", download=False)
    assert len(ds.y_train) == 30 and list(mp.iterdir()) == []
    mount_drive()  # does not refuse: nothing was written there
    assert not (home / "data").exists()
    ds = load_dataset("cifar10", home / "data", download=False)  # mounted: cached on Drive
    assert (home / "data" / "colabkit-cifar10.npz").is_file()
