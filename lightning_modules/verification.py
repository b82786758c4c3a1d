"""Speaker verification: training the victims (AAM-softmax encoders, i-vector by EM) and scoring trial lists.

Validation and test (``TrialScoring``, in ``trial_scoring.py``) embed each trial utterance once, score every trial
of the DataModule's list and log ``{stage}/eer``, ``{stage}/min_dcf``, ``{stage}/threshold`` (the score at the EER
operating point) and ``{stage}/trials``. Checkpoints carry ``checkpoint["verification"]`` with the clean
threshold, which the attacks read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_modules.acceleration import check_compiler
from lightning_modules.hparams import save_config
from lightning_modules.trial_scoring import TrialData, TrialScoring, verification_metrics
from nets.checks import check_arg
from nets.speaker import AAMSoftmax, IVector, SEResNet34

__all__ = ["IVectorSystem", "SpeakerEmbedding", "TrialData", "TrialScoring", "save_config", "verification_metrics"]


def _adam(params) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3, weight_decay=2e-5)


class SpeakerEmbedding(TrialScoring):
    """Trains a neural speaker encoder (SE-ResNet-34, ECAPA-TDNN) with AAM-softmax on speaker-labelled crops.

    The AAM head exists only to train: ``fit`` builds it, a checkpoint that holds one rebuilds it at that size, and
    validate / test need neither training files nor ``num_speakers``.

    Args:
        victim: the encoder (``embed`` / ``score`` contract). Default: ``SEResNet34(width=16)``.
        num_speakers: classes of the AAM head at ``fit`` (>= 2, at least the DataModule's training speakers);
            ``None``: the DataModule's count, recorded in the hyperparameters.
        margin: AAM margin in [0, pi/2) (0.2).
        scale: AAM scale, > 0 (30).
        optimizer: optimizer factory (default Adam, lr 1e-3, weight decay 2e-5).
        p_target: target prior of minDCF, in (0, 1) (0.01).
        compile: ``torch.compile`` the victim's ``embed`` (front-end and encoder) for training steps; evaluation and
            checkpoints are unchanged. On CPU it needs a C compiler.
    """

    def __init__(
        self,
        victim: nn.Module | None = None,
        num_speakers: int | None = None,
        margin: float = 0.2,
        scale: float = 30.0,
        optimizer: OptimizerCallable = _adam,
        p_target: float = 0.01,
        compile: bool = False,
    ) -> None:
        super().__init__(p_target)
        save_config(self)
        check_arg("num_speakers", num_speakers, num_speakers is None or num_speakers >= 2, "None or >= 2")
        check_arg("margin", margin, 0 <= margin < torch.pi / 2, "in [0, pi/2)")
        check_arg("scale", scale, scale > 0, "> 0")
        self.victim = victim if victim is not None else SEResNet34(width=16)
        self.num_speakers = num_speakers
        self.margin = margin
        self.scale = scale
        self.optimizer = optimizer
        self.head: AAMSoftmax | None = None
        self.compile_embed = compile
        self._train_embed = None  # the compiled victim.embed (configure_model)

    def _build_head(self, num_speakers: int) -> None:
        self.head = AAMSoftmax(self.victim.embedding_dim, num_speakers, self.margin, self.scale)
        self.hparams["num_speakers"] = num_speakers  # a checkpoint then rebuilds the head

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and self.head is None:
            self._build_head(self.num_speakers or self.trainer.datamodule.num_speakers)

    def configure_model(self) -> None:
        if self.compile_embed and self._train_embed is None:
            check_compiler()
            self._train_embed = torch.compile(self.victim.embed)  # a bound method: the victim's state is unchanged

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        weight = checkpoint.get("state_dict", {}).get("head.weight")
        if weight is not None and (self.head is None or self.head.weight.shape != weight.shape):
            self._build_head(weight.shape[0])  # before the optimizers exist: fit resumes with this head

    def on_fit_start(self) -> None:  # after a checkpoint is restored
        n = self.trainer.datamodule.num_speakers
        if self.head.weight.shape[0] < n:
            raise ValueError(f"num_speakers={self.head.weight.shape[0]}, but the DataModule has {n} training speakers")

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        waves, speakers = batch
        embed = self._train_embed or self.victim.embed
        loss, logits = self.head(embed(waves), speakers)
        acc = (logits.argmax(1) == speakers).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer(self.parameters())


class IVectorSystem(TrialScoring):
    """Trains an ``IVector`` victim by EM at the start of ``fit``, then scores the validation trials.

    The UBM, the total-variability matrix and the back-end are estimated on the DataModule's whole training
    utterances, streamed: each EM pass reads them through a DataLoader, ``em_batch_size`` at a time, and keeps
    sufficient statistics only (``IVector.fit``). The training loop then has nothing to optimise (set
    ``trainer.max_epochs: 1``). Under DDP every rank runs the same EM.

    Args:
        victim: the i-vector model. Default: ``IVector(n_components=32, rank=50, lda_dim=20)``.
        ubm_iterations: EM iterations of the UBM (>= 1).
        tv_iterations: EM iterations of the total-variability matrix (>= 1).
        p_target: target prior of minDCF, in (0, 1) (0.01).
        em_batch_size: training utterances per EM batch (>= 1); peak memory grows with it, not with the corpus.
    """

    def __init__(
        self,
        victim: IVector | None = None,
        ubm_iterations: int = 10,
        tv_iterations: int = 5,
        p_target: float = 0.01,
        em_batch_size: int = 16,
    ) -> None:
        super().__init__(p_target)
        save_config(self)
        check_arg("ubm_iterations", ubm_iterations, ubm_iterations >= 1, ">= 1")
        check_arg("tv_iterations", tv_iterations, tv_iterations >= 1, ">= 1")
        check_arg("em_batch_size", em_batch_size, em_batch_size >= 1, ">= 1")
        self.victim = victim if victim is not None else IVector(n_components=32, rank=50, lda_dim=20)
        self.ubm_iterations = ubm_iterations
        self.tv_iterations = tv_iterations
        self.em_batch_size = em_batch_size
        self.automatic_optimization = False

    def training_utterances(self) -> _Utterances:
        """The DataModule's training files, whole, as re-iterable ``(waves, speaker indices)`` batches."""
        from datamodules.audio import UtteranceDataset, pad_utterances
        from datamodules.trials import speaker_of

        dm = self.trainer.datamodule
        labels = {s: i for i, s in enumerate(dm.speakers)}
        speakers = torch.tensor([labels[speaker_of(f)] for f in dm.train_files])
        workers = dm.num_workers
        loader = DataLoader(
            UtteranceDataset(dm.root / "wav", dm.train_files, None),
            batch_size=self.em_batch_size,
            collate_fn=pad_utterances,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        return _Utterances(loader, speakers, self.device)

    def on_fit_start(self) -> None:
        history = self.victim.fit(self.training_utterances(), self.ubm_iterations, self.tv_iterations)
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


class _Utterances:
    """``(waves at their true lengths, speaker indices)`` per batch of an utterance DataLoader, on ``device``."""

    def __init__(self, loader: DataLoader, speakers: Tensor, device: torch.device) -> None:
        self.loader = loader
        self.speakers = speakers
        self.device = device

    def __iter__(self) -> Iterator[tuple[list[Tensor], Tensor]]:
        for batch in self.loader:
            waves = [w[:n].to(self.device) for w, n in zip(batch["wave"], batch["length"].tolist())]
            yield waves, self.speakers[batch["index"]]
