"""colabkit.colab.drive, colabkit.colab.device: Colab or not, Drive's mount and flush, the GPU and precision."""
from pathlib import Path

import pytest
import torch

from colabkit.colab import device, drive


def test_outside_colab_home_is_a_local_folder(no_colab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLABKIT_HOME", str(tmp_path / "home"))
    assert drive.in_colab() is False
    home = drive.mount_drive()
    assert home == (tmp_path / "home").resolve() and home.is_dir()
    assert "Not in Colab" in capsys.readouterr().out
    monkeypatch.delenv("COLABKIT_HOME")
    monkeypatch.chdir(tmp_path)
    assert drive.mount_drive() == (tmp_path / "colabkit-home").resolve()


def _calls(fake, kind):
    return [c for c in fake.calls() if c["call"] == kind]


def test_in_colab_drive_is_mounted_and_project_folder_returned(fake_colab, capsys):
    assert drive.in_colab() is True and not drive.drive_mounted()
    home = drive.mount_drive("myproj")
    assert home == Path(fake_colab.mountpoint) / "MyDrive" / "myproj" and home.is_dir()
    assert drive.drive_mounted()
    assert [(c["mountpoint"], c["force_remount"], c["timeout_ms"]) for c in fake_colab.calls()] == \
        [(fake_colab.mountpoint, False, drive.MOUNT_TIMEOUT_MS)]
    # every call asks the browser again; mounted, the real module prints a note and returns
    assert drive.mount_drive("myproj") == home
    assert "Drive already mounted at" in capsys.readouterr().out
    assert len(_calls(fake_colab, "mount")) == 2


def test_a_dropped_mount_is_mounted_again_and_keeps_the_files(fake_colab):
    home = drive.mount_drive()
    (home / "kept.txt").write_text("x")
    fake_colab.set(stale=True)  # Errno 107: the FUSE endpoint is gone
    assert not drive.drive_mounted() and not drive.mount_live(home)
    assert drive.mount_drive() == home and drive.drive_mounted()
    assert (home / "kept.txt").read_text() == "x"


@pytest.mark.parametrize("plant,says", [
    ("file", "holds files written while Drive was not mounted"),
    ("symlink", "Mountpoint must not be a symlink"),
    ("drivefs", "mount failed"),
])
def test_a_mount_that_fails_is_one_line_and_creates_nothing_under_the_mountpoint(
        fake_colab, tmp_path, plant, says):
    mp = Path(fake_colab.mountpoint)
    if plant == "file":
        mp.mkdir(parents=True)
        (mp / "left-on-the-vm").write_text("x")
    elif plant == "symlink":
        (tmp_path / "elsewhere").mkdir()
        mp.symlink_to(tmp_path / "elsewhere")
    else:
        fake_colab.set(drivefs="fail")
    before = sorted(p.name for p in mp.iterdir()) if mp.exists() else None
    with pytest.raises(drive.DriveError, match=says) as e:
        drive.mount_drive()
    assert "\n" not in str(e.value)
    assert (sorted(p.name for p in mp.iterdir()) if mp.exists() else None) == before
    assert not drive.drive_mounted()


def test_a_space_in_the_mountpoint_is_refused_as_colab_does(fake_colab):
    with pytest.raises(drive.DriveError, match="Mountpoint must not contain a space"):
        drive.mount_drive(mountpoint=fake_colab.mountpoint + " 2")


def test_flush_uploads_the_colab_way_with_timeouts_and_remounts(fake_colab, tmp_path, capsys):
    home = drive.mount_drive()
    drive.flush_drive(tmp_path / "elsewhere")  # not under the mount point: only os.sync
    assert _calls(fake_colab, "flush_and_unmount") == []
    drive.flush_drive(home / "runs")
    assert [c["call"] for c in fake_colab.calls()][1:] == ["flush_and_unmount", "mount"]
    assert _calls(fake_colab, "flush_and_unmount")[0]["timeout_ms"] == drive.FLUSH_TIMEOUT_MS
    assert _calls(fake_colab, "mount")[1]["timeout_ms"] == drive.REMOUNT_TIMEOUT_MS
    assert drive.drive_mounted() and home.is_dir()
    drive.flush_drive(remount=False)
    assert not drive.drive_mounted() and not drive.mount_live(home)
    assert drive.mount_live(tmp_path / "elsewhere")
    with pytest.raises(drive.DriveError, match="not mounted"):  # nothing to flush: said, not hidden
        drive.flush_drive(home)
    assert len(_calls(fake_colab, "flush_and_unmount")) == 2


def test_a_failed_flush_or_remount_is_a_drive_error_that_says_what_is_mounted(fake_colab):
    home = drive.mount_drive()
    fake_colab.set(flush="fail")
    with pytest.raises(drive.DriveError, match=r"flush_and_unmount failed") as e:
        drive.flush_drive(home)
    assert (e.value.flushed, e.value.mounted) == (False, True)  # remounted
    # the tab closed: nobody answers the remount's access request; it waits its timeout only
    fake_colab.set(flush="ok", browser="never")
    with pytest.raises(drive.DriveError, match=r"the remount failed \(mount failed\)") as e:
        drive.flush_drive(home)
    assert (e.value.flushed, e.value.mounted) == (True, False)
    waits = [c["waited_ms"] for c in fake_colab.calls() if c["call"] == "request_auth"]
    assert waits == [drive.REMOUNT_TIMEOUT_MS]


def test_cpu_runtime_in_colab_says_how_to_get_a_gpu_in_one_line(fake_colab, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(device.DeviceError) as e:
        device.check_gpu()
    said = str(e.value)
    assert "\n" not in said and "Runtime → Change runtime type → T4 GPU" in said
    assert "usage limits" in said and "try again later" in said
    assert "tick ALLOW_CPU (allow_cpu=True) for a slow trial" in said
    assert "--device cpu" in e.value.cli() and "ALLOW_CPU" not in e.value.cli()
    assert fake_colab.calls() == []  # checking the GPU does not touch Drive
    info = device.check_gpu(allow_cpu=True)
    assert (info.device, info.precision, info.colab) == ("cpu", "fp32", True)


def test_cpu_outside_colab_is_reported_not_refused(no_colab, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = device.check_gpu()
    assert info.device == "cpu" and info.torch == torch.__version__
    assert "No GPU" in capsys.readouterr().out


@pytest.mark.parametrize("cc,expected", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16"), ((6, 0), "fp16")])
def test_precision_follows_compute_capability(monkeypatch, cc, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: cc)
    assert device.choose_precision(torch.device("cuda"), "auto") == expected
    assert device.choose_precision(torch.device("cuda"), "fp32") == "fp32"


def test_precision_on_cpu_and_bad_values():
    cpu = torch.device("cpu")
    assert device.choose_precision(cpu) == "fp32"
    assert device.choose_precision(cpu, "fp16") == "fp16"  # explicit only
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        device.choose_precision(cpu, "fp8")


def test_environment_record_names_versions(no_colab):
    rec = device.environment_record(torch.device("cpu"))
    assert rec["torch"] == torch.__version__ and rec["colab"] is False and rec["device"] == "cpu"


def test_asking_for_cuda_without_one_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        device.choose_device("cuda")
    assert device.choose_device(None).type == "cpu"


def test_the_environment_names_the_cpu_and_its_vector_extensions(tmp_path, monkeypatch):
    from colabkit.colab.device import cpu_record, environment_record
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n"
                    "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 ht\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu\n")
    monkeypatch.setattr("platform.processor", lambda: "")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    rec = cpu_record(str(info))
    assert rec["cpu"] == "AMD EPYC 9R14"
    assert rec["cpu_extensions"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"]
    assert rec["aten_cpu_capability"] == "avx2" and "onednn_max_cpu_isa" not in rec
    env = environment_record()
    assert {"cpu", "cpu_extensions", "cpu_capability"} <= set(env)
