"""Early-training curves of a translation run: the joint judge's (target domain, right digit) rate of G and F on
held-out validation images every few steps, logged as ``stability/joint_a2b`` and ``stability/joint_b2a``."""

from __future__ import annotations

import lightning as L
import torch

from nets.classifier import DigitNet


def load_joint_judge(path: str) -> DigitNet:
    """A joint judge written by ``coadv study`` (``{"config", "state_dict"}``), frozen."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"joint judge {path!r} does not exist (coadv study writes it)") from None
    with torch.random.fork_rng(devices=[]):  # building the net draws its init: keep the run's RNG stream untouched
        net = DigitNet(**saved["config"])
    net.load_state_dict(saved["state_dict"])
    return net.eval().requires_grad_(False)


@torch.no_grad()
def validation_rates(judge: DigitNet, g_ab, g_ba, dm, max_images: int, device="cpu") -> dict[str, float]:
    """The joint judge's (target domain, right digit) rate of ``g_ab(val_a)`` and ``g_ba(val_b)`` on the first
    ``max_images`` validation images of each domain, ``{"a2b", "b2a"}``; a ``None`` net reads the source images
    as they are (the no-translation floor of the curves)."""
    judge, out = judge.to(device), {}
    for key, net, data, target in (("a2b", g_ab, dm.val_a, 1), ("b2a", g_ba, dm.val_b, 0)):
        x = torch.stack([data[i][0] for i in range(min(max_images, len(data)))]).to(device)
        y = data.labels[: len(x)].to(device)
        translate = torch.nn.Identity() if net is None else net
        was_training = translate.training
        translate.eval()
        pred = torch.cat([judge(translate(chunk)).argmax(1) for chunk in x.split(250)])
        translate.train(was_training)
        out[key] = float((pred == y + 10 * target).float().mean())
    return out


class EarlyStability(L.Callback):
    """Every ``every_n_steps`` training batches up to ``until_step`` (and before the first), the joint judge reads
    ``G(val_a)`` and ``F(val_b)``: the rate of (target domain, right digit) is logged per direction. It uses the
    DataModule's held-out validation sets (``val_a`` / ``val_b``), works with validation switched off, and draws no
    random number, so a run with it trains exactly as one without.

    Args:
        joint_judge: file of the 20-class joint judge (domain A digits 0-9, domain B digits 10-19).
        every_n_steps: evaluation period in training batches.
        until_step: last batch evaluated.
        max_images: validation images per domain used (the first ones).
    """

    def __init__(
        self, joint_judge: str, every_n_steps: int = 50, until_step: int = 1000, max_images: int = 500
    ) -> None:
        self.path = joint_judge
        self.every = every_n_steps
        self.until = until_step
        self.max_images = max_images
        self.judge: DigitNet | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.judge is None:
            self.judge = load_joint_judge(self.path)

    def batches_done(self, trainer: L.Trainer) -> int:
        return trainer.global_step // max(1, len(trainer.optimizers))  # one optimizer step each per batch

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rates = validation_rates(
            self.judge, pl_module.g_ab, pl_module.g_ba, trainer.datamodule, self.max_images, pl_module.device
        )
        values = {f"stability/joint_{k}": v for k, v in rates.items()}
        values["stability/batch"] = float(self.batches_done(trainer))
        for logger in trainer.loggers:
            logger.log_metrics(values, step=self.batches_done(trainer))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batches_done(trainer) == 0:
            self.evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        done = self.batches_done(trainer)
        if done <= self.until and done % self.every == 0:
            self.evaluate(trainer, pl_module)
