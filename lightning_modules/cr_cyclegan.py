"""CR-CycleGAN: CycleGAN + CR-GAN consistency on both discriminators (the base of ACCR)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.cyclegan import CycleGAN
from nets.augment import Translate
from nets.checks import at_least


class ConsistencyInput(NamedTuple):
    """One consistency term ``weight * |D(x) - D(T(x))|^2`` for a discriminator to compute."""

    name: str  # the loss term's name, e.g. "cr_real_a"
    weight: float
    x: Tensor  # the images, detached
    d_x: Tensor | None  # D(x) when the D loss already computed it, else None (computed with D(T(x)))


class CRCycleGAN(CycleGAN):
    """CycleGAN + CR-GAN consistency (Zhang et al., ICLR 2020) on both discriminators, real images only:
    ``L_D += l_real |D(x) - D(T(x))|^2`` (raw PatchGAN maps, mean-reduced), reusing ``D(x)`` from the D loss.
    Subclasses add images to judge consistently by overriding ``consistency_inputs``.

    Args:
        lambda_real: weight of the real-image consistency (10, CR-GAN's value; 0 turns it off; >= 0).
        augment: the augmentation ``T`` (a ``nets.augment`` module; default ``Translate(1/8)``).
    """

    def __init__(self, *args: Any, lambda_real: float = 10.0, augment: nn.Module | None = None, **kwargs: Any) -> None:
        at_least("lambda_real", lambda_real, 0)
        super().__init__(*args, **kwargs)
        self.lambda_real = lambda_real
        self.augment = augment if augment is not None else Translate()

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
        batch = [self.augment(item.x) for item in items] + [item.x for item in items if item.d_x is None]
        outs = iter(d(torch.cat(batch)).split([len(x) for x in batch]))  # one D forward for all new inputs
        augmented = [next(outs) for _ in items]
        terms = {}
        for item, d_tx in zip(items, augmented):
            d_x = item.d_x if item.d_x is not None else next(outs)
            terms[item.name] = item.weight * F.mse_loss(d_tx, d_x)  # l |D(x) - D(T(x))|^2
        return terms

    def discriminator_regularizer(
        self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        return {
            **self._consistency(self.d_a, self.consistency_inputs("a", real_a, images, d_out)),
            **self._consistency(self.d_b, self.consistency_inputs("b", real_b, images, d_out)),
        }
