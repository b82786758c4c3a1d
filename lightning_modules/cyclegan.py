"""CycleGAN for unpaired image-to-image translation (Zhu et al. 2017), manual optimization; CR-CycleGAN and ACCR
build on it."""

from __future__ import annotations

from itertools import chain
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lightning_modules.acceleration import accelerate, to_channels_last
from lightning_modules.evaluation import TranslationEvaluator
from lightning_modules.hparams import check_nets_match, restore_config, save_config
from lightning_modules.lr_schedule import ConfiguredLambdaLR, LinearDecay, gan_adam
from lightning_modules.translation_io import NETS, load_nets, load_pools, pools_per_rank
from nets.checks import at_least, one_of, positive
from nets.translation import ImagePool, PatchDiscriminator, ResnetGenerator, cycle_passes, forward_batches, init_weights


class CycleGAN(L.LightningModule):
    """CycleGAN with LSGAN losses, cycle and identity L1, and a history pool of fakes for the discriminators.

    ``g_ab = G``, ``g_ba = F``, ``d_a = D_X``, ``d_b = D_Y``. Generator objective (Zhu et al. Eq. 3):
    ``(D_Y(G(a)) - 1)^2 + (D_X(F(b)) - 1)^2 + l_cyc (|F(G(a)) - a| + |G(F(b)) - b|)
    + l_cyc l_idt (|G(b) - b| + |F(a) - a|)``; discriminators: ``0.5 [(D(real) - 1)^2 + D(pooled fake)^2]``.
    Subclasses add terms through ``generator_regularizer`` and ``discriminator_regularizer``.

    ``CycleGAN.load_from_checkpoint(path)`` rebuilds a CLI-built module alone (Python-built: pass the same nets,
    ``hparams.save_config``); the judges are read from ``classifier_a`` / ``classifier_b``, never stored.

    Args:
        g_ab, g_ba: generators G (A->B) and F (B->A). Default: ``ResnetGenerator(width=32, n_blocks=6)``.
        d_a, d_b: discriminators D_X, D_Y. Default: ``PatchDiscriminator(width=64, n_layers=2)``.
        generator_optimizer: optimizer factory for both generators (default Adam 2e-4, betas (0.5, 0.999)).
        discriminator_optimizer: optimizer factory for both discriminators (same default).
        lambda_cyc: cycle-consistency weight (10; >= 0).
        lambda_idt: identity weight, relative to ``lambda_cyc`` (0.5; 0 turns it off; >= 0).
        cycle_loss: ``"l1"`` (CycleGAN), ``"l2"``, or ``"feature"``: L1 between the domain classifier's
            penultimate features of the reconstruction and of the input (needs ``classifier_a`` / ``classifier_b``).
        pool_size: history pool size for discriminator fakes (50; 0 disables).
        lr_constant_epochs: epochs at the initial learning rate (>= 0).
        lr_decay_epochs: epochs of linear decay after that (the LR is stepped once per epoch; >= 0). A fit with
            ``trainer.max_epochs`` above ``lr_constant_epochs + lr_decay_epochs`` is refused at its start; a shorter
            one runs (its LR never decays fully). A resumed run follows these values, not the checkpoint's.
        init_std: std of the N(0, std) weight initialisation (0.02; > 0); ``None`` keeps the nets' own init.
        classifier_a: DigitClassifier checkpoint judging domain A images (for ``val/acc_b2a``, FID of A).
        classifier_b: DigitClassifier checkpoint judging domain B images (for ``val/acc_a2b``, FID of B).
        batched_passes: one forward for each generator's ``G([a, b])`` and each D's real + pooled fakes: the same
            math in fewer kernels (not for nets with batch statistics); meant for GPUs (``docs/guide/scaling.md``).
        channels_last: nets and input images in channels-last memory format (GPU tensor cores; same math).
        compile: ``torch.compile`` each net (state dict unchanged; the first steps compile; CPU needs a C compiler).
        init_from: start weights of the four nets for a fine-tune (a ``translation_io.export_nets`` file or a
            translation checkpoint), read at the start of ``fit`` before ``--ckpt_path`` restores its own state (a
            resumed fine-tune continues). Optimizers, schedules and pools start fresh.
    """

    def __init__(
        self,
        g_ab: nn.Module | None = None,
        g_ba: nn.Module | None = None,
        d_a: nn.Module | None = None,
        d_b: nn.Module | None = None,
        generator_optimizer: OptimizerCallable = gan_adam,
        discriminator_optimizer: OptimizerCallable = gan_adam,
        lambda_cyc: float = 10.0,
        lambda_idt: float = 0.5,
        cycle_loss: str = "l1",
        pool_size: int = 50,
        lr_constant_epochs: int = 100,
        lr_decay_epochs: int = 100,
        init_std: float | None = 0.02,
        classifier_a: str | None = None,
        classifier_b: str | None = None,
        batched_passes: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("lambda_cyc", lambda_cyc),
            ("lambda_idt", lambda_idt),
            ("pool_size", pool_size),
            ("lr_constant_epochs", lr_constant_epochs),
            ("lr_decay_epochs", lr_decay_epochs),
        ):
            at_least(name, value, 0)
        if init_std is not None:
            positive("init_std", init_std)
        one_of("cycle_loss", cycle_loss, ("l1", "l2", "feature"))
        save_config(self)
        self.g_ab = g_ab if g_ab is not None else ResnetGenerator(width=32)
        self.g_ba = g_ba if g_ba is not None else ResnetGenerator(width=32)
        self.d_a = d_a if d_a is not None else PatchDiscriminator()
        self.d_b = d_b if d_b is not None else PatchDiscriminator()
        if init_std is not None:
            for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
                init_weights(net, init_std)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.lambda_cyc = lambda_cyc
        self.lambda_idt = lambda_idt
        self.cycle_loss = cycle_loss
        self.pool_a = ImagePool(pool_size)
        self.pool_b = ImagePool(pool_size)
        self.lr_schedule = LinearDecay(lr_constant_epochs, lr_decay_epochs)
        self.evaluator = TranslationEvaluator(classifier_a, classifier_b)
        self.batched_passes = batched_passes
        self.channels_last = channels_last
        self.compile_nets = compile
        self.init_from = init_from
        self._accelerated = False
        self.automatic_optimization = False

    def forward(self, x: Tensor) -> Tensor:  # A -> B
        return self.g_ab(x)

    def check_channels(self, real_a: Tensor, real_b: Tensor) -> None:
        for name, x, net in (("domain A", real_a, self.g_ab), ("domain B", real_b, self.g_ba)):
            expected = getattr(net, "in_channels", x.shape[1])
            if x.ndim != 4 or x.shape[1] != expected:
                raise ValueError(
                    f"{name} images have shape {tuple(x.shape)} ({x.shape[1] if x.ndim == 4 else '?'} channels) but "
                    f"the generator reading them expects {expected} channels; set data.channels or the nets' in_channels"
                )

    def _cycle(self, x: Tensor, target: Tensor, domain: str) -> Tensor:
        if self.cycle_loss == "feature":
            judge = self.evaluator.judges[domain]  # frozen: gradients reach x only
            return F.l1_loss(judge.features(x), judge.features(target))
        return F.l1_loss(x, target) if self.cycle_loss == "l1" else F.mse_loss(x, target)

    def generator_loss(self, real_a: Tensor, real_b: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Generator terms and the images they produced (``fake_b = G(a)``, ``rec_a = F(G(a))``, ...)."""
        batched = self.batched_passes and self.lambda_idt > 0
        fake_b, rec_a, fake_a, rec_b, g_b, f_a = cycle_passes(self.g_ab, self.g_ba, real_a, real_b, batched)
        pred_b = self.d_b(fake_b)
        pred_a = self.d_a(fake_a)
        terms = {
            "g_adv_ab": F.mse_loss(pred_b, torch.ones_like(pred_b)),  # (D_Y(G(a)) - 1)^2
            "g_adv_ba": F.mse_loss(pred_a, torch.ones_like(pred_a)),  # (D_X(F(b)) - 1)^2
            "cycle_a": self.lambda_cyc * self._cycle(rec_a, real_a, "a"),
            "cycle_b": self.lambda_cyc * self._cycle(rec_b, real_b, "b"),
        }
        if self.lambda_idt > 0:
            w = self.lambda_cyc * self.lambda_idt
            if g_b is None:
                g_b = self.g_ab(real_b)  # G(b), F(a)
                f_a = self.g_ba(real_a)
            terms["idt_a"] = w * F.l1_loss(g_b, real_b)  # |G(b) - b|
            terms["idt_b"] = w * F.l1_loss(f_a, real_a)  # |F(a) - a|
        images = {"fake_a": fake_a, "fake_b": fake_b, "rec_a": rec_a, "rec_b": rec_b}
        terms.update(self.generator_regularizer(real_a, real_b, images))
        return terms, images

    def generator_regularizer(self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor]) -> dict[str, Tensor]:
        """Extra generator terms (images are not detached here)."""
        return {}

    def discriminator_loss(self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor]) -> dict[str, Tensor]:
        """LSGAN terms of both discriminators plus ``discriminator_regularizer``; ``images`` are detached."""
        images = {
            **images,
            "pool_a": self.pool_a.query(images["fake_a"]),
            "pool_b": self.pool_b.query(images["fake_b"]),
        }
        d_out = {}
        d_out["real_a"], d_out["fake_a"] = forward_batches(self.d_a, [real_a, images["pool_a"]], self.batched_passes)
        d_out["real_b"], d_out["fake_b"] = forward_batches(self.d_b, [real_b, images["pool_b"]], self.batched_passes)
        terms = {
            "d_a": 0.5
            * (F.mse_loss(d_out["real_a"], torch.ones_like(d_out["real_a"])) + d_out["fake_a"].pow(2).mean()),
            "d_b": 0.5
            * (F.mse_loss(d_out["real_b"], torch.ones_like(d_out["real_b"])) + d_out["fake_b"].pow(2).mean()),
        }
        terms.update(self.discriminator_regularizer(real_a, real_b, images, d_out))
        return terms

    def discriminator_regularizer(
        self, real_a: Tensor, real_b: Tensor, images: dict[str, Tensor], d_out: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """Extra discriminator terms; ``d_out`` holds the D outputs already computed (reuse them)."""
        return {}

    # ---- orchestration -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        real_a = batch["a"][0]
        real_b = batch["b"][0]
        self.check_channels(real_a, real_b)
        if self.channels_last:
            real_a, real_b = to_channels_last(real_a), to_channels_last(real_b)
        opt_g, opt_d = self.optimizers()

        self.toggle_optimizer(opt_g)
        g_terms, images = self.generator_loss(real_a, real_b)
        g_loss = sum(g_terms.values())
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        opt_g.step()
        self.untoggle_optimizer(opt_g)

        self.toggle_optimizer(opt_d)
        d_terms = self.discriminator_loss(real_a, real_b, {k: v.detach() for k, v in images.items()})
        d_loss = sum(d_terms.values())
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        opt_d.step()
        self.untoggle_optimizer(opt_d)

        if self._logs_this_step():
            logs = {f"train/{k}": v.detach() for k, v in {**g_terms, **d_terms}.items()}
            self.log_dict({**logs, "train/g_loss": g_loss.detach(), "train/d_loss": d_loss.detach()}, prog_bar=False)

    def _logs_this_step(self) -> bool:
        """Whether the loggers record this step (every ``log_every_n_steps``): ~16 ``self.log`` calls cost host time
        a GPU step of small images notices, and other steps' values are discarded anyway."""
        connector = getattr(self._trainer, "_logger_connector", None)  # None without a Trainer (benchmarks)
        return connector is None or connector.should_update_logs

    def configure_model(self) -> None:
        if not self._accelerated:  # called by every fit / validate / test: convert once
            accelerate((self.g_ab, self.g_ba, self.d_a, self.d_b), self.channels_last, self.compile_nets)
            self._accelerated = True

    # ---- evaluation ----------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.lr_schedule.check_run_length(self.trainer.max_epochs)
            if self.init_from is not None and self.trainer.ckpt_path is None:  # a resume restores its own weights
                self.load_nets(self.init_from)
        self.evaluator.setup()
        if self.cycle_loss == "feature" and not self.evaluator.enabled:
            raise ValueError("cycle_loss='feature' needs model.classifier_a and model.classifier_b (the feature nets)")
        if not self.evaluator.enabled:
            rank_zero_warn("model.classifier_a / classifier_b not set: translation accuracy and FID are not computed")

    def _eval_step(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> None:
        x, labels = batch
        if self.evaluator.enabled:
            source, net = ("a", self.g_ab) if dataloader_idx == 0 else ("b", self.g_ba)
            self.evaluator.update(source, x, net(x), labels)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx)

    def _log_eval(self, stage: str) -> dict[str, Tensor]:
        if not self.evaluator.enabled:
            return {}
        metrics = self.evaluator.compute()
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, add_dataloader_idx=False)
        return metrics

    def on_validation_epoch_start(self) -> None:
        self.evaluator.reset()

    def on_test_epoch_start(self) -> None:
        self.evaluator.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")

    def on_train_epoch_end(self) -> None:
        for scheduler in self.lr_schedulers():
            scheduler.step()

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[Any]]:
        opt_g = self.generator_optimizer(chain(self.g_ab.parameters(), self.g_ba.parameters()))
        opt_d = self.discriminator_optimizer(chain(self.d_a.parameters(), self.d_b.parameters()))
        schedulers = [ConfiguredLambdaLR(opt, self.lr_schedule) for opt in (opt_g, opt_d)]
        return [opt_g, opt_d], schedulers

    def load_nets(self, path: str) -> None:
        """The four nets' weights from ``path`` (see ``init_from``); a clear error naming the file otherwise."""
        load_nets(self, path)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["image_pools_per_rank"] = pools_per_rank(self)
        checkpoint["judges"] = self.evaluator.fingerprints()  # not their weights: see TranslationEvaluator

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for key in ("best_acc_mean", "best_epoch"):  # older checkpoints tracked a maximum over epochs: dropped
            checkpoint["state_dict"].pop(key, None)
        restore_config(self, checkpoint)
        check_nets_match(self, checkpoint, NETS)
        self.evaluator.expect(checkpoint.get("judges"))
        load_pools(self, checkpoint)


__all__ = ["CycleGAN", "ConfiguredLambdaLR", "LinearDecay", "forward_batches", "gan_adam"]
