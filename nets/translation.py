"""Image-to-image translation networks (CycleGAN family), sized for 28-32 px digits.

Architectures follow the original CycleGAN code (Zhu et al., ICCV 2017): a ResNet generator
(c7s1-w, downsampling, residual blocks, upsampling, c7s1-out, tanh) and a PatchGAN discriminator
whose output is a map of raw (LSGAN) scores.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nets.checks import at_least, one_of, positive, within

NORMS = ("instance", "batch", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    """``kind`` is one of ``NORMS`` (checked by the constructors)."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str, dropout: float) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(norm, channels), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """ResNet generator ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` with outputs in [-1, 1].

    Args:
        in_channels: channels of the source images.
        out_channels: channels of the translated images.
        width: channels of the first convolution (doubled at each downsampling).
        n_downsampling: stride-2 convolutions before the residual blocks (H and W must divide 2**n).
        n_blocks: residual blocks at the bottleneck.
        norm: ``"instance"`` (CycleGAN's choice), ``"batch"`` or ``"none"``.
        dropout: dropout probability inside residual blocks, in [0, 1).

    >>> ResnetGenerator(3, 3, width=8, n_blocks=1)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int = 64,
        n_downsampling: int = 2,
        n_blocks: int = 6,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("width", width)):
            positive(name, value)
        at_least("n_downsampling", n_downsampling, 0)
        at_least("n_blocks", n_blocks, 0)
        one_of("norm", norm, NORMS)
        within("dropout", dropout, 0, 1, open_high=True)
        self.in_channels = in_channels
        self.out_channels = out_channels
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, width, 7, bias=bias),
            _norm(norm, width),
            nn.ReLU(True),
        ]
        ch = width
        for _ in range(n_downsampling):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias), _norm(norm, ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [_ResidualBlock(ch, norm, dropout) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                _norm(norm, ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator ``[B, in_channels, H, W] -> [B, 1, h, w]`` of raw scores (no sigmoid: LSGAN).

    Args:
        in_channels: channels of the judged images.
        width: channels of the first convolution (doubled per layer, capped at 8x).
        n_layers: convolutions after the first, all but the last of stride 2; 2 suits 32 px digits (6x6 patch
            map), 3 suits 256 px photos.
        norm: ``"instance"`` (CycleGAN's choice), ``"batch"`` or ``"none"``.

    >>> PatchDiscriminator(3, width=8, n_layers=2)(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 1, 6, 6])
    """

    def __init__(self, in_channels: int = 3, width: int = 64, n_layers: int = 2, norm: str = "instance") -> None:
        super().__init__()
        positive("in_channels", in_channels)
        positive("width", width)
        at_least("n_layers", n_layers, 0)
        one_of("norm", norm, NORMS)
        self.in_channels = in_channels
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(width * prev, width * mult, 4, stride=stride, padding=1, bias=bias),
                _norm(norm, width * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(width * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def mixes_batch(net: nn.Module) -> bool:
    """Whether ``net``'s output for one sample depends on the other samples of its batch: batch norm using batch
    statistics (training mode, or no running statistics). Instance norm and no norm treat samples independently.

    >>> mixes_batch(PatchDiscriminator(norm="batch")), mixes_batch(PatchDiscriminator(norm="batch").eval())
    (True, False)
    """
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None) for m in net.modules()
    )


def _index(indices: list[int], device: torch.device) -> Tensor:
    """An index tensor on ``device``; copied from pinned memory without blocking, so the host never waits on the GPU."""
    index = torch.tensor(indices, dtype=torch.long)
    return index.to(device) if device.type == "cpu" else index.pin_memory().to(device, non_blocking=True)


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """CycleGAN initialisation: conv/linear weights ~ N(0, std), biases 0, norm scales ~ N(1, std)."""
    positive("std", std)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


class ImagePool:
    """History of generated images (Shrivastava et al. 2017), as in CycleGAN: the discriminator sees a mix of
    current fakes and fakes from earlier iterations.

    Until the pool holds ``size`` images every fake is stored and returned; afterwards each image is, with
    probability 1/2, swapped with a random stored one (the stored one is returned). ``size=0`` disables it.
    The images of a query are processed in order, as the original per-image loop does (a slot swapped twice in one
    query returns the earlier image of the same query), but the draws are made up front on the CPU and the images
    moved with one gather: a few kernels per query instead of some per image, and no wait on the device.

    Args:
        size: images kept (>= 0).
    """

    def __init__(self, size: int = 50) -> None:
        at_least("size", size, 0)
        self.size = size
        self.images: Tensor | None = None  # [n <= size, C, H, W], detached

    def __len__(self) -> int:
        return 0 if self.images is None else len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        images = images.detach()
        if self.size == 0:
            return images
        stored = len(self)
        n = len(images)
        # sources index cat([stored images, this query's images]); this query's image i is stored + i
        slots = [*range(stored), *range(stored, stored + min(n, self.size - stored))]
        out = list(range(stored, stored + n))
        filled = len(slots) - stored
        if n > filled:
            swap = (torch.rand(n - filled) < 0.5).tolist()
            where = torch.randint(self.size, (n - filled,)).tolist()
            for i, s, j in zip(range(filled, n), swap, where):
                if s:
                    out[i], slots[j] = slots[j], stored + i
        pool = images if self.images is None else torch.cat([self.images, images])
        self.images = pool[_index(slots, pool.device)]
        return pool[_index(out, pool.device)]

    def state_dict(self) -> dict:
        return {"size": self.size, "images": None if self.images is None else self.images.cpu()}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.size = state["size"]
        self.images = None if state["images"] is None else state["images"].to(device)


def forward_batches(net: nn.Module, batches: list[Tensor], batched: bool = True) -> list[Tensor]:
    """``[net(x) for x in batches]``, as one concatenated forward when ``batched`` and ``net`` treats samples
    independently (``nets.translation.mixes_batch``: no batch statistics), which is then the same math in fewer,
    larger kernels; a net with batch statistics gets one forward per batch (they never mix real, fake, augmented)."""
    if not batched or len(batches) < 2 or mixes_batch(net):
        return [net(x) for x in batches]
    return list(net(torch.cat(batches)).split([len(x) for x in batches]))


def cycle_passes(g_ab: nn.Module, g_ba: nn.Module, real_a: Tensor, real_b: Tensor, batched: bool) -> list:
    """``[G(a), F(G(a)), F(b), G(F(b)), G(b), F(a)]``. With ``batched`` (and neither generator mixing samples) each
    generator translates its source and its identity input in one forward; otherwise the identity passes are left
    to the caller (``None``), which runs them after the discriminator's scores, the original code's order."""
    if batched and not (mixes_batch(g_ab) or mixes_batch(g_ba)):
        fake_b, g_b = forward_batches(g_ab, [real_a, real_b])
        fake_a, f_a = forward_batches(g_ba, [real_b, real_a])
        return [fake_b, g_ba(fake_b), fake_a, g_ab(fake_a), g_b, f_a]
    fake_b = g_ab(real_a)
    rec_a = g_ba(fake_b)
    fake_a = g_ba(real_b)
    return [fake_b, rec_a, fake_a, g_ab(fake_a), None, None]
