"""ACCR (Ohkawa et al., ICPR 2020) and the cross-network consistency terms its ablations can add."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.cr_cyclegan import CR_SCALE, ConsistencyInput, CRCycleGAN, forward_batches
from nets.checks import at_least, one_of


def paired_augment(augment: nn.Module, *batches: Tensor) -> list[Tensor]:
    """Apply one random draw of ``augment`` to several batches of the same size (RNG forked and reseeded per batch)."""
    seed = int(torch.randint(2**31 - 1, ()))
    out = []
    for x in batches:
        with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
            torch.manual_seed(seed)
            out.append(augment(x))
    return out


class CrossNetworkConsistency:
    """Consistency between the outputs of different networks ("G1-G2, D1-D2, G1-D2, G2-D1" in a summary of the
    ACCR paper). The paper's exact cross terms are unconfirmed: these are reconstructions, for ablations only.
    Discriminator-step terms are scaled by ``CR_SCALE`` like the CR terms.
    ``T`` is the module's ``augment``; translations are detached wherever a discriminator is trained.

    Args:
        lambda_dd: "D1-D2" weight (0 = off): the two discriminators agree on an image and its translation,
            ``|D_X(a) - D_Y(G(a))|^2 + |D_Y(b) - D_X(F(b))|^2`` (this step's translations; discriminator step).
        lambda_gg: "G1-G2" weight (0 = off): the cycle commutes with ``T``, one draw of ``T`` shared by both sides,
            ``|F(T(G(a))) - T(a)| + |G(T(F(b))) - T(b)|`` (generator step).
        lambda_gd: "G1-D2" / "G2-D1" weight (0 = off): a discriminator judges the translation of an augmented image
            like the augmented translation, ``|D_Y(G(T(a))) - D_Y(T(G(a)))|^2 + |D_X(F(T(b))) - D_X(T(F(b)))|^2``
            (shared draw of ``T``; discriminator step).
    """

    def __init__(self, lambda_dd: float = 0.0, lambda_gg: float = 0.0, lambda_gd: float = 0.0) -> None:
        for name, value in (("lambda_dd", lambda_dd), ("lambda_gg", lambda_gg), ("lambda_gd", lambda_gd)):
            at_least(name, value, 0)
        self.lambda_dd = lambda_dd
        self.lambda_gg = lambda_gg
        self.lambda_gd = lambda_gd

    def generator_terms(
        self, model: CRCycleGAN, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Terms added to the generator loss (``images`` not detached)."""
        if not self.lambda_gg:
            return {}
        t_fake_b, t_a = paired_augment(model.augment, images["fake_b"], real_a)
        t_fake_a, t_b = paired_augment(model.augment, images["fake_a"], real_b)
        return {
            "cross_gg_a": self.lambda_gg * F.l1_loss(model.g_ba(t_fake_b), t_a),  # |F(T(G(a))) - T(a)|
            "cross_gg_b": self.lambda_gg * F.l1_loss(model.g_ab(t_fake_a), t_b),  # |G(T(F(b))) - T(b)|
        }

    def discriminator_terms(
        self, model: CRCycleGAN, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Terms added to the discriminator loss (``images`` detached, ``d_out`` the D outputs of the D loss)."""
        terms = {}
        if self.lambda_dd:
            terms["cross_dd_ab"] = CR_SCALE * self.lambda_dd * F.mse_loss(model.d_b(images["fake_b"]), d_out["real_a"])
            terms["cross_dd_ba"] = CR_SCALE * self.lambda_dd * F.mse_loss(model.d_a(images["fake_a"]), d_out["real_b"])
        if self.lambda_gd:
            for name, gen, disc, real, fake in (
                ("cross_gd_ab", model.g_ab, model.d_b, real_a, images["fake_b"]),
                ("cross_gd_ba", model.g_ba, model.d_a, real_b, images["fake_a"]),
            ):
                t_real, t_fake = paired_augment(model.augment, real, fake)
                with torch.no_grad():
                    translated = gen(t_real)  # G(T(a))
                out_gt, out_tg = forward_batches(disc, [translated, t_fake])
                terms[name] = CR_SCALE * self.lambda_gd * F.mse_loss(out_gt, out_tg)  # |D_Y(G(T(a))) - D_Y(T(G(a)))|^2
        return terms


class ACCR(CRCycleGAN):
    """Augmented Cyclic Consistency Regularization (Ohkawa et al., ICPR 2020): CR on the discriminators for
    real, fake and reconstructed images. For D_X (D_Y symmetric with b, G(a), G(F(b))), each term scaled by the
    D loss's 0.5 (``CR_SCALE``, see ``CRCycleGAN``):
    ``l_real |D_X(a) - D_X(T(a))|^2 + l_fake |D_X(F(b)) - D_X(T(F(b)))|^2 + l_rec |D_X(F(G(a))) - D_X(T(F(G(a))))|^2``.
    Fakes and reconstructions are detached: generators keep the plain CycleGAN loss.

    The paper's exact weights and augmentation for its main table are not confirmed here: every weight, ``T``
    and the fake source are arguments; the defaults (10 each, translation) follow CR-GAN.

    Args:
        lambda_fake: weight of the fake-image consistency (0 turns it off; >= 0).
        lambda_rec: weight of the reconstructed-image consistency (0 turns it off; >= 0).
        fake_source: ``"pool"``: the history-pool fakes the D loss used (their D outputs are reused);
            ``"current"``: this step's fakes.
        cross: cross-network consistency terms for ablations (``None``, the default: none).
    """

    def __init__(
        self,
        *args: Any,
        lambda_fake: float = 10.0,
        lambda_rec: float = 10.0,
        fake_source: str = "pool",
        cross: CrossNetworkConsistency | None = None,
        **kwargs: Any,
    ) -> None:
        at_least("lambda_fake", lambda_fake, 0)
        at_least("lambda_rec", lambda_rec, 0)
        one_of("fake_source", fake_source, ("pool", "current"))
        super().__init__(*args, **kwargs)
        self.lambda_fake = lambda_fake
        self.lambda_rec = lambda_rec
        self.fake_source = fake_source
        self.cross = cross

    def consistency_inputs(
        self, side: str, real: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> list[ConsistencyInput]:
        items = super().consistency_inputs(side, real, images, d_out)
        if self.lambda_fake:
            if self.fake_source == "pool":
                items.append(
                    ConsistencyInput(f"cr_fake_{side}", self.lambda_fake, images[f"pool_{side}"], d_out[f"fake_{side}"])
                )
            else:
                items.append(ConsistencyInput(f"cr_fake_{side}", self.lambda_fake, images[f"fake_{side}"], None))
        if self.lambda_rec:
            items.append(ConsistencyInput(f"cr_rec_{side}", self.lambda_rec, images[f"rec_{side}"], None))
        return items

    def generator_regularizer(self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor]) -> dict[str, Tensor]:
        return {} if self.cross is None else self.cross.generator_terms(self, real_a, real_b, images)

    def discriminator_regularizer(
        self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        terms = super().discriminator_regularizer(real_a, real_b, images, d_out)
        if self.cross is not None:
            terms.update(self.cross.discriminator_terms(self, real_a, real_b, images, d_out))
        return terms
