"""Losses of HiFiC-style training.

    generator:      L_G = lambda * r(y) + d(x, x') - beta * log D(x', y)
    distortion:     d   = k_m * MSE_255 + k_ms_ssim * (1 - MS-SSIM) + k_p * LPIPS + k_fft * |A(x') - A(x)|
    feature match:  k_fm * mean_l |D_l(x', y) - D_l(x, y)|  (adversarial phase only)
    discriminator:  L_D = -log(1 - D(x', y)) - log D(x, y)

A is the amplitude spectrum (fourier_amplitude_loss), D_l the activations of D's layers (both need
no downloaded weights). r is in bits per pixel (y and z together, from the hyperprior likelihoods). MSE_255 is the mean
squared error on the 0-255 scale, which is what HiFiC's k_M = 0.075 * 2^-5 weights. D(.) is the
sigmoid of the discriminator's patch logits; the logs are computed with softplus for stability
(-log sigmoid(l) = softplus(-l), -log(1 - sigmoid(l)) = softplus(l)), and the generator uses the
non-saturating -log D(x', y).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim

from texpress.errors import ConfigError

MSE_255 = 255.0**2
MS_SSIM_WIN = 11


def bits_per_pixel(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Total bits of every latent (y and z) over the image pixels: -sum(log2 p) / pixels."""
    return sum(-torch.log2(lk).sum() for lk in likelihoods.values()) / num_pixels


def weighted_rate(likelihoods: dict[str, torch.Tensor], weights: torch.Tensor, pixels_per_image: int) -> torch.Tensor:
    """A variable-rate batch's rate term: each image's bits per pixel times its own rate weight
    lambda (the level it was coded at), averaged over the batch."""
    bits = sum(-torch.log2(lk).flatten(1).sum(dim=1) for lk in likelihoods.values())
    return (weights * bits).mean() / pixels_per_image


def mse_255(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x_hat, x) * MSE_255


def psnr_from_mse_255(mse: float) -> float:
    return 10.0 * math.log10(MSE_255 / mse) if mse > 0 else float("inf")


def ms_ssim_any(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """MS-SSIM for images of any size, in [0, 1] (data_range 1).

    pytorch-msssim's five scales with an 11-tap window need a side above 160 px; smaller images
    (training patches) use the largest odd window that fits the five scales, and below 49 px
    single-scale SSIM. The value is exact MS-SSIM for every side above 160."""
    side = min(x.shape[-2:])
    if side > (MS_SSIM_WIN - 1) * 16:
        return ms_ssim(x_hat, x, data_range=1.0, win_size=MS_SSIM_WIN)
    win = (side - 1) // 16 + 1
    win -= 1 - win % 2  # odd
    if win >= 3:
        return ms_ssim(x_hat, x, data_range=1.0, win_size=win)
    return ssim(x_hat, x, data_range=1.0, win_size=max(1, min(MS_SSIM_WIN, side - 1 + side % 2)))


def load_lpips(path: str | Path, net: str = "alex") -> torch.nn.Module:
    """LPIPS from a local weights file; nothing is downloaded.

    The file is either a full LPIPS state dict (`lpips.LPIPS(...).state_dict()` saved with
    torch.save) or the torchvision backbone's state dict (e.g. alexnet's `features.*` weights);
    in the second case the linear heads are the v0.1 ones that ship inside the lpips package."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"train.lpips_weights: {path}: no such file")
    try:
        import lpips
    except ModuleNotFoundError:  # pragma: no cover - lpips is a dependency
        raise ConfigError("train.lpips_weights is set but the lpips package is not installed") from None
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"train.lpips_weights: {path}: not a readable weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"train.lpips_weights: {path}: not a state dict")
    # pnet_rand: the backbone is built without weights (no download); pretrained: linear heads
    # from the file inside the lpips package.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    target = model.state_dict()
    if any(k.startswith("net.") for k in state):
        full = {k: v for k, v in state.items() if k in target}
        missing = [k for k in target if k.startswith("net.") and k not in full]
    else:
        full = {}
        missing = []
        for key in target:
            if not key.startswith("net."):
                continue
            _, _slice, index, rest = key.split(".", 3)
            source = f"features.{index}.{rest}"
            if source in state:
                full[key] = state[source]
            else:
                missing.append(source)
    if missing:
        raise ConfigError(f"train.lpips_weights: {path}: no weights for {missing[0]} "
                          f"(expected an LPIPS or torchvision {net} state dict)")
    try:
        model.load_state_dict(full, strict=False)
    except RuntimeError as exc:
        raise ConfigError(f"train.lpips_weights: {path}: {str(exc).splitlines()[0]}") from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class CodecLoss(torch.nn.Module):
    """The distortion d(x, x') and the rate r, with the weights of the run."""

    def __init__(self, k_m: float, k_ms_ssim: float = 0.0, k_p: float = 1.0, lpips_model: torch.nn.Module | None = None,
                 k_fft: float = 0.0):
        super().__init__()
        self.k_m = k_m
        self.k_fft = k_fft
        self.k_ms_ssim = k_ms_ssim
        self.k_p = k_p
        self.lpips = lpips_model

    def forward(self, out: dict, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        x_hat = out["x_hat"]
        bpp = bits_per_pixel(out["likelihoods"], n * h * w)
        mse = mse_255(x_hat, x)
        dist = self.k_m * mse
        terms = {"bpp": bpp, "mse": mse}
        if self.k_ms_ssim > 0:
            msssim = ms_ssim_any(x_hat.clamp(0, 1), x)
            dist = dist + self.k_ms_ssim * (1.0 - msssim)
            terms["ms_ssim"] = msssim
        if self.lpips is not None and self.k_p > 0:
            perceptual = self.lpips(x_hat, x, normalize=True).mean()
            dist = dist + self.k_p * perceptual
            terms["lpips"] = perceptual
        if self.k_fft > 0:
            amplitude = fourier_amplitude_loss(x_hat, x)
            dist = dist + self.k_fft * amplitude
            terms["fft"] = amplitude
        terms["distortion"] = dist
        return terms


def feature_matching_loss(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """pix2pixHD's feature matching: the mean over D's layers of the L1 distance between its
    activations on x' and on x (x's detached). It asks x' to look like x to every layer of D, a
    denser and steadier signal than D's verdict alone, and needs no downloaded network."""
    return sum(F.l1_loss(f.float(), r.detach().float()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def fourier_amplitude_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 distance of the amplitude spectra |FFT| (orthonormal, per channel) of x' and x (Fuoli et al.
    2021, "Fourier space losses"). It ignores phase, so an MSE-blurred x' pays for the texture energy
    it lost wherever that energy sits, and an x' with a periodic lattice pays for the spectral peaks
    it added."""
    a_hat = torch.fft.rfft2(x_hat.float(), norm="ortho").abs()
    a = torch.fft.rfft2(x.float(), norm="ortho").abs()
    return F.l1_loss(a_hat, a)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating -log D(x', y)."""
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(x, y) - log(1 - D(x', y))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
