"""The batched weak and strong views of ``ssl_ext.views``."""

import pytest
import torch
import torch.nn.functional as F

from ssl_ext.views import SSLViews, random_crop_flip, to_float_images


def test_random_crop_flip_is_a_per_sample_window_of_the_padded_image():
    torch.manual_seed(0)
    img = torch.arange(36.0).view(1, 1, 6, 6) / 36
    x = img.repeat(64, 1, 1, 1)
    out = random_crop_flip(x, padding=2, flip=True)
    padded = F.pad(img, (2,) * 4, mode="reflect")[0, 0]
    windows = []
    for oy in range(5):
        for ox in range(5):
            win = padded[oy : oy + 6, ox : ox + 6]
            windows += [win, win.flip(-1)]
    for sample in out[:, 0]:
        assert any(torch.equal(sample, w) for w in windows)
    distinct = {tuple(s.flatten().tolist()) for s in out}
    assert len(distinct) > 10  # randomness is per sample, not per batch
    flipped = random_crop_flip(x, padding=0, flip=True)
    n_flipped = sum(torch.equal(s, img[0].flip(-1)) for s in flipped)
    assert 10 < n_flipped < 54


@pytest.mark.parametrize("chans,size", [(1, 28), (3, 32), (3, 20)])
def test_views_shapes_and_range(chans, size):
    torch.manual_seed(0)
    x = torch.rand(24, chans, size, size)
    views = SSLViews(group_size=4)
    weak, strong = views(x)
    for v in (weak, strong):
        assert v.shape == x.shape and v.dtype == torch.float32
        assert v.min() >= 0 and v.max() <= 1
    assert not torch.equal(weak, strong)
    x8 = (x * 255).to(torch.uint8)
    assert views.weak(x8).dtype == torch.float32 and views.weak(x8).max() <= 1
    assert torch.allclose(views.plain(x8), x8.float() / 255)
    norm = SSLViews(mean=[0.5] * chans, std=[0.25] * chans)
    assert torch.allclose(norm.plain(x), (x - 0.5) / 0.25)


def test_views_bad_arguments():
    with pytest.raises(ValueError, match="C in"):
        to_float_images(torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="group_size"):
        SSLViews(group_size=0)
    with pytest.raises(ValueError, match="mean and std"):
        SSLViews(mean=[0.5])
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(torch.rand(1, 1, 4, 4), padding=4)
