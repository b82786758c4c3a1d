"""Speaker verification: training the victims (AAM-softmax encoders, i-vector by EM) and scoring trial lists.

Validation and test score every trial of the DataModule's list and log ``{stage}/eer``, ``{stage}/min_dcf`` and
``{stage}/threshold`` (the score at the EER operating point). Checkpoints carry ``checkpoint["verification"]``
with the clean threshold, which the attacks read.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import BinaryROC

from nets.speaker import AAMSoftmax, IVector, SEResNet34
from nets.speaker.contract import RecordsInitArgs, check_arg, config

INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"  # Lightning's trusted rebuild of a CLI-built module


def _plain(name: str, value: Any) -> Any:
    if callable(value) and not isinstance(value, (nn.Module, RecordsInitArgs)):
        path = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', '<?>')}"
        if "<" in path or path.startswith("."):
            raise TypeError(f"{name}: {value!r} has no import path")
        return path  # jsonargparse resolves a callable from its import path
    return config(value)


def save_config(module: L.LightningModule) -> None:
    """``module.save_hyperparameters()`` as plain data, so ``load_from_checkpoint(path)`` (``weights_only=True``)
    rebuilds the module with its nets. Under LightningCLI that is the CLI's own config dump; in plain Python the
    arguments are named the same way (nets and attacks by ``class_path`` + ``init_args``, functions by import path)
    and Lightning's CLI instantiator is recorded to rebuild them. Arguments that cannot be named (a lambda) are
    left out with a warning: the rebuilt module uses their default."""
    frame = inspect.currentframe().f_back
    with warnings.catch_warnings():  # nets are converted below: Lightning's advice to ignore them does not apply
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`")
        module.save_hyperparameters(frame=frame)
    if "_instantiator" in module.hparams:
        return
    cls = type(module)
    plain: dict[str, Any] = {"_class_path": f"{cls.__module__}.{cls.__qualname__}"}
    for name, value in module.hparams.items():
        try:
            plain[name] = _plain(name, value)
        except TypeError as error:
            rank_zero_warn(f"{cls.__name__}.{name} is left out of the checkpoint's hyperparameters: {error}")
    module.hparams.clear()
    module.save_hyperparameters({**plain, "_instantiator": INSTANTIATOR}, frame=frame)


def verification_metrics(scores: Tensor, labels: Tensor, p_target: float = 0.01) -> dict[str, Tensor]:
    """EER, the threshold at the EER point and the normalised minDCF of raw trial scores (never through a sigmoid).

    One decision rule: a trial is accepted when ``score >= threshold``. At a candidate threshold t,
    FAR(t) = share of non-target trials with score >= t and FRR(t) = share of target trials with score < t. The
    candidates are the distinct scores: tied trials are accepted or rejected together. The EER point is the
    candidate minimising |FAR - FRR|, the largest such candidate when several tie; ``eer`` = (FAR + FRR) / 2 there
    (torchmetrics' BinaryEER definition) and ``threshold`` is that score itself, unclamped. ``min_dcf`` =
    min over the candidates and "reject all" of (p FRR + (1 - p) FAR) / min(p, 1 - p) (C_miss = C_fa = 1,
    p = ``p_target``). Without both target and non-target trials every value is NaN.

    The curve is torchmetrics' BinaryROC with ``normalization=None``: by default it (and BinaryEER) passes scores
    through a sigmoid whenever one lies outside [0, 1], which moves the threshold and, for large scores, ties them.
    """
    if not ((labels == 1).any() and (labels == 0).any()):
        nan = torch.tensor(float("nan"))
        return {"eer": nan, "threshold": nan.clone(), "min_dcf": nan.clone()}
    fpr, tpr, thresholds = BinaryROC(thresholds=None, normalization=None)(scores, labels)
    fnr = 1 - tpr
    # entry 0 is the "reject all" point (its threshold a placeholder 1.0); the rest follow descending scores
    idx = 1 + int((fnr[1:] - fpr[1:]).abs().argmin())  # argmin returns the first, i.e. the largest, on ties
    dcf = (fnr * p_target + fpr * (1 - p_target)) / min(p_target, 1 - p_target)
    return {"eer": (fpr[idx] + fnr[idx]) / 2, "threshold": thresholds[idx], "min_dcf": dcf.min()}


class TrialScoring(L.LightningModule):
    """Scores trials with ``self.victim`` and keeps the clean EER threshold (``verification_metrics``).

    Args:
        p_target: target prior of minDCF, in (0, 1).
    """

    victim: nn.Module

    def __init__(self, p_target: float) -> None:
        super().__init__()
        check_arg("p_target", p_target, 0 < p_target < 1, "in (0, 1)")
        self.p_target = p_target
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self._scores: list[Tensor] = []
        self._labels: list[Tensor] = []
        self.last_scores: tuple[Tensor, Tensor] | None = None  # (scores, labels) of the last evaluation, for plots

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
        self.last_scores = (scores.cpu(), labels.cpu())

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["verification"] = {"threshold": float(self.threshold), "p_target": self.p_target}


def _adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3, weight_decay=2e-5)


class SpeakerEmbedding(TrialScoring):
    """Trains a neural speaker encoder (SE-ResNet-34, ECAPA-TDNN) with AAM-softmax on speaker-labelled crops.

    Args:
        victim: the encoder (``embed`` / ``score`` contract). Default: ``SEResNet34(width=16)``.
        num_speakers: training speakers (>= 2); ``None``: read from the DataModule at setup and recorded in the
            hyperparameters, so that a checkpoint rebuilds the head.
        margin: AAM margin in [0, pi/2) (0.2).
        scale: AAM scale, > 0 (30).
        optimizer: optimizer factory (default Adam, lr 1e-3, weight decay 2e-5).
        p_target: target prior of minDCF, in (0, 1) (0.01).
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
        save_config(self)
        check_arg("num_speakers", num_speakers, num_speakers is None or num_speakers >= 2, "None or >= 2")
        check_arg("margin", margin, 0 <= margin < torch.pi / 2, "in [0, pi/2)")
        check_arg("scale", scale, scale > 0, "> 0")
        self.victim = victim if victim is not None else SEResNet34(width=16)
        self.margin, self.scale, self.optimizer = margin, scale, optimizer
        self.head = None if num_speakers is None else AAMSoftmax(self.victim.embedding_dim, num_speakers, margin, scale)

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        n = self.trainer.datamodule.num_speakers
        if self.head is None:
            self.head = AAMSoftmax(self.victim.embedding_dim, n, self.margin, self.scale)
            self.hparams["num_speakers"] = n  # the checkpoint then rebuilds the head
        elif self.head.weight.shape[0] < n:
            raise ValueError(f"num_speakers={self.head.weight.shape[0]}, but the DataModule has {n} training speakers")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        waves, speakers = batch
        loss, logits = self.head(self.victim.embed(waves), speakers)
        acc = (logits.argmax(1) == speakers).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())


class IVectorSystem(TrialScoring):
    """Trains an ``IVector`` victim by EM at the start of ``fit``, then scores the validation trials.

    The UBM, the total-variability matrix and the back-end are estimated on the DataModule's full training
    utterances; the training loop then has nothing to optimise (set ``trainer.max_epochs: 1``).

    Args:
        victim: the i-vector model. Default: ``IVector(n_components=32, rank=50, lda_dim=20)``.
        ubm_iterations: EM iterations of the UBM (>= 1).
        tv_iterations: EM iterations of the total-variability matrix (>= 1).
        p_target: target prior of minDCF, in (0, 1) (0.01).
    """

    def __init__(
        self, victim: IVector | None = None, ubm_iterations: int = 10, tv_iterations: int = 5, p_target: float = 0.01
    ) -> None:
        super().__init__(p_target)
        save_config(self)
        check_arg("ubm_iterations", ubm_iterations, ubm_iterations >= 1, ">= 1")
        check_arg("tv_iterations", tv_iterations, tv_iterations >= 1, ">= 1")
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
