"""CR-CycleGAN: CycleGAN + CR-GAN consistency on both discriminators (the base of ACCR)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.cyclegan import CycleGAN, forward_batches
from nets.augment import Translate
from nets.checks import at_least, one_of

__all__ = ["CR_SCALE", "CRCycleGAN", "ConsistencyInput", "forward_batches"]
CR_REDUCE = ("elementwise", "mean")
# The D loss is 0.5 (real + fake) (CycleGAN); CR-GAN adds lambda |D(x) - D(T(x))|^2 to an un-halved D loss. A CR term
# enters here as CR_SCALE * lambda * distance, so lambda = 10 weighs it against the GAN terms as in CR-GAN.
CR_SCALE = 0.5


class ConsistencyInput(NamedTuple):
    """One consistency term ``weight * |D(x) - D(T(x))|^2`` for a discriminator to compute."""

    name: str  # the loss term's name, e.g. "cr_real_a"
    weight: float
    x: Tensor  # the images, detached
    d_x: Tensor | None  # D(x) when the D loss already computed it, else None (computed with D(T(x)))


class CRCycleGAN(CycleGAN):
    """CycleGAN + CR-GAN consistency (Zhang et al., ICLR 2020) on both discriminators, real images only:
    ``L_D += 0.5 l_real |D(x) - D(T(x))|^2``, reusing ``D(x)`` from the D loss. The 0.5 (``CR_SCALE``) is the D
    loss's own: ``L_D = 0.5 [L_gan + l_real L_cr]``, so ``l_real`` means what CR-GAN's lambda means against its
    un-halved D loss (CR-GAN: lambda = 10).
    ``T(x)`` is forwarded in a batch of its own when D normalises over the batch (``nets.translation.mixes_batch``),
    so with batch norm too a CR term is exactly 0 when ``T`` is the identity.
    Subclasses add images to judge consistently by overriding ``consistency_inputs``.

    Args:
        lambda_real: weight of the real-image consistency (10, CR-GAN's value; 0 turns it off; >= 0).
        augment: the augmentation ``T`` (a ``nets.augment`` module; default ``Translate(1/16)``: whole-pixel shifts
            up to 2 px of 32. CR-GAN shifts up to 1/8 (4 px), which with reflect padding mirrors strokes of most
            MNIST digits, whose strokes come within 4 px of the border; 4 px is an ablation).
        cr_reduce: distance between the two PatchGAN maps: ``"mean"`` (default): each image's map averaged to one
            score first (invariance of the image-level judgement, like CR-GAN's single-output D);
            ``"elementwise"``: squared difference of every patch score, averaged (a shifted image's map may rightly
            shift too, so this partly penalises D's equivariance; an ablation). Applies to every ``cr_*`` term.
    """

    def __init__(
        self,
        *args: Any,
        lambda_real: float = 10.0,
        augment: nn.Module | None = None,
        cr_reduce: str = "mean",
        **kwargs: Any,
    ) -> None:
        at_least("lambda_real", lambda_real, 0)
        one_of("cr_reduce", cr_reduce, CR_REDUCE)
        super().__init__(*args, **kwargs)
        self.lambda_real = lambda_real
        self.cr_reduce = cr_reduce
        self.augment = augment if augment is not None else Translate(1 / 16)

    def consistency_inputs(
        self, side: str, real: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> list[ConsistencyInput]:
        """What the discriminator of ``side`` must judge consistently under ``T``."""
        if not self.lambda_real:
            return []
        return [ConsistencyInput(f"cr_real_{side}", self.lambda_real, real, d_out[f"real_{side}"])]

    def _consistency(self, d: nn.Module, items: list[ConsistencyInput]) -> dict[str, Tensor]:
        if not items:
            return {}
        batches = [self.augment(item.x) for item in items] + [item.x for item in items if item.d_x is None]
        outs = iter(forward_batches(d, batches))
        augmented = [next(outs) for _ in items]
        terms = {}
        for item, d_tx in zip(items, augmented):
            d_x = item.d_x if item.d_x is not None else next(outs)
            terms[item.name] = CR_SCALE * item.weight * self.cr_distance(d_x, d_tx)  # 0.5 l |D(x) - D(T(x))|^2
        return terms

    def cr_distance(self, d_x: Tensor, d_tx: Tensor) -> Tensor:
        """``|D(x) - D(T(x))|^2`` between ``[B, 1, h, w]`` maps, reduced as ``cr_reduce`` says."""
        if self.cr_reduce == "mean":
            d_x, d_tx = d_x.flatten(1).mean(1), d_tx.flatten(1).mean(1)  # one score per image
        return F.mse_loss(d_tx, d_x)

    def discriminator_regularizer(
        self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        return {
            **self._consistency(self.d_a, self.consistency_inputs("a", real_a, images, d_out)),
            **self._consistency(self.d_b, self.consistency_inputs("b", real_b, images, d_out)),
        }
