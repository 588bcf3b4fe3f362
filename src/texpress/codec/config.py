"""Model configuration: one frozen dataclass describes a codec fully, presets are named instances.

A pruned or slimmed model is just another ModelConfig (narrower widths, fewer blocks), so every
variant builds, saves and loads through the same code path.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from texpress.errors import ConfigError
from texpress.params import build_section

UPSCALE_KINDS = ("deconv", "subpixel", "resize")
NORM_KINDS = ("channelnorm", "gdn")
TRAIN_QUANT_KINDS = ("ste", "noise")
ENTROPY_KINDS = ("hyperprior", "checkerboard", "channel-groups")
SYNTHESIS_KINDS = ("upscale", "two-layer")
MAX_CHANNEL_GROUPS = 16  # two coding passes each; the .tpx header counts passes in a byte (codec.bitstream)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one codec.

    enc_widths: stem width, then the output width of each of the four stride-2 stages. With
        stem_kernel 0 there is no stem and enc_widths[0] must be 3 (the first stage reads RGB).
    gen_widths: residual-trunk width, then the output width of each of the four upscale blocks. With
        out_kernel 0 there is no output conv and gen_widths[4] must be 3 (the last upscale makes RGB).
    norm: `channelnorm` (HiFiC: ChannelNorm + ReLU after every conv) or `gdn` (GDN in the encoder,
        inverse GDN in the generator, Balle et al.: no ReLU).
    down_kernel / up_kernel: kernel of the stride-2 convs and of the upscale convs.
    train_quant: what the generator reads in training. `ste`: the rounded latents, straight-through
        gradient (HiFiC; it learns exactly what the bitstream carries). `noise`: the latents plus
        uniform noise, as the rate term sees them (Balle et al., CompressAI). Coding always rounds.
    entropy: the model of y. `hyperprior`: mean-scale hyperprior (Minnen et al. 2018). `checkerboard`:
        the hyperprior codes the anchor half of y, then a masked context conv over the decoded anchors
        refines the means and scales of the other half (He et al. 2021; codec.context).
        `channel-groups`: ELIC's space-channel context (He et al. 2022; codec.channel_context): y is
        coded group of channels by group, each group in two checkerboard passes, its means and scales
        refined from the hyperprior's, from the already decoded groups and from its own decoded anchors.
    context_channels: output channels of the checkerboard's context conv (0: latent_channels // 2).
    synthesis: `upscale` (the head conv, residual blocks and four 2x upscale blocks) or `two-layer`, a
        shallow synthesis (Yang & Mandt 2023): a 3x3 conv to gen_widths[0] x 16 channels, PixelShuffle(4),
        IGDN or ChannelNorm + ReLU, then an up_kernel conv to 3 x 16 channels and PixelShuffle(4);
        gen_widths[1:] and res_blocks are unused (texpress.slim's fewer-layers students).
    rate_lambdas: empty for a single-rate model. Otherwise the rate weights of the trained rate levels,
        highest weight (lowest rate) first: one model codes at any quality between them through
        learned per-channel quantisation gains (codec.gain).
    top_upscale, top_upscales, top_kernel: the upper-layer study (docs/texture.md). The top
        `top_upscales` (0, 1 or 2) of the four upscale blocks, those nearest the image, use the kind
        `top_upscale` with a top_kernel x top_kernel kernel (0: up_kernel) instead of `upscale`:
        e.g. a 4x4 deconv, whose kernel the stride divides, or a sub-pixel conv, on a trained 5x5
        deconv model. 0 (the default) changes nothing.
    channel_groups: the uneven channel groups of `channel-groups`, first coded first, summing to
        latent_channels (empty: 1/16, 1/16, 1/8, 1/4 and the rest of them, 8-8-16-32-64 of 128).
    """

    enc_widths: tuple[int, ...] = (60, 120, 240, 480, 960)
    latent_channels: int = 220
    gen_widths: tuple[int, ...] = (960, 480, 240, 120, 60)
    res_blocks: int = 9
    hyper_channels: int = 320
    upscale: str = "deconv"
    stem_kernel: int = 7
    out_kernel: int = 7
    norm: str = "channelnorm"
    down_kernel: int = 3
    up_kernel: int = 3
    train_quant: str = "ste"
    entropy: str = "hyperprior"
    context_channels: int = 0
    rate_lambdas: tuple[float, ...] = ()
    synthesis: str = "upscale"
    top_upscale: str = "deconv"
    top_upscales: int = 0
    top_kernel: int = 0
    channel_groups: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "enc_widths", tuple(int(w) for w in self.enc_widths))
        object.__setattr__(self, "gen_widths", tuple(int(w) for w in self.gen_widths))
        object.__setattr__(self, "rate_lambdas", tuple(float(v) for v in self.rate_lambdas))
        object.__setattr__(self, "channel_groups", tuple(int(v) for v in self.channel_groups))
        if len(self.enc_widths) != 5 or len(self.gen_widths) != 5:
            raise ConfigError("enc_widths and gen_widths need 5 entries each (stem/trunk + 4 stages)")
        ints = [*self.enc_widths, *self.gen_widths, self.latent_channels, self.hyper_channels]
        if any(w < 1 for w in ints) or self.res_blocks < 0:
            raise ConfigError("widths and channel counts must be positive, res_blocks >= 0")
        if self.upscale not in UPSCALE_KINDS:
            raise ConfigError(f"upscale must be one of {', '.join(UPSCALE_KINDS)}, got {self.upscale!r}")
        if self.norm not in NORM_KINDS:
            raise ConfigError(f"norm must be one of {', '.join(NORM_KINDS)}, got {self.norm!r}")
        if self.train_quant not in TRAIN_QUANT_KINDS:
            raise ConfigError(f"train_quant must be one of {', '.join(TRAIN_QUANT_KINDS)}, got {self.train_quant!r}")
        for name in ("stem_kernel", "out_kernel"):
            k = getattr(self, name)
            if k < 0 or (k and k % 2 == 0):
                raise ConfigError(f"{name} must be odd, or 0 for none")
        if self.stem_kernel == 0 and self.enc_widths[0] != 3:
            raise ConfigError("without a stem (stem_kernel 0) enc_widths[0] must be 3, the RGB input")
        if self.out_kernel == 0 and self.gen_widths[4] != 3:
            raise ConfigError("without an output conv (out_kernel 0) gen_widths[4] must be 3, the RGB output")
        if self.down_kernel < 2 or self.up_kernel < 1:
            raise ConfigError("down_kernel must be >= 2 and up_kernel >= 1")
        if self.upscale == "deconv" and self.up_kernel < 2:
            raise ConfigError("a deconv upscale needs up_kernel >= 2")
        if self.top_upscale not in UPSCALE_KINDS:
            raise ConfigError(f"top_upscale must be one of {', '.join(UPSCALE_KINDS)}, got {self.top_upscale!r}")
        if self.top_upscales not in (0, 1, 2):
            raise ConfigError(f"top_upscales must be 0, 1 or 2, got {self.top_upscales!r}")
        if self.top_kernel < 0 or (self.top_upscale == "deconv" and self.top_upscales and self.top_kernel == 1):
            raise ConfigError("top_kernel must be 0 (up_kernel) or at least 1 (2 for a deconv)")
        if self.entropy not in ENTROPY_KINDS:
            raise ConfigError(f"entropy must be one of {', '.join(ENTROPY_KINDS)}, got {self.entropy!r}")
        if self.synthesis not in SYNTHESIS_KINDS:
            raise ConfigError(f"synthesis must be one of {', '.join(SYNTHESIS_KINDS)}, got {self.synthesis!r}")
        if self.synthesis == "two-layer" and (self.out_kernel or self.res_blocks):
            raise ConfigError("a two-layer synthesis has no output conv and no residual blocks (out_kernel 0, res_blocks 0)")
        if self.context_channels < 0:
            raise ConfigError("context_channels must be >= 0")
        self._check_groups()
        lams = self.rate_lambdas
        if len(lams) == 1 or any(v <= 0 for v in lams) or any(a <= b for a, b in zip(lams, lams[1:])):
            raise ConfigError("rate_lambdas: two or more positive rate weights, strictly decreasing (or none)")

    def _check_groups(self) -> None:
        groups = self.channel_groups
        if not groups:
            return
        if self.entropy != "channel-groups":
            raise ConfigError(f"channel_groups needs entropy: channel-groups (entropy is {self.entropy!r})")
        if any(c < 1 for c in groups) or len(groups) > MAX_CHANNEL_GROUPS:
            raise ConfigError(f"channel_groups: 1 to {MAX_CHANNEL_GROUPS} groups of >= 1 channel, got {list(groups)}")
        if sum(groups) != self.latent_channels:
            raise ConfigError(f"channel_groups must sum to latent_channels ({self.latent_channels}), got "
                              f"{'+'.join(map(str, groups))} = {sum(groups)}")

    @property
    def groups(self) -> tuple[int, ...]:
        """The channel groups y is coded in: one group of every channel unless entropy is channel-groups."""
        c = self.latent_channels
        if self.entropy != "channel-groups":
            return (c,)
        if self.channel_groups:
            return self.channel_groups
        head = (c // 16, c // 16, c // 8, c // 4)
        return tuple(v for v in (*head, c - sum(head)) if v)

    @property
    def variable_rate(self) -> bool:
        return bool(self.rate_lambdas)

    def upscale_of(self, block: int) -> tuple[str, int]:
        """(kind, kernel) of upscale block 0..3 (3 is the one nearest the image)."""
        if block >= 4 - self.top_upscales:
            return self.top_upscale, self.top_kernel or self.up_kernel
        return self.upscale, self.up_kernel

    @property
    def context_width(self) -> int:
        return self.context_channels or max(1, self.latent_channels // 2)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (lists, ints, str) so checkpoints load with weights_only=True; the top_*
        fields only where a top upscale is set."""
        d = asdict(self)
        d["enc_widths"] = list(self.enc_widths)
        d["gen_widths"] = list(self.gen_widths)
        d["rate_lambdas"] = list(self.rate_lambdas)
        if not self.top_upscales:  # the checkpoints written before the study keep their exact bytes
            for name in ("top_upscale", "top_upscales", "top_kernel"):
                d.pop(name)
        d["channel_groups"] = list(self.channel_groups)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return build_section(cls, d, "model config")

    def replace(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    # Mentzer et al. 2020, "High-Fidelity Generative Image Compression".
    "hific": ModelConfig(),
    # CompressAI's mean-scale hyperprior transforms in texpress's layout (docs/architecture.md): GDN/IGDN
    # transforms with 5x5 stride-2 convs at 128 channels, no stem, the last upscale makes RGB.
    "base": (BASE := ModelConfig(
        enc_widths=(3, 128, 128, 128, 128),
        latent_channels=192,
        gen_widths=(192, 128, 128, 128, 3),
        res_blocks=0,
        hyper_channels=128,
        upscale="deconv",
        stem_kernel=0,
        out_kernel=0,
        norm="gdn",
        down_kernel=5,
        up_kernel=5,
    )),
    # Asymmetric: base's encoder, a 6x cheaper synthesis (96-64-48-32) and a narrower latent and
    # hyperprior; the encoder runs once, the decoder at every view.
    "lite": (LITE := BASE.replace(latent_channels=128, gen_widths=(96, 64, 48, 32, 3), hyper_channels=96)),
    # lite with the checkerboard context and seven rate levels (rate weights 2x apart; quality 50 is
    # lite-q1's 0.6): one checkpoint for the whole curve.
    "lite-vr": LITE.replace(entropy="checkerboard", rate_lambdas=(4.8, 2.4, 1.2, 0.6, 0.3, 0.15, 0.075)),
    # lite with ELIC's space-channel context: channel groups 8-8-16-32-64, each in two checkerboard passes
    # (codec.channel_context); untrained so far (docs/architecture.md).
    "lite-cg": LITE.replace(entropy="channel-groups"),
}


def preset_name(cfg: ModelConfig) -> str:
    """The preset whose architecture `cfg` is (its training quantization aside), else "custom".
    A warm start keeps its checkpoint's architecture, whatever train.preset says."""
    for name, preset in PRESETS.items():
        if preset.replace(train_quant=cfg.train_quant) == cfg:
            return name
    return "custom"


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
