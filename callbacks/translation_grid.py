"""Image grids of translations, logged through the active logger and always written as PNG."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from callbacks.common import log_image, run_dir


class TranslationGrid(L.Callback):
    """After each validation (every ``every_n_epochs``), a grid whose rows are a, G(a), F(G(a)), b, F(b), G(F(b))
    for the first ``n_images`` validation images of each domain (held out of training); saved as
    ``<run dir>/grids/epoch_XXX.png``.

    Args:
        n_images: images per row.
        every_n_epochs: how often to draw.
    """

    def __init__(self, n_images: int = 8, every_n_epochs: int = 1) -> None:
        self.n_images = n_images
        self.every_n_epochs = every_n_epochs
        self.last_path: Path | None = None

    def _samples(self, trainer: L.Trainer, index: int) -> Tensor:
        dataset = trainer.datamodule.val_dataloader()[index].dataset
        return torch.stack([dataset[i][0] for i in range(min(self.n_images, len(dataset)))])

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.current_epoch % self.every_n_epochs:
            return
        a = self._samples(trainer, 0).to(pl_module.device)
        b = self._samples(trainer, 1).to(pl_module.device)
        fake_b = pl_module.g_ab(a)
        fake_a = pl_module.g_ba(b)
        rows = [a, fake_b, pl_module.g_ba(fake_b), b, fake_a, pl_module.g_ab(fake_a)]
        rows = [r.expand(-1, 3, -1, -1) if r.shape[1] == 1 else r for r in rows]  # grey domains shown as RGB
        grid = make_grid(torch.cat(rows).cpu(), nrow=len(a), normalize=True, value_range=(-1, 1), pad_value=1)
        if trainer.is_global_zero:
            path = run_dir(trainer) / "grids" / f"epoch_{trainer.current_epoch:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, path)
            self.last_path = path
        log_image(trainer, "val/translations", grid, trainer.global_step)
