import errno
from pathlib import Path

import pytest
import torch

from colabkit import runtime


def test_outside_colab_home_is_a_local_folder(no_colab, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLABKIT_HOME", str(tmp_path / "home"))
    assert runtime.in_colab() is False
    home = runtime.mount_drive()
    assert home == (tmp_path / "home").resolve() and home.is_dir()
    assert "Not in Colab" in capsys.readouterr().out
    monkeypatch.delenv("COLABKIT_HOME")
    monkeypatch.chdir(tmp_path)
    assert runtime.mount_drive() == (tmp_path / "colabkit-home").resolve()


def test_in_colab_drive_is_mounted_and_project_folder_returned(fake_colab):
    assert runtime.in_colab() is True
    home = runtime.mount_drive("myproj", mountpoint=fake_colab.mountpoint)
    assert home == Path(fake_colab.mountpoint) / "MyDrive" / "myproj" and home.is_dir()
    assert fake_colab.calls == [("mount", fake_colab.mountpoint, False)]


def test_stale_mount_errno_107_is_remounted_with_force(fake_colab, monkeypatch, capsys):
    calls = fake_colab.calls
    real_mount = fake_colab.mount
    state = {"stale": True}

    def mount(mountpoint, force_remount=False):
        real_mount(mountpoint, force_remount)
        if state["stale"] and not force_remount:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        state["stale"] = False
    fake_colab.mount = mount
    home = runtime.mount_drive(mountpoint=fake_colab.mountpoint)
    assert [c[2] for c in calls] == [False, True] and home.is_dir()
    assert "remounting" in capsys.readouterr().out
    # other errors are not swallowed
    fake_colab.mount = lambda mp, force_remount=False: (_ for _ in ()).throw(OSError(errno.EACCES, "denied"))
    with pytest.raises(OSError, match="denied"):
        runtime.mount_drive(mountpoint=fake_colab.mountpoint)


def test_flush_uploads_the_colab_way_and_remounts(fake_colab, tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "DRIVE_MOUNTPOINT", fake_colab.mountpoint)
    runtime.flush_drive(tmp_path / "elsewhere")  # not under the mount point: only os.sync
    assert fake_colab.calls == []
    runtime.flush_drive(Path(fake_colab.mountpoint) / "MyDrive" / "runs")
    mp = str(Path(fake_colab.mountpoint).resolve())
    assert fake_colab.calls == [("flush",), ("mount", mp, False)]
    runtime.flush_drive(remount=False)
    assert fake_colab.calls[2:] == [("flush",)]


def test_cpu_runtime_in_colab_explains_how_to_get_a_gpu(fake_colab, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"Runtime → Change runtime type → T4 GPU.*allow_cpu=True"):
        runtime.check_gpu()
    info = runtime.check_gpu(allow_cpu=True)
    assert (info.device, info.precision, info.colab) == ("cpu", "fp32", True)


def test_cpu_outside_colab_is_reported_not_refused(no_colab, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = runtime.check_gpu()
    assert info.device == "cpu" and info.torch == torch.__version__
    assert "No GPU" in capsys.readouterr().out


@pytest.mark.parametrize("cc,expected", [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16"), ((6, 0), "fp16")])
def test_precision_follows_compute_capability(monkeypatch, cc, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: cc)
    assert runtime.choose_precision(torch.device("cuda"), "auto") == expected
    assert runtime.choose_precision(torch.device("cuda"), "fp32") == "fp32"


def test_precision_on_cpu_and_bad_values():
    cpu = torch.device("cpu")
    assert runtime.choose_precision(cpu) == "fp32"
    assert runtime.choose_precision(cpu, "fp16") == "fp16"  # explicit only
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        runtime.choose_precision(cpu, "fp8")


def test_environment_record_names_versions(no_colab):
    rec = runtime.environment_record(torch.device("cpu"))
    assert rec["torch"] == torch.__version__ and rec["colab"] is False and rec["device"] == "cpu"


def test_asking_for_cuda_without_one_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        runtime.choose_device("cuda")
    assert runtime.choose_device(None).type == "cpu"


def test_the_environment_names_the_cpu_and_its_vector_extensions(tmp_path, monkeypatch):
    from colabkit.runtime import cpu_record, environment_record
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
