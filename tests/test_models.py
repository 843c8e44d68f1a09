"""Backbones, registry, variants and the `dtf models` command."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from dtfcli.models import (
    DTFBlock,
    DTFNet,
    DTFSwin,
    DynamicTemporalConv,
    TemporalConv,
    TemporalShift,
    create_model,
    get_model_spec,
    list_models,
    model_from_config,
)

REQUIRED = ["dtfnet_r50", "dtfnet_r101", "dtf_swin_t", "dtf_swin_s", "dtf_swin_b", "c2d_r50", "c2d_swin_b", "tsm_r50"]
TINY = [n for n in list_models() if get_model_spec(n).cpu_sized]


def test_registry_has_the_papers_models_with_their_test_views():
    names = list_models()
    assert set(REQUIRED) <= set(names)
    for name in names:
        spec = get_model_spec(name)
        assert spec.test_views == ((10, 3) if spec.family == "dtfnet" else (4, 3)), name
    assert get_model_spec("dtf_swin_b").num_frames == 64 and get_model_spec("dtfnet_r50").num_frames == 16
    assert list_models("dtf_swin_*") == ["dtf_swin_b", "dtf_swin_s", "dtf_swin_t", "dtf_swin_tiny"]


def test_unknown_names_and_bad_options_fail_clearly():
    with pytest.raises(KeyError, match="did you mean dtfnet_r50"):
        create_model("dtfnet_r5")
    with pytest.raises(ValueError, match="multiple of the stem"):
        create_model("dtfnet_tiny", num_frames=10)
    with pytest.raises(ValueError, match="temporal_stages"):
        create_model("dtfnet_tiny", temporal_stages=(5,))
    with pytest.raises(ValueError, match="unexpected keyword"):
        create_model("dtfnet_tiny", no_such_option=1)


def test_config_rebuilds_the_same_architecture():
    model = create_model("dtfnet_tiny", num_classes=7, num_frames=8, temporal_stages=[3, 4], crop_size=96)
    config = json.loads(json.dumps(model.config))
    again = model_from_config(config)
    assert config["crop_size"] == 96 and config["num_frames"] == 8
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def _meta(name, **kw):
    with torch.device("meta"):
        return create_model(name, **kw)


@pytest.mark.parametrize("name,blocks", [("dtfnet_r50", 16), ("dtfnet_r101", 33)])
def test_dtfnet_layout_follows_the_paper(name, blocks):
    model = _meta(name)
    assert model.conv1.kernel_size == (4, 7, 7) and model.conv1.stride == (4, 2, 2)
    # max-pool 1x3x3: a 2D pool per frame on the frames-major features
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.maxpool.kernel_size == 3 and model.maxpool.stride == 2
    spatial = [
        m
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv3d) and n != "conv1" and not n.endswith("conv") and m.kernel_size != (1, 1, 1)
    ]
    assert spatial and all(m.kernel_size == (1, 3, 3) for m in spatial)
    dtf = [(n, m) for n, m in model.named_modules() if isinstance(m, DTFBlock)]
    assert len(dtf) == blocks
    # right after the 3x3 conv of every bottleneck, on T = 16 / 4 frames
    assert all(n.endswith(".temporal") and m.num_frames == 4 and m.filter_groups == 16 for n, m in dtf)
    assert model.dropout.p == 0.5
    only_res5 = _meta(name, temporal_stages=(4,))
    assert sum(isinstance(m, DTFBlock) for m in only_res5.modules()) == 3


@pytest.mark.parametrize("name,depths,dim", [("dtf_swin_t", (2, 2, 6, 2), 96), ("dtf_swin_b", (2, 2, 18, 2), 128)])
def test_dtf_transformer_puts_dtf_after_w_msa_of_every_pair(name, depths, dim):
    model = _meta(name)
    embed = model.features[0][0]
    assert embed.kernel_size == (4, 4, 4) and embed.stride == (4, 4, 4) and embed.out_channels == dim
    blocks = [m for m in model.modules() if hasattr(m, "attn") and hasattr(m, "temporal")]
    assert len(blocks) == sum(depths)
    for blk in blocks:
        shifted = sum(blk.attn.shift_size) > 0
        assert (blk.temporal is None) == shifted  # DTF exactly in the non-shifted (W-MSA) blocks
        if blk.temporal is not None:
            assert isinstance(blk.temporal, DTFBlock) and blk.temporal.num_frames == 16
    assert sum(b.temporal is not None for b in blocks) == sum(depths) // 2


@pytest.mark.parametrize("name", TINY)
def test_tiny_models_train_on_a_cpu(name):
    model = create_model(name, num_classes=5)
    frames, crop = model.config["num_frames"], 64
    x = torch.randn(2, 3, frames, crop, crop)
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["dtfnet_tiny", "dtf_swin_tiny", "dynconv_tiny", "dtffixed_tiny"])
def test_one_step_changes_every_parameter_of_a_model(name):
    model = create_model(name, num_classes=3).train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (DTFBlock, DynamicTemporalConv)):
                m.alpha.normal_()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(2, 3, model.config["num_frames"], 64, 64)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    opt.step()
    assert [n for n, p in model.named_parameters() if torch.equal(p, before[n])] == []


@pytest.mark.parametrize("dtf,c2d", [("dtfnet_tiny", "c2d_tiny"), ("dtf_swin_tiny", "c2d_swin_tiny")])
def test_fresh_temporal_modules_make_the_video_model_its_2d_counterpart(dtf, c2d):
    video, flat = create_model(dtf, num_classes=4).eval(), create_model(c2d, num_classes=4).eval()
    missing, unexpected = video.load_state_dict(flat.state_dict(), strict=False)
    assert unexpected == [] and missing and all(".temporal" in k for k in missing)
    x = torch.randn(1, 3, video.num_frames, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(video(x), flat(x), rtol=0, atol=0)


def test_frames_are_checked_at_the_input():
    model = create_model("dtfnet_tiny")
    with pytest.raises(ValueError, match="16-frame clips, got 8"):
        model(torch.randn(1, 3, 8, 32, 32))


@pytest.mark.parametrize("frames", [4, 8, 12, 20])
def test_odd_even_one_and_two_frames_inside_the_network(frames):
    model = create_model("dtfnet_tiny", num_frames=frames, num_classes=2)
    out = model(torch.randn(2, 3, frames, 64, 64))
    out.sum().backward()
    assert out.shape == (2, 2) and torch.isfinite(out).all()


def test_temporal_shift_moves_one_eighth_each_way():
    x = torch.arange(2 * 16 * 4, dtype=torch.float32).view(2, 16, 4, 1, 1)
    out = TemporalShift(8)(x)
    for c in range(16):
        for t in range(4):
            if c < 2:
                ref = x[:, c, t + 1] if t + 1 < 4 else torch.zeros_like(x[:, c, t])
            elif c < 4:
                ref = x[:, c, t - 1] if t >= 1 else torch.zeros_like(x[:, c, t])
            else:
                ref = x[:, c, t]
            assert torch.equal(out[:, c, t], ref)


def test_dynamic_temporal_conv_against_a_loop():
    m = DynamicTemporalConv(8, 4, groups=4).double()
    with torch.no_grad():
        m.alpha.normal_()
    x = torch.randn(1, 8, 4, 2, 3, dtype=torch.float64)
    out = m(x)
    kernels = m.kernel_estimator(x.reshape(1, 32, 2, 3)).view(1, 2, 3, 2, 3)  # (B, C/G, k, H, W)
    ref = x.clone()
    for c in range(8):
        for t in range(4):
            acc = 0
            for i in range(3):
                src = t + i - 1
                if 0 <= src < 4:
                    acc = acc + kernels[0, c // 4, i] * x[0, c, src]
            ref[0, c, t] += m.alpha[c] * acc
    torch.testing.assert_close(out, ref)


def test_temporal_conv_starts_as_identity():
    x = torch.randn(1, 8, 4, 3, 3)
    assert torch.equal(TemporalConv(8)(x), x)


def test_dtfnet_and_swin_classes_are_exported():
    assert isinstance(create_model("dtfnet_tiny"), DTFNet)
    assert isinstance(create_model("dtf_swin_tiny"), DTFSwin)


@pytest.mark.parametrize("kt,k,stride", [(4, 7, 2), (1, 3, 1), (1, 3, 2), (1, 1, 2), (2, 3, 1)])
def test_frame_conv_is_the_conv3d_it_stores(kt, k, stride):
    """The backbones run their Conv3d parameters as 2D convs on frames-major tensors."""
    from dtfcli.models.resnet import FrameConv

    torch.manual_seed(kt * 10 + k)
    conv = FrameConv(3, 5, k, stride=stride, kt=kt).double()
    clip = torch.randn(2, 3, 4 * kt, 9, 8, dtype=torch.float64)
    expected = torch.nn.functional.conv3d(clip, conv.weight, None, conv.stride, conv.padding)  # (B, C, T, H, W)
    frames_major = expected.transpose(1, 2).reshape(-1, *expected.shape[1:2], *expected.shape[3:])
    torch.testing.assert_close(conv(clip), frames_major)
    if kt == 1:
        torch.testing.assert_close(conv(clip.transpose(1, 2).reshape(-1, 3, 9, 8)), frames_major)
    else:
        with pytest.raises(ValueError, match="needs a"):
            conv(torch.randn(4, 3, 9, 8, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["tsm", "conv1d", "dyn1d"])
def test_temporal_modules_take_frames_major_input(kind):
    from dtfcli.models.temporal import build_temporal_module

    torch.manual_seed(1)
    module = TemporalShift(8, num_frames=4) if kind == "tsm" else build_temporal_module(kind, 16, 4, filter_groups=4)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    x = torch.randn(2, 16, 4, 3, 5)
    frames = x.transpose(1, 2).reshape(8, 16, 3, 5)
    torch.testing.assert_close(module(frames), module(x).transpose(1, 2).reshape(8, 16, 3, 5))


def test_swin_hidden_gelu_works_in_place_only_without_autograd():
    from dtfcli.models.swin import HiddenGELU

    x = torch.randn(4, 7, 64) * 3
    expected = nn.functional.gelu(x)
    with torch.inference_mode():
        hidden = x.clone()
        out = HiddenGELU()(hidden)
    assert out.data_ptr() == hidden.data_ptr() and torch.equal(out, expected)  # in place, exact
    leaf = x.clone().requires_grad_()
    out = HiddenGELU()(leaf)
    assert out.data_ptr() != leaf.data_ptr() and torch.equal(leaf, x)  # autograd: a new tensor
    out.sum().backward()
    torch.testing.assert_close(leaf.grad, torch.func.grad(lambda t: nn.functional.gelu(t).sum())(x))
    block_mlps = [m.mlp for m in create_model("dtf_swin_tiny").modules() if hasattr(m, "mlp")]
    assert block_mlps and all(isinstance(mlp[1], HiddenGELU) for mlp in block_mlps)


RESNET_TINY = [n for n in TINY if isinstance(create_model(n), DTFNet)]


@pytest.mark.parametrize("name", RESNET_TINY)
def test_a_channels_last_clip_runs_every_convolution_channels_last(name):
    """What `dtf benchmark --channels-last` and GPU users ask for: a channels_last_3d clip
    gives the same logits and gradients, and every 2D convolution of the network reads and
    writes channels-last (each temporal module hands its layout back)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, dropout=0.0).train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (DTFBlock, DynamicTemporalConv)):
                m.alpha.normal_()
    x = torch.randn(2, 3, model.config["num_frames"], 32, 32)
    layouts = []
    hooks = [
        m.register_forward_hook(
            lambda m, i, o: layouts.append(
                (i[0].dim() == 5 or i[0].is_contiguous(memory_format=torch.channels_last))
                and o.is_contiguous(memory_format=torch.channels_last)
            )
        )
        for m in model.modules()
        if type(m).__name__ == "FrameConv"
    ]
    results = []
    for clip in (x, x.contiguous(memory_format=torch.channels_last_3d)):
        layouts.clear()
        model.zero_grad()
        logits = model(clip)
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()], list(layouts)))
    for h in hooks:
        h.remove()
    (ref, ref_grads, _), (got, got_grads, cl_layouts) = results
    assert all(cl_layouts) and len(cl_layouts) > 10
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # Another summation order: compared on the scale of all gradients together (some, like
    # a bias right before a training-mode norm, are zero up to rounding).
    got_all, ref_all = torch.cat([g.flatten() for g in got_grads]), torch.cat([r.flatten() for r in ref_grads])
    torch.testing.assert_close(got_all, ref_all, rtol=1e-3, atol=1e-4 * ref_all.abs().max().item())
