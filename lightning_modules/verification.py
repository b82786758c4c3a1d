"""Speaker verification: training the victims (AAM-softmax encoders, i-vector by EM) and scoring trial lists.

Validation and test score every trial of the DataModule's list and log ``{stage}/eer``, ``{stage}/min_dcf`` and
``{stage}/threshold`` (the score at the EER operating point). Checkpoints carry ``checkpoint["verification"]``
with the clean threshold, which the attacks read.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import BinaryEER, BinaryROC

from nets.speaker import AAMSoftmax, IVector, SEResNet34


def verification_metrics(scores: Tensor, labels: Tensor, p_target: float = 0.01) -> dict[str, Tensor]:
    """EER (torchmetrics BinaryEER), the threshold at the EER point and the normalised minDCF (C_miss = C_fa = 1)."""
    eer = BinaryEER(thresholds=None)(scores, labels)
    fpr, tpr, thresholds = BinaryROC(thresholds=None)(scores, labels)
    fnr = 1 - tpr
    idx = int((fnr - fpr).abs().argmin())
    dcf = (fnr * p_target + fpr * (1 - p_target)) / min(p_target, 1 - p_target)
    return {"eer": eer, "threshold": thresholds[idx].clamp(-1, 1), "min_dcf": dcf.min()}


class _TrialScoring(L.LightningModule):
    """Scores trials with ``self.victim`` and keeps the clean EER threshold."""

    def __init__(self, p_target: float) -> None:
        super().__init__()
        self.p_target = p_target
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self._scores: list[Tensor] = []
        self._labels: list[Tensor] = []

    @torch.no_grad()
    def score_batch(self, batch: dict[str, Tensor]) -> Tensor:
        """Trial scores ``[B]``, each utterance embedded at its true length (padding never enters a model)."""
        out = []
        for i in range(len(batch["label"])):
            enrol = batch["enrol"][i : i + 1, : int(batch["enrol_len"][i])]
            test = batch["test"][i : i + 1, : int(batch["test_len"][i])]
            out.append(self.victim.score(enrol, test)[0])
        return torch.stack(out)

    def _collect(self, batch: dict[str, Tensor]) -> None:
        self._scores.append(self.score_batch(batch))
        self._labels.append(batch["label"])

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def _finish(self, stage: str) -> None:
        if not self._scores:
            return
        scores = self.all_gather(torch.cat(self._scores)).flatten()
        labels = self.all_gather(torch.cat(self._labels)).flatten()
        self._scores, self._labels = [], []
        metrics = verification_metrics(scores.float(), labels.long(), self.p_target)
        if stage == "val" and not self.trainer.sanity_checking:
            self.threshold.fill_(float(metrics["threshold"]))
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, sync_dist=False)
        self.last_scores = (scores.cpu(), labels.cpu())  # for plotting callbacks

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["verification"] = {"threshold": float(self.threshold), "p_target": self.p_target}


def _adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3, weight_decay=2e-5)


class SpeakerEmbedding(_TrialScoring):
    """Trains a neural speaker encoder (SE-ResNet-34, ECAPA-TDNN) with AAM-softmax on speaker-labelled crops.

    Args:
        victim: the encoder (``embed`` / ``score`` contract). Default: ``SEResNet34(width=16)``.
        num_speakers: training speakers; ``None``: read from the DataModule at setup.
        margin: AAM margin (0.2).
        scale: AAM scale (30).
        optimizer: optimizer factory (default Adam, lr 1e-3, weight decay 2e-5).
        p_target: target prior of minDCF (0.01).
    """

    def __init__(
        self,
        victim: nn.Module | None = None,
        num_speakers: int | None = None,
        margin: float = 0.2,
        scale: float = 30.0,
        optimizer: OptimizerCallable = _adam,
        p_target: float = 0.01,
    ) -> None:
        super().__init__(p_target)
        self.victim = victim if victim is not None else SEResNet34(width=16)
        self.margin, self.scale, self.optimizer = margin, scale, optimizer
        self.head = None if num_speakers is None else AAMSoftmax(self.victim.embedding_dim, num_speakers, margin, scale)

    def setup(self, stage: str) -> None:
        if self.head is None:
            n = self.trainer.datamodule.num_speakers
            self.head = AAMSoftmax(self.victim.embedding_dim, n, self.margin, self.scale)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        waves, speakers = batch
        loss, logits = self.head(self.victim.embed(waves), speakers)
        acc = (logits.argmax(1) == speakers).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())


class IVectorSystem(_TrialScoring):
    """Trains an ``IVector`` victim by EM through ``fit``: at the start of fit the UBM, the total-variability
    matrix and the back-end are estimated on the DataModule's full training utterances; the training loop
    then has nothing to optimise (set ``trainer.max_epochs: 1``), and validation scores the trials.

    Args:
        victim: the i-vector model. Default: ``IVector(n_components=32, rank=50, lda_dim=20)``.
        ubm_iterations: EM iterations of the UBM.
        tv_iterations: EM iterations of the total-variability matrix.
        p_target: target prior of minDCF (0.01).
    """

    def __init__(
        self, victim: IVector | None = None, ubm_iterations: int = 10, tv_iterations: int = 5, p_target: float = 0.01
    ) -> None:
        super().__init__(p_target)
        self.victim = victim if victim is not None else IVector(n_components=32, rank=50, lda_dim=20)
        self.ubm_iterations, self.tv_iterations = ubm_iterations, tv_iterations
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        from datamodules.voxceleb import read_wave, speaker_of

        dm = self.trainer.datamodule
        waves = [read_wave(dm.root / "wav" / f) for f in dm.train_files]
        speakers = torch.tensor([dm.speakers.index(speaker_of(f)) for f in dm.train_files])
        history = self.victim.fit(waves, speakers, self.ubm_iterations, self.tv_iterations)
        self.ubm_log_likelihood = history["ubm_log_likelihood"]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        return None  # EM already ran in on_fit_start

    def on_train_end(self) -> None:
        # ModelCheckpoint only saves after optimizer steps, and EM takes none: save through its path here
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.dirpath is not None and not self.trainer.fast_dev_run:
            path = callback.format_checkpoint_name(dict(self.trainer.callback_metrics))
            self.trainer.save_checkpoint(path)
            callback.best_model_path = callback.last_model_path = path

    def configure_optimizers(self) -> None:
        return None
