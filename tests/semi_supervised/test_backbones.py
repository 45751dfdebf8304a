"""WideResNets in timm's registry; timm ResNet and ViT at 32x32 on CPU."""

import pytest
import timm
import torch

import ssl_ext  # noqa: F401  (registers the models)
from ssl_ext.backbones import WideResNet


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def forward_backward(model, x):
    model.train()
    out = model(x)
    out.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return out, grads


def test_wrn_registered_in_timm():
    assert timm.is_model("wrn28_2") and timm.is_model("wrn28_8")
    assert "wrn28_2" in timm.list_models("wrn*")


def test_parameter_counts():
    # 1.47M for WRN-28-2 (10 classes), 23.4M for WRN-28-8 (100 classes)
    assert n_params(timm.create_model("wrn28_2", num_classes=10)) == pytest.approx(
        1.47e6, rel=0.01
    )
    assert n_params(timm.create_model("wrn28_8", num_classes=100)) == pytest.approx(
        23.4e6, rel=0.01
    )


def test_wrn28_2_forward_backward_and_ssl_details():
    torch.manual_seed(0)
    model = timm.create_model("wrn28_2", num_classes=10, in_chans=1)
    assert isinstance(model, WideResNet)
    out, grads = forward_backward(model, torch.rand(4, 1, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.001 for m in bns)
    slopes = {
        m.negative_slope for m in model.modules() if isinstance(m, torch.nn.LeakyReLU)
    }
    assert slopes == {0.1}
    # any size and 3 channels
    model3 = timm.create_model("wrn28_2", num_classes=5, in_chans=3)
    assert model3.eval()(torch.rand(2, 3, 28, 28)).shape == (2, 5)


def test_timm_classifier_interface():
    model = timm.create_model("wrn28_2", num_classes=10, in_chans=1).eval()
    x = torch.rand(2, 1, 32, 32)
    assert model.num_features == 128
    assert model.get_classifier().out_features == 10
    feats = model.forward_features(x)
    assert feats.shape == (2, 128, 8, 8)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 128)
    assert torch.allclose(model.forward_head(feats), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.num_classes == 3
    model.reset_classifier(0)
    assert model(x).shape == (2, 128)
    headless = timm.create_model("wrn28_2", num_classes=0, in_chans=1).eval()
    assert headless(x).shape == (2, 128)


def test_pretrained_without_weights_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="no pretrained weights.*wrn28_2"):
        timm.create_model("wrn28_2", pretrained=True)
    # a local checkpoint is accepted through timm's pretrained_cfg_overlay
    src = timm.create_model("wrn28_2", num_classes=10)
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    loaded = timm.create_model(
        "wrn28_2",
        pretrained=True,
        num_classes=10,
        pretrained_cfg_overlay={"file": str(path)},
    )
    for a, b in zip(src.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        WideResNet(depth=27)
    with pytest.raises(ValueError, match="widen_factor"):
        WideResNet(widen_factor=0)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("resnet18", {}),
        ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4, "depth": 4}),
    ],
)
def test_timm_models_at_32x32(name, kwargs):
    torch.manual_seed(0)
    model = timm.create_model(
        name, pretrained=False, num_classes=10, in_chans=3, **kwargs
    )
    out, grads = forward_backward(model, torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
