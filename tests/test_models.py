"""colabkit.models: ResNet18, CBAM, the ASPP and SPP heads, against hand-written references."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from colabkit.models import (ASPP, CBAM, HEADS, MODELS, BasicBlock, ChannelAttention,
                             SpatialAttention, build_model, count_parameters, create_attention)


class OpsSeen(TorchDispatchMode):
    """The names of the aten operators run inside it (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_cifar_batch_to_12_logits_and_trains_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(name)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 12)
    assert torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_parameter_counts_are_pinned():
    # ResNet18 (CIFAR form) with 12 classes: 11,173,962 for 10 classes + 2 * (512 + 1)
    assert count_parameters(build_model("resnet18")) == 11_174_988
    assert count_parameters(build_model("resnet18", num_classes=10)) == 11_173_962
    # CBAM adds, per block of C channels, 2 * C * C/16 (shared MLP) + 2 * 3 * 3 (spatial conv)
    cbam = sum(2 * c * (c // 16) + 18 for c in (64, 64, 128, 128, 256, 256, 512, 512))
    assert count_parameters(build_model("resnet18_cbam")) == 11_174_988 + cbam == 11_262_172
    # ASPP at 512 channels, branches of 256: 1x1, two 3x3, pooled 1x1 (each + BN), projection
    aspp = 512 * 256 * (1 + 9 + 9 + 1) + 4 * 2 * 256 + 4 * 256 * 512 + 2 * 512
    assert count_parameters(build_model("resnet18_cbam_aspp")) == 11_262_172 + aspp == 14_410_972
    # SPP: bins 1 + 4 + 16 of 512 channels, batch-normalized, into the 12-way linear layer
    spp = (21 * 512 - 512) * 12 + 2 * 21 * 512
    assert count_parameters(build_model("resnet18_cbam_spp")) == 11_262_172 + spp == 11_406_556


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


def test_cbam_sits_in_all_eight_blocks_of_cbam_models_and_none_of_resnet18():
    for name in ("resnet18_cbam", "resnet18_cbam_aspp"):
        blocks = _blocks(build_model(name))
        assert len(blocks) == 8 and all(isinstance(b.attention, CBAM) for b in blocks)
    blocks = _blocks(build_model("resnet18"))
    assert len(blocks) == 8 and all(b.attention is None for b in blocks)
    assert not any(isinstance(m, CBAM) for m in build_model("resnet18").modules())


def test_cbam_models_differ_only_in_the_head():
    a = build_model("resnet18_cbam").state_dict()
    b = build_model("resnet18_cbam_aspp").state_dict()
    body_a = {k for k in a if not k.startswith("head.")}
    body_b = {k for k in b if not k.startswith("head.")}
    assert body_a == body_b
    assert any(k.startswith("head.aspp.") for k in b)


def test_attention_maps_are_in_unit_interval_with_promised_shapes():
    x = torch.randn(4, 32, 8, 8) * 5
    ca = ChannelAttention(32)(x)
    sa = SpatialAttention(3)(x)
    assert ca.shape == (4, 32, 1, 1) and sa.shape == (4, 1, 8, 8)
    for w in (ca, sa):
        assert w.min() >= 0 and w.max() <= 1


# ---- independent references, written from the papers' formulas (Woo et al. 2018; He et al.
# 2015/2016; Chen et al. 2017) with plain tensor operations and the modules' weights copied
# in: they never call the module under test or its submodules.

def _randomize(module, seed=0):
    """Random weights and BatchNorm statistics, so every term of a formula matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.rand(t.shape, generator=g) * 0.8 + 0.1 if name.endswith("running_var")
                        else torch.randn(t.shape, generator=g) * 0.5)
    return module.eval()


def _bn(x, sd, prefix):
    """Inference BatchNorm: (x - mean) / sqrt(var + eps) * gamma + beta, per channel."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = sd[prefix + "running_mean"].view(shape), sd[prefix + "running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + 1e-5) * sd[prefix + "weight"].view(shape) + sd[prefix + "bias"].view(shape)


def _cbam_reference(x, sd, prefix=""):
    """CBAM: M_c = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F))), F' = M_c * F;
    M_s = sigmoid(conv([mean_c(F'); max_c(F')])), F'' = M_s * F'. The MLP is
    W1 (C/r x C), ReLU, W0 (C x C/r), shared by both descriptors."""
    w1 = sd[prefix + "channel.mlp.0.weight"].flatten(1)       # (C/r, C)
    w0 = sd[prefix + "channel.mlp.2.weight"].flatten(1)       # (C, C/r)
    mlp = lambda v: torch.clamp(v @ w1.T, min=0) @ w0.T        # (B, C) -> (B, C)
    avg, mx = x.mean(dim=(2, 3)), x.flatten(2).max(dim=2).values
    f1 = x * torch.sigmoid(mlp(avg) + mlp(mx))[:, :, None, None]
    maps = torch.stack([f1.mean(dim=1), f1.max(dim=1).values], dim=1)  # (B, 2, H, W): mean, max
    k = sd[prefix + "spatial.conv.weight"]
    return f1 * torch.sigmoid(F.conv2d(maps, k, padding=k.shape[-1] // 2))


@pytest.mark.parametrize("kernel", [3, 7])
def test_cbam_equals_the_papers_formulas(kernel):
    m = _randomize(CBAM(32, kernel_size=kernel))
    x = torch.randn(3, 32, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(m(x), _cbam_reference(x, m.state_dict()), rtol=1e-5, atol=1e-6)


def _block_reference(x, sd, stride, cbam):
    """out = ReLU(A(BN2(conv2(ReLU(BN1(conv1(x)))))) + shortcut(x)), A = CBAM or identity;
    shortcut = x, or BN(1x1 conv, stride) when the shape changes."""
    out = torch.clamp(_bn(F.conv2d(x, sd["conv1.weight"], stride=stride, padding=1), sd, "bn1."), min=0)
    out = _bn(F.conv2d(out, sd["conv2.weight"], padding=1), sd, "bn2.")
    if cbam:
        out = _cbam_reference(out, sd, "attention.")
    short = _bn(F.conv2d(x, sd["shortcut.0.weight"], stride=stride), sd, "shortcut.1.") \
        if "shortcut.0.weight" in sd else x
    return torch.clamp(out + short, min=0)


@pytest.mark.parametrize("cin,cout,stride,attention", [(16, 16, 1, "cbam"), (16, 32, 2, "cbam"),
                                                       (16, 32, 2, None)])
def test_basic_block_equals_its_formula_with_attention_before_the_add(cin, cout, stride, attention):
    block = _randomize(BasicBlock(cin, cout, stride, attention=attention))
    x = torch.randn(2, cin, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = _block_reference(x, block.state_dict(), stride, attention == "cbam")
        torch.testing.assert_close(block(x), want, rtol=1e-4, atol=1e-5)


def test_aspp_head_equals_its_formula():
    """Branches: 1x1; 3x3 at rate 1; 3x3 at rate 2 (padding = rate); image pooling (global
    mean, 1x1 conv, broadcast); each BN + ReLU; concatenated in that order; 1x1 projection
    with BN + ReLU; then global average pooling and the linear layer."""
    head = _randomize(HEADS["aspp"](64, 12))
    sd = head.state_dict()
    x = torch.randn(2, 64, 4, 4, generator=torch.Generator().manual_seed(3))
    relu = lambda t: torch.clamp(t, min=0)
    with torch.no_grad():
        feats = [relu(_bn(F.conv2d(x, sd["aspp.branches.0.0.weight"]), sd, "aspp.branches.0.1."))]
        for i, rate in ((1, 1), (2, 2)):
            conv = F.conv2d(x, sd[f"aspp.branches.{i}.0.weight"], padding=rate, dilation=rate)
            feats.append(relu(_bn(conv, sd, f"aspp.branches.{i}.1.")))
        pooled = x.mean(dim=(2, 3), keepdim=True)
        pooled = relu(_bn(F.conv2d(pooled, sd["aspp.image_pool.1.weight"]), sd, "aspp.image_pool.2."))
        feats.append(pooled.expand(-1, -1, 4, 4))
        y = relu(_bn(F.conv2d(torch.cat(feats, 1), sd["aspp.project.0.weight"]), sd, "aspp.project.1."))
        want = y.mean(dim=(2, 3)) @ sd["pool.fc.weight"].T + sd["pool.fc.bias"]
        torch.testing.assert_close(head(x), want, rtol=1e-4, atol=1e-5)


def test_spp_head_equals_its_formula():
    """Max over each cell of 1x1, 2x2 and 4x4 grids of the 4x4 map, flattened (C, bin row,
    bin column) and concatenated in that order, batch-normalized, then the linear layer."""
    head = _randomize(HEADS["spp"](16, 12))
    sd = head.state_dict()
    x = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(4))
    parts = []
    for b in (1, 2, 4):
        s = 4 // b
        cells = x.reshape(2, 16, b, s, b, s).amax(dim=(3, 5))  # (B, C, b, b)
        parts.append(cells.reshape(2, -1))
    with torch.no_grad():
        want = _bn(torch.cat(parts, 1), sd, "norm.") @ sd["fc.weight"].T + sd["fc.bias"]
        torch.testing.assert_close(head(x), want, rtol=1e-4, atol=1e-5)


def test_spatial_kernel_7_is_allowed_and_other_kernels_fail_clearly():
    assert SpatialAttention(7).conv.kernel_size == (7, 7)
    m = build_model("resnet18_cbam", attention_kwargs={"kernel_size": 7})
    assert all(b.attention.spatial.conv.kernel_size == (7, 7) for b in _blocks(m))
    with pytest.raises(ValueError, match=r"kernel_size must be one of \(3, 7\).*got 5"):
        SpatialAttention(5)


def test_aspp_runs_on_the_last_stages_4x4_maps():
    aspp = ASPP(512, 512, branch_channels=256)
    y = aspp(torch.randn(2, 512, 4, 4))
    assert y.shape == (2, 512, 4, 4) and torch.isfinite(y).all()
    # the rate-2 branch reaches across the 4x4 map: a change in one corner moves the opposite
    x = torch.zeros(1, 512, 4, 4)
    x2 = x.clone()
    x2[0, :, 0, 0] = 1.0
    aspp.eval()
    diff = (aspp.branches[2](x2) - aspp.branches[2](x)).abs().sum(1)[0]
    assert diff[2, 2] > 0


def test_unknown_names_fail_listing_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet50'; known: \['resnet18', "
                                         r"'resnet18_cbam', 'resnet18_cbam_aspp', 'resnet18_cbam_spp'\]"):
        build_model("resnet50")
    with pytest.raises(ValueError, match=r"unknown attention 'se'; known: \['cbam', 'none'\]"):
        create_attention("se", 64)
    assert create_attention("none", 64) is None


def test_channel_attention_takes_its_max_with_amax_same_values_and_gradients_as_max_pool():
    """adaptive_max_pool2d's CUDA backward is nondeterministic; amax over H, W is the same
    function with a deterministic one. The forward and backward of a CBAM model run no
    adaptive_max_pool2d, and give the max-pool formula's logits and gradients exactly."""
    torch.manual_seed(0)
    model = build_model("resnet18_cbam", 12, width=8)
    x = torch.randn(4, 3, 32, 32)
    with OpsSeen() as ops:
        model(x).sum().backward()
    assert not {n for n in ops.names if "max_pool" in n}, ops.names
    assert "amax" in ops.names
    new = {n: p.grad.clone() for n, p in model.named_parameters()}
    logits = model(x)
    old_forward = ChannelAttention.forward
    try:  # the formula before: adaptive_max_pool2d(x, 1)
        ChannelAttention.forward = lambda self, t: torch.sigmoid(
            self.mlp(F.adaptive_avg_pool2d(t, 1)) + self.mlp(F.adaptive_max_pool2d(t, 1)))
        model.zero_grad()
        old_logits = model(x)
        old_logits.sum().backward()
    finally:
        ChannelAttention.forward = old_forward
    assert torch.equal(logits, old_logits)
    assert all(torch.equal(new[n], p.grad) for n, p in model.named_parameters())
    # no parameter or buffer came or went: checkpoints of either version load in the other
    assert not [k for k in model.state_dict() if "channel" in k and "mlp" not in k]


@pytest.mark.parametrize("size", [(4, 4), (8, 8), (5, 5), (7, 3), (6, 9), (3, 2), (1, 1)])
def test_spp_bins_equal_adaptive_max_pool2d_on_maps_the_bins_divide_or_not(size):
    """The SPP head's amax bins are adaptive_max_pool2d's, value for value, where a level
    divides the map (one reshape) and where it does not (overlapping windows, a level
    larger than the map); the head's logits are the max-pool head's, and gradients reach
    every input position that is the maximum of some bin."""
    from colabkit.models import SPPHead, adaptive_max

    g = torch.Generator().manual_seed(sum(size))
    x = torch.randn(3, 5, *size, generator=g)
    for n in (1, 2, 3, 4):
        assert torch.equal(adaptive_max(x, n), F.adaptive_max_pool2d(x, n)), n
    head = _randomize(SPPHead(5, 7))
    sd = head.state_dict()
    pooled = torch.cat([F.adaptive_max_pool2d(x, b).flatten(1) for b in (1, 2, 4)], 1)
    with torch.no_grad():
        want = _bn(pooled, sd, "norm.") @ sd["fc.weight"].T + sd["fc.bias"]
        torch.testing.assert_close(head(x), want, rtol=1e-5, atol=1e-6)
    x.requires_grad_(True)
    head(x).square().sum().backward()
    winners = torch.zeros_like(x, dtype=torch.bool)
    for b in (1, 2, 4):
        _, idx = F.adaptive_max_pool2d(x.detach(), b, return_indices=True)
        winners.view(3, 5, -1).scatter_(2, idx.flatten(2), True)
    assert torch.equal(x.grad != 0, winners)  # random inputs: no ties, no cancelling


def test_spp_head_runs_no_max_pool_and_old_checkpoints_load_with_the_same_outputs():
    """The forward and backward of an SPP model run no adaptive_max_pool2d (its CUDA backward
    is nondeterministic); a state dict of the head as it was (adaptive_max_pool2d, the same
    parameters and buffers) loads strictly and gives the same logits and gradients."""
    from colabkit.models import SPPHead

    class OldSPPHead(nn.Module):  # colabkit 0.x's head, verbatim
        def __init__(self, in_channels, num_classes):
            super().__init__()
            features = in_channels * sum(b * b for b in (1, 2, 4))
            self.norm = nn.BatchNorm1d(features)
            self.fc = nn.Linear(features, num_classes)

        def forward(self, x):
            pooled = [torch.flatten(F.adaptive_max_pool2d(x, b), 1) for b in (1, 2, 4)]
            return self.fc(self.norm(torch.cat(pooled, dim=1)))

    torch.manual_seed(0)
    model = build_model("resnet18_cbam_spp", 12, width=8)
    with OpsSeen() as ops:
        model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert not {n for n in ops.names if "max_pool" in n}, ops.names
    old = _randomize(OldSPPHead(64, 12))
    new = SPPHead(64, 12).eval()
    new.load_state_dict(old.state_dict())  # strict: no name came or went
    assert list(new.state_dict()) == list(old.state_dict())
    x = torch.randn(4, 64, 4, 4)
    outs, grads = [], []
    for head in (old, new):
        head.zero_grad()
        out = head(x)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in head.parameters()])
    assert torch.equal(*outs)
    assert all(torch.equal(a, b) for a, b in zip(*grads))
