"""Score histograms and DET curves of verification trials, logged and always written as PNG."""

from __future__ import annotations

import io

import lightning as L
import torch
from torchvision.io import decode_png

from callbacks.common import log_image, run_dir
from lightning_modules.verification import TrialScoring


def _figure(scores: torch.Tensor, labels: torch.Tensor, threshold: float, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    target = scores[labels == 1].numpy()
    nontarget = scores[labels == 0].numpy()
    ax1.hist(nontarget, bins=40, alpha=0.6, label="non-target", density=True)
    ax1.hist(target, bins=40, alpha=0.6, label="target", density=True)
    ax1.axvline(threshold, color="k", ls="--", lw=1, label=f"EER threshold {threshold:.3f}")
    ax1.set_xlabel("score")
    ax1.legend(fontsize=7)
    order = scores.argsort()
    sorted_labels = labels[order].float()
    p_miss = (sorted_labels.cumsum(0) / max(sorted_labels.sum(), 1)).clamp(1e-4, 1 - 1e-4)
    p_fa = (1 - (1 - sorted_labels).cumsum(0) / max((1 - sorted_labels).sum(), 1)).clamp(1e-4, 1 - 1e-4)
    ax2.plot(norm.ppf(p_fa.numpy()), norm.ppf(p_miss.numpy()))
    ticks = [0.01, 0.05, 0.2, 0.5]
    ax2.set_xticks(norm.ppf(ticks), [f"{t:.0%}" for t in ticks])
    ax2.set_yticks(norm.ppf(ticks), [f"{t:.0%}" for t in ticks])
    ax2.set_xlabel("false acceptance")
    ax2.set_ylabel("miss")
    ax2.set_title("DET")
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


class ScoreHistogram(L.Callback):
    """After validation and test, plots target / non-target score histograms with the EER threshold and the DET
    curve; saved as ``<run dir>/plots/<stage>_epoch_XXX.png`` and logged to image-capable loggers."""

    def _plot(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if not isinstance(pl_module, TrialScoring) or pl_module.last_scores is None:
            return
        scores, labels = pl_module.last_scores
        threshold = float(trainer.callback_metrics.get(f"{stage}/threshold", float("nan")))
        eer = float(trainer.callback_metrics.get(f"{stage}/eer", float("nan")))
        png = _figure(scores, labels, threshold, f"{type(pl_module.victim).__name__} {stage}: EER {eer:.2%}")
        path = run_dir(trainer) / "plots" / f"{stage}_epoch_{trainer.current_epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        image = decode_png(torch.frombuffer(bytearray(png), dtype=torch.uint8))[:3].float() / 255
        log_image(trainer, f"{stage}/scores", image, trainer.global_step)

    # the *_end hooks run after the module's *_epoch_end, where the scores and metrics are computed
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer, pl_module, "val")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer, pl_module, "test")
