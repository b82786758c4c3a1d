"""CycleGAN's optimizer and learning-rate schedule (constant, then linear decay to 0, stepped per epoch; resumable)."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn


def gan_adam(params) -> torch.optim.Optimizer:
    """CycleGAN's optimizer: Adam, lr 2e-4, betas (0.5, 0.999)."""
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


class LinearDecay:
    """LR factor of epoch ``e`` (0-based): 1 for ``constant`` epochs, then ``1 - (e + 1 - constant) / (decay + 1)``
    (CycleGAN's 'linear' policy), clamped at 0 so a longer run never flips the sign of the step."""

    def __init__(self, constant: int, decay: int) -> None:
        self.constant = constant
        self.decay = decay

    def __call__(self, epoch: int) -> float:
        return max(0.0, 1.0 - max(0, epoch + 1 - self.constant) / float(self.decay + 1))

    def __repr__(self) -> str:
        return f"LinearDecay(constant={self.constant}, decay={self.decay})"

    def check_run_length(self, max_epochs: int | None) -> None:
        """Refuse a run longer than the schedule (its last epochs would train at LR 0). A shorter run is allowed
        (smoke tests, early stops): its LR then never decays to the end. ``-1`` / ``None`` (epochs unbounded, the
        run ends on ``max_steps`` or ``max_time``) is not checked."""
        total = self.constant + self.decay
        if max_epochs is not None and max_epochs > total:
            raise ValueError(
                f"trainer.max_epochs={max_epochs} is longer than the LR schedule: model.lr_constant_epochs="
                f"{self.constant} + model.lr_decay_epochs={self.decay} = {total} epochs (the LR is 0 from epoch "
                f"{total} on); set trainer.max_epochs <= {total} or lengthen the schedule"
            )


class ConfiguredLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """``LambdaLR`` that resumes with the configured factor function, not the checkpoint's.

    ``LambdaLR.load_state_dict`` copies the saved callable's attributes over the new one, so a run resumed with a
    changed ``lr_constant_epochs`` / ``lr_decay_epochs`` would silently go on with the old ones. Here the checkpoint
    gives the position (``last_epoch``, ``base_lrs``) and the config gives the factors: the LR of the current epoch
    is recomputed from them, with a warning naming both schedules when they differ. An unchanged config restores
    the LR exactly (the same product the uninterrupted run computed). Note: ``coadv fit --ckpt_path <file>`` (Lightning
    2.6's LightningCLI) replaces every model argument by the checkpoint's hyperparameters before the module is built,
    so there the configured schedule is the checkpoint's; ``--ckpt_path last`` keeps the command line's.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_fns = state_dict.get("lr_lambdas") or []
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "lr_lambdas"})
        for saved, fn in zip(saved_fns, self.lr_lambdas):
            if saved is not None and saved != vars(fn):
                old = f"{type(fn).__name__}({', '.join(f'{k}={v!r}' for k, v in saved.items())})"
                rank_zero_warn(
                    f"the checkpoint's LR schedule {old} differs from the configured {fn!r} (model.lr_constant_epochs"
                    f" / lr_decay_epochs): the configured one applies from epoch {self.last_epoch} on"
                )
                break
        lrs = [base * fn(self.last_epoch) for base, fn in zip(self.base_lrs, self.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs
