import pytest
import torch

from colabkit.models import (ASPP, CBAM, MODELS, BasicBlock, ChannelAttention,
                             SpatialAttention, build_model, count_parameters, create_attention)


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


def test_cbam_applies_channel_then_spatial_weights():
    torch.manual_seed(0)
    m = CBAM(32)
    x = torch.randn(2, 32, 8, 8)
    after_channel = x * m.channel(x)
    expected = after_channel * m.spatial(after_channel)
    assert torch.allclose(m(x), expected)
    # the other order gives another result: the test would catch a swap
    swapped = x * m.spatial(x)
    assert not torch.allclose(m(x), swapped * m.channel(swapped))


def test_attention_acts_before_the_shortcut_add():
    torch.manual_seed(0)
    block = BasicBlock(16, 16, attention="cbam").eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        expected = torch.relu(block.attention(branch) + x)
        assert torch.allclose(block(x), expected, atol=1e-6)


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
