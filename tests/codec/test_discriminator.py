import torch
from torch import nn

from texpress.codec.discriminator import ConditionalDiscriminator


def test_patch_logits_depend_on_the_image_and_on_the_latent():
    torch.manual_seed(0)
    d = ConditionalDiscriminator(latent_channels=96).eval()
    x = torch.rand(2, 3, 128, 192)
    y = torch.randn(2, 96, 8, 12)
    out = d(x, y)
    assert out.shape == (2, 1, 16, 24)  # one logit per 8x8 patch
    assert not torch.allclose(out, d(x, torch.randn_like(y)))  # conditioned on y
    assert not torch.allclose(out, d(torch.rand_like(x), y))


def test_every_conv_is_spectrally_normalised():
    d = ConditionalDiscriminator(latent_channels=16)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6  # condition, 64, 128, 256, 512, 1
    assert all(hasattr(m, "weight_orig") for m in convs)
    widths = [m.out_channels for m in convs]
    assert widths == [12, 64, 128, 256, 512, 1]


def test_gradients_reach_both_inputs():
    d = ConditionalDiscriminator(latent_channels=8)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    y = torch.randn(1, 8, 4, 4, requires_grad=True)
    d(x, y).mean().backward()
    assert x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0
