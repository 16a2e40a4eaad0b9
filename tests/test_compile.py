"""``compile=True`` where compiling fails (Triton on a T4, sm_75, is unsupported since
Triton 3.3): the run goes on eagerly with one line naming the error, and trains exactly as
an eager run. ``torch.compile`` is replaced by stand-ins that fail the way Inductor can:
at the first forward, or at the first backward (AOTAutograd compiles it lazily)."""
import pytest
import torch

from colabkit.rundir.runs import DETERMINISTIC_FIELDS, read_metrics
from colabkit.colab.device import compile_note
from colabkit.training.loop import train



class FailsInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("triton: fake PTX assembly failed for sm_75\nmore detail")


def failing_compile(where, calls):
    def compile(module, **kwargs):
        def run(*args, **kw):
            calls.append(where)
            if where == "forward":
                raise RuntimeError("BackendCompilerFailed: fake inductor error\nstack ...")
            if where == "eval":  # a recompile for eval mode that fails, mid-run
                if not module.training:
                    raise RuntimeError("InductorError: fake recompile failure")
                return module(*args, **kw)
            return FailsInBackward.apply(module(*args, **kw))
        return run
    return compile


def _det(run):
    return [{k: r[k] for k in DETERMINISTIC_FIELDS} for r in read_metrics(run / "metrics.csv")]


@pytest.fixture(scope="module")
def eager_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eager") / "run"
    train(_exp(), run, progress=False)
    return run


def _exp():
    from colabkit.experiments import get_experiment

    return get_experiment("da_cbam", dataset="synthetic", epochs=2, batch_size=32, width=4,
                          train_size=96, test_size=64, milestones=(1,))


def test_a_compile_failing_at_the_first_forward_goes_on_eagerly_with_the_same_numbers(
        eager_run, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(torch, "compile", failing_compile("forward", calls))
    res = train(_exp(), tmp_path, compile=True, progress=False)
    assert res["status"] == "finished" and res["epochs_done"] == 2
    lines = [s for s in capsys.readouterr().out.splitlines() if "torch.compile" in s]
    assert lines == ["torch.compile failed (RuntimeError: BackendCompilerFailed: fake inductor "
                     "error); training goes on eagerly."]
    assert calls == ["forward"]  # tried once, then never again
    assert _det(tmp_path) == _det(eager_run)  # bit for bit the eager run


def test_a_compiled_backward_that_fails_is_taken_again_eagerly(eager_run, tmp_path, monkeypatch,
                                                              capsys):
    calls = []
    monkeypatch.setattr(torch, "compile", failing_compile("backward", calls))
    res = train(_exp(), tmp_path, compile=True, progress=False)
    assert res["epochs_done"] == 2
    lines = [s for s in capsys.readouterr().out.splitlines() if "torch.compile" in s]
    assert lines == ["torch.compile failed (RuntimeError: triton: fake PTX assembly failed for "
                     "sm_75); training goes on eagerly."]
    assert calls == ["backward"]
    # the failed step is retaken from the same weights: every step as in the eager run (the
    # forward that ran before the failure moved BatchNorm's running statistics once more,
    # which only evaluation reads)
    ours, ref = (torch.load(r / "last.pt", weights_only=True)["model"] for r in (tmp_path, eager_run))
    weights = [k for k in ref if "running" not in k and "num_batches" not in k]
    assert all(torch.equal(ours[k], ref[k]) for k in weights)
    train_fields = lambda run: [(r["train_loss"], r["train_acc"]) for r in read_metrics(run / "metrics.csv")]
    assert train_fields(tmp_path) == train_fields(eager_run)


def test_a_recompile_failing_in_evaluation_goes_on_eagerly(eager_run, tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(torch, "compile", failing_compile("eval", calls))
    res = train(_exp(), tmp_path, compile=True, progress=False)
    assert res["status"] == "finished" and res["epochs_done"] == 2
    lines = [s for s in capsys.readouterr().out.splitlines() if "torch.compile" in s]
    assert lines == ["torch.compile failed (RuntimeError: InductorError: fake recompile failure); "
                     "training goes on eagerly."]
    assert _det(tmp_path) == _det(eager_run)


def test_compile_on_a_gpu_below_sm_80_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    note = compile_note(torch.device("cuda"))
    assert note.startswith("torch.compile on sm_75: Triton supports NVIDIA GPUs from sm_80 on")
    assert "\n" not in note and "eagerly" in note
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert compile_note(torch.device("cuda")) is None
    assert compile_note(torch.device("cpu")) is None
