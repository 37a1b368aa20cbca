"""A compact U-Net ε_θ(x_t, t, y) for small images, readable in one sitting.

The shape follows DDPM's network (Ho et al. 2020, App. B), itself PixelCNN++'s U-Net:

    x ─conv─► [ResBlock×n (+attn)] ─down─► … ─► middle: Res, Attn, Res ─► … ─up─► [ResBlock×(n+1)] ─conv─► ε̂
                    │ skips ────────────────────────────────────────────────────────► concat

* time t enters through a sinusoidal embedding (Transformer positional encoding, Vaswani et al. 2017)
  and an MLP; it is added inside every ResBlock. t may be an integer or a float tensor (B,), so samplers
  that land between integer timesteps (Karras/DPM-Solver) can call the same network.
* an optional class label y gets its own embedding, added to the time embedding. Label ``num_classes``
  is the "null" label: classifier-free guidance (Ho & Salimans 2022) trains with labels dropped to it,
  and an unconditional call ``model(x, t)`` uses it.
* ``skip_scale`` multiplies the skip connections before they are concatenated (Skip-Tuning, Ma et al.
  2024, arXiv:2402.15170). 1.0 is the plain U-Net; a float scales every level, a sequence gives one
  factor per resolution level (outermost first). It can be changed at sampling time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MAX_CHANNELS = 2048    # widest level of any U-Net the course builds (cifar10: 192)
MAX_IMAGE_SIZE = 256


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 1
    image_size: int = 28
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 2)  # one entry per resolution level
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (2,)         # levels (0 = full resolution) with self-attention
    dropout: float = 0.1
    num_classes: int | None = 10                # None: unconditional network
    groups: int = 32                            # GroupNorm groups

    def __post_init__(self):
        """Refuse a config no course machine can build (a corrupt or foreign checkpoint asking for 4,096
        channels would otherwise allocate without limit) or one the network cannot use."""
        ints = {k: getattr(self, k) for k in ("in_channels", "image_size", "base_channels", "num_res_blocks",
                                              "groups")}
        for key, value in ints.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"U-Net config {key} must be a positive integer, got {value!r}")
        if not self.channel_mults or any(isinstance(m, bool) or not isinstance(m, int) or m < 1
                                         for m in self.channel_mults):
            raise ValueError(f"U-Net config channel_mults must be positive integers, got "
                             f"{self.channel_mults!r}")
        widest = self.base_channels * max(self.channel_mults)
        if widest > MAX_CHANNELS or self.image_size > MAX_IMAGE_SIZE or self.in_channels > 16:
            raise ValueError(f"U-Net config too large for this course (widest level {widest} channels, "
                             f"limit {MAX_CHANNELS}; image_size {self.image_size}, limit {MAX_IMAGE_SIZE}; "
                             f"in_channels {self.in_channels}, limit 16)")
        if self.num_classes is not None and (isinstance(self.num_classes, bool) or
                                             not isinstance(self.num_classes, int) or self.num_classes < 1):
            raise ValueError(f"U-Net config num_classes must be None or a positive integer, got "
                             f"{self.num_classes!r}")

    def to_dict(self) -> dict:
        """Plain dict of ints/floats/lists, safe to store in a weights_only checkpoint or JSON."""
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attn_levels"] = list(self.attn_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown U-Net config keys {sorted(unknown)}; allowed: {sorted(known)}")
        d = dict(d)
        for key in ("channel_mults", "attn_levels"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


# Named configurations. mnist: 28 → 14 → 7 with attention at 7×7.
CONFIGS: dict[str, UNetConfig] = {
    "mnist": UNetConfig(in_channels=1, image_size=28, base_channels=32, channel_mults=(1, 2, 2),
                        num_res_blocks=2, attn_levels=(2,), dropout=0.1, num_classes=10, groups=8),
    "cifar10": UNetConfig(in_channels=3, image_size=32, base_channels=96, channel_mults=(1, 2, 2, 2),
                          num_res_blocks=2, attn_levels=(2,), dropout=0.1, num_classes=10, groups=32),
    # for tests: a few thousand parameters, still every code path (attention, labels, two levels)
    "tiny": UNetConfig(in_channels=1, image_size=28, base_channels=8, channel_mults=(1, 2),
                       num_res_blocks=1, attn_levels=(1,), dropout=0.1, num_classes=10, groups=4),
}


def get_config(name_or_dict) -> UNetConfig:
    """A named configuration ('mnist', 'cifar10', 'tiny'), a dict, or a UNetConfig."""
    if isinstance(name_or_dict, UNetConfig):
        return name_or_dict
    if isinstance(name_or_dict, dict):
        return UNetConfig.from_dict(name_or_dict)
    if name_or_dict not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)} (or a dict), got {name_or_dict!r}")
    return CONFIGS[name_or_dict]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: [cos(t ω_k), sin(t ω_k)],
    ω_k = max_period^(−k/(dim/2)), k = 0 … dim/2 − 1."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                        # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)    # (B, dim)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, plus the embedding, → GroupNorm → SiLU → dropout → conv, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))                    # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]          # add the time/label embedding per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))      # (B, c_out, H, W)
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over the H·W positions (used only at the lowest resolution)."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)  # each (B, C, HW)
        h = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                           v.transpose(1, 2)[:, None])       # (B, 1, HW, C)
        h = h[:, 0].transpose(1, 2).reshape(B, C, H, W)                       # (B, C, H, W)
        return x + self.proj(h)


class Level(nn.Module):
    """The ResBlocks (and optional attention) that run at one resolution."""

    def __init__(self, channels: Sequence[tuple[int, int]], emb_dim: int, dropout: float, groups: int,
                 attn: bool):
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(ci, co, emb_dim, dropout, groups) for ci, co in channels])
        self.attns = nn.ModuleList([Attention(co, groups) if attn else nn.Identity() for _, co in channels])


class UNet(nn.Module):
    """ε_θ(x_t, t[, y]) with the shape of x_t. Build with ``UNet("mnist")`` or ``UNet(UNetConfig(...))``."""

    def __init__(self, config="mnist"):
        super().__init__()
        cfg = self.config = get_config(config)
        C, mults, n = cfg.base_channels, cfg.channel_mults, cfg.num_res_blocks
        if cfg.image_size % 2 ** (len(mults) - 1):
            raise ValueError(f"image_size {cfg.image_size} must be divisible by 2^(levels-1) = "
                             f"{2 ** (len(mults) - 1)}")
        emb = 4 * C
        self.time_mlp = nn.Sequential(nn.Linear(C, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.num_classes = cfg.num_classes
        self.null_label = cfg.num_classes  # the extra embedding row means "no label"
        self.label_emb = nn.Embedding(cfg.num_classes + 1, emb) if cfg.num_classes is not None else None
        self.skip_scale: float | Sequence[float] = 1.0

        self.conv_in = nn.Conv2d(cfg.in_channels, C, 3, padding=1)
        chans = [C * m for m in mults]
        skip_ch, c = [C], C
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, co in enumerate(chans):
            pairs = [(c if j == 0 else co, co) for j in range(n)]
            self.down.append(Level(pairs, emb, cfg.dropout, cfg.groups, i in cfg.attn_levels))
            c = co
            skip_ch += [co] * n
            last = i == len(chans) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skip_ch.append(c)
        self.mid1 = ResBlock(c, c, emb, cfg.dropout, cfg.groups)
        self.mid_attn = Attention(c, cfg.groups)
        self.mid2 = ResBlock(c, c, emb, cfg.dropout, cfg.groups)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, co in reversed(list(enumerate(chans))):
            pairs = []
            for _ in range(n + 1):
                pairs.append((c + skip_ch.pop(), co))
                c = co
            self.up.append(Level(pairs, emb, cfg.dropout, cfg.groups, i in cfg.attn_levels))
            self.upsample.append(nn.Conv2d(c, c, 3, padding=1) if i > 0 else nn.Identity())
        self.norm_out = nn.GroupNorm(cfg.groups, c)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _skip_factor(self, level: int) -> float:
        s = self.skip_scale
        if isinstance(s, (int, float)):
            return float(s)
        s = list(s)
        if len(s) != len(self.config.channel_mults):
            raise ValueError(f"skip_scale must be a float or one factor per level "
                             f"({len(self.config.channel_mults)}), got {len(s)} factors")
        return float(s[level])

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        if not torch.is_tensor(t):
            t = torch.tensor(t)
        t = t.reshape(-1).expand(batch) if t.numel() == 1 else t
        if t.shape != (batch,):
            raise ValueError(f"t must have shape (B,) = ({batch},), got {tuple(t.shape)}")
        emb = self.time_mlp(timestep_embedding(t, self.config.base_channels))   # (B, 4C)
        if self.label_emb is None:
            if y is not None:
                raise ValueError("this U-Net is unconditional (num_classes=None); call it without y")
            return emb
        if y is None:
            y = torch.full((batch,), self.null_label, dtype=torch.long, device=emb.device)
        if y.dtype not in (torch.int64, torch.int32) or y.shape != (batch,):
            raise ValueError(f"y must be an integer tensor of shape ({batch},), "
                             f"got {y.dtype} {tuple(y.shape)}")
        if int(y.min()) < 0 or int(y.max()) > self.null_label:
            raise ValueError(f"y must lie in [0, {self.null_label}] ({self.null_label} = null label)")
        return emb + self.label_emb(y.long())                                   # (B, 4C)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t.to(x.device) if torch.is_tensor(t) else t, y, x.shape[0])
        h = self.conv_in(x)                                      # (B, C, H, W)
        skips = [(0, h)]
        for i, (level, down) in enumerate(zip(self.down, self.downsample, strict=True)):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))                          # (B, C·mult_i, H/2^i, W/2^i)
                skips.append((i, h))
            if not isinstance(down, nn.Identity):
                h = down(h)                                      # (B, C·mult_i, H/2^(i+1), W/2^(i+1))
                skips.append((i + 1, h))
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)     # (B, C·mult_last, lowest res)
        for level, up in zip(self.up, self.upsample, strict=True):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                i, s = skips.pop()
                h = attn(block(torch.cat([h, self._skip_factor(i) * s], dim=1), emb))  # concat on channels
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))            # (B, c, 2H, 2W)
        return self.conv_out(F.silu(self.norm_out(h)))           # (B, in_channels, H, W)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
