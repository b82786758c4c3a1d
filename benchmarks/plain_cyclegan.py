"""The reference for speed: a plain PyTorch CycleGAN step that follows the original code's
``CycleGANModel.optimize_parameters`` (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/cycle_gan_model.py``).

Names map to the project's as: ``netG_A = g_ab`` (G), ``netG_B = g_ba`` (F), ``netD_A = d_b`` (D_Y, judges B),
``netD_B = d_a`` (D_X, judges A). One step, as there: the four generator passes (``forward``); both discriminators
frozen (``requires_grad=False``); the generator loss with its two identity passes and one backward; the generator
update; discriminators unfrozen; ``D_A`` then ``D_B``, each on its pooled fakes with its own backward; one update of
both. LSGAN targets through ``MSELoss``, L1 for cycle and identity, Adam(lr, betas) over ``chain`` of the nets.
Plain torch: no Lightning import (``benchmarks/translation_throughput.py`` runs it side by side with the modules).
"""

from __future__ import annotations

import random
from itertools import chain

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OriginalImagePool:
    """The original code's history pool (``util/image_pool.py``): a list of single images, Python's ``random`` for
    the draws; until full every image is stored and returned, then each one is, with probability 1/2, swapped
    with a uniformly chosen stored image (which is returned instead)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images = []

    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                j = random.randint(0, self.size - 1)
                out.append(self.images[j].clone())
                self.images[j] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def _lsgan(prediction: Tensor, real: bool) -> Tensor:
    """The original ``GANLoss('lsgan')``: MSE to a target label expanded to the prediction's shape."""
    return F.mse_loss(prediction, torch.tensor(1.0 if real else 0.0, device=prediction.device).expand_as(prediction))


class PlainCycleGAN:
    """``optimize_parameters`` of the original CycleGAN on injected nets (not copied: pass copies to compare).

    Args:
        g_ab, g_ba, d_a, d_b: the nets, named as in the project (see the module docstring for the original names).
        lambda_cyc: ``lambda_A = lambda_B`` (10).
        lambda_idt: ``lambda_identity`` (0.5).
        pool_size: history pool size (50; 0 disables).
        lr, betas: Adam's (2e-4, (0.5, 0.999)).
        pool: pool class (``OriginalImagePool``; tests may pass the project's ``ImagePool`` to share its draws).
    """

    def __init__(
        self,
        g_ab: nn.Module,
        g_ba: nn.Module,
        d_a: nn.Module,
        d_b: nn.Module,
        lambda_cyc: float = 10.0,
        lambda_idt: float = 0.5,
        pool_size: int = 50,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        pool: type = OriginalImagePool,
    ) -> None:
        self.netG_A = g_ab
        self.netG_B = g_ba
        self.netD_A = d_b
        self.netD_B = d_a
        self.lambda_cyc = lambda_cyc
        self.lambda_idt = lambda_idt
        self.fake_A_pool = pool(pool_size)
        self.fake_B_pool = pool(pool_size)
        self.optimizer_G = torch.optim.Adam(chain(g_ab.parameters(), g_ba.parameters()), lr=lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(chain(d_b.parameters(), d_a.parameters()), lr=lr, betas=betas)

    @staticmethod
    def set_requires_grad(nets: list[nn.Module], requires_grad: bool) -> None:
        for net in nets:
            for p in net.parameters():
                p.requires_grad = requires_grad

    def forward(self, real_a: Tensor, real_b: Tensor) -> None:
        self.real_A = real_a
        self.real_B = real_b
        self.fake_B = self.netG_A(real_a)  # G(a)
        self.rec_A = self.netG_B(self.fake_B)  # F(G(a))
        self.fake_A = self.netG_B(real_b)  # F(b)
        self.rec_B = self.netG_A(self.fake_A)  # G(F(b))

    def backward_G(self) -> None:
        lam = self.lambda_cyc
        if self.lambda_idt > 0:
            self.loss_idt_A = F.l1_loss(self.netG_A(self.real_B), self.real_B) * lam * self.lambda_idt  # |G(b) - b|
            self.loss_idt_B = F.l1_loss(self.netG_B(self.real_A), self.real_A) * lam * self.lambda_idt  # |F(a) - a|
        else:
            self.loss_idt_A = self.loss_idt_B = 0
        self.loss_G_A = _lsgan(self.netD_A(self.fake_B), True)
        self.loss_G_B = _lsgan(self.netD_B(self.fake_A), True)
        self.loss_cycle_A = F.l1_loss(self.rec_A, self.real_A) * lam
        self.loss_cycle_B = F.l1_loss(self.rec_B, self.real_B) * lam
        self.loss_G = (
            self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B + self.loss_idt_A + self.loss_idt_B
        )
        self.loss_G.backward()

    @staticmethod
    def backward_D_basic(net_d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
        loss_d = (_lsgan(net_d(real), True) + _lsgan(net_d(fake.detach()), False)) * 0.5
        loss_d.backward()
        return loss_d

    def optimize_parameters(self, real_a: Tensor, real_b: Tensor) -> None:
        """One training step on a batch of A images and a batch of B images."""
        self.forward(real_a, real_b)
        self.set_requires_grad([self.netD_A, self.netD_B], False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.optimizer_G.step()
        self.set_requires_grad([self.netD_A, self.netD_B], True)
        self.optimizer_D.zero_grad()
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, self.fake_B_pool.query(self.fake_B))
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, self.fake_A_pool.query(self.fake_A))
        self.optimizer_D.step()
