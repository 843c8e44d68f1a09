"""ImageNet initialisation: a video model inflated from a 2D torchvision network computes,
with its temporal modules at their identity start, exactly the 2D network's features on
the frames the stem's centre temporal slice sees (frames 2, 6, ... for early stride 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from _hub_helpers import single_threaded_torch  # noqa: F401 (autouse fixture)
from safetensors.torch import save_file
from torch import nn

from dtfcli.hub import ChecksumError, KeyMismatchError, OfflineError, ShapeMismatchError, inflate_imagenet
from dtfcli.hub.inflate import is_temporal_key
from dtfcli.models import create_model
from dtfcli.models.registry import TINY_SWIN

FRAMES = 8
CENTRE_FRAMES = [2, 6]  # early stride 4: the stem's temporal index 2 of each group of 4


def _randomise_norm_stats(net: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm running statistics and affines, so eval-mode norms matter."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0, 0.1)
    return net.eval()


def _per_frame(video_features: torch.Tensor) -> torch.Tensor:
    """(1, C, T', H', W') -> (T', C): spatially pooled features per internal frame."""
    return video_features.mean(dim=(3, 4))[0].T


@torch.no_grad()
def test_dtfnet_from_resnet18_matches_2d_resnet_frame_by_frame(tmp_path):
    resnet = _randomise_norm_stats(torchvision.models.resnet18(weights=None))
    torch.save(resnet.state_dict(), tmp_path / "resnet18-imagenet.pth")  # as torchvision ships them
    model = create_model("dtfnet_r18", num_classes=10, num_frames=FRAMES)

    report = inflate_imagenet(model, tmp_path / "resnet18-imagenet.pth")

    assert report["kept"] and all(is_temporal_key(k) or k.startswith("fc.") for k in report["kept"])
    clip = torch.randn(1, 3, FRAMES, 64, 64)
    video = _per_frame(model.eval().forward_features(clip))
    trunk = nn.Sequential(*list(resnet.children())[:-1])  # up to and including avgpool
    image = trunk(clip[0, :, CENTRE_FRAMES].transpose(0, 1)).flatten(1)
    torch.testing.assert_close(video, image, rtol=1e-4, atol=1e-5)
    # The stem kernel sits in the centre slice with zeros around it.
    stem = model.conv1.weight
    assert torch.equal(stem[:, :, 2], resnet.conv1.weight)
    assert not stem[:, :, [0, 1, 3]].any()


@torch.no_grad()
def test_dtf_swin_from_2d_swin_matches_it_frame_by_frame(tmp_path):
    # torchvision's SwinTransformer at dtf_swin_tiny's sizes (swin_t itself is 28M parameters;
    # the code path is the same, the test is 10x faster).
    keep = ("embed_dim", "depths", "num_heads")
    sizes = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_SWIN.items() if k in keep}
    torch.manual_seed(0)
    swin = torchvision.models.SwinTransformer(patch_size=[4, 4], window_size=[7, 7], **sizes).eval()
    save_file({k: v.contiguous() for k, v in swin.state_dict().items()}, str(tmp_path / "swin.safetensors"))
    model = create_model("dtf_swin_tiny", num_classes=10, num_frames=FRAMES)

    inflate_imagenet(model, tmp_path / "swin.safetensors")

    clip = torch.randn(1, 3, FRAMES, 32, 32)
    video = _per_frame(model.eval().forward_features(clip))
    image = swin.norm(swin.features(clip[0, :, CENTRE_FRAMES].transpose(0, 1))).mean(dim=(1, 2))
    torch.testing.assert_close(video, image, rtol=1e-4, atol=1e-5)
    assert any(".temporal." in k for k in model.state_dict())  # DTF blocks were there, at identity


def test_2d_weights_of_another_width_or_depth_are_refused(tmp_path):
    tiny = create_model("dtfnet_tiny", num_frames=FRAMES)
    # Same layout as dtfnet_tiny (one basic block per stage) at torchvision's widths 64..512.
    same_keys = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    torch.save(same_keys.state_dict(), tmp_path / "r10-wide.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")

    with pytest.raises(ShapeMismatchError, match="r10-wide.pth.*conv1.weight file \\(64, 3, 7, 7\\)"):
        inflate_imagenet(tiny, tmp_path / "r10-wide.pth")
    with pytest.raises(KeyMismatchError, match="r18.pth.*unexpected: layer1.1.conv1.weight"):
        inflate_imagenet(tiny, tmp_path / "r18.pth")


def test_torchvision_weights_offline_say_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = create_model("c2d_r18", num_frames=4)
    file_name = Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    expected = tmp_path / "torch" / "hub" / "checkpoints" / file_name

    with pytest.raises(OfflineError) as err:
        inflate_imagenet(model)  # "torchvision": the ResNet-18 weights of torchvision's weights API
    assert str(expected) in str(err.value) and "\n" not in str(err.value)

    # A file put there by hand is checked against the hash torchvision publishes in its name.
    expected.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), expected)
    with pytest.raises(ChecksumError, match=file_name):
        inflate_imagenet(model)
