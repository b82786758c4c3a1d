"""Scoring trial lists: the EER / threshold / minDCF of raw scores, and the evaluation loop of every verification
module (each distinct utterance embedded once per epoch, trials scored from the cache)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import BinaryROC

from nets.checks import check_arg


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


@runtime_checkable
class TrialData(Protocol):
    """What cached evaluation needs of a DataModule (``VoxCelebDataModule``, ``LibriSpeechDataModule``): after
    ``setup``, the distinct trial utterances, the trials as index pairs ``[N, 2]`` into them with labels ``[N]``,
    and ``eval_batches``, which ``"utterances"`` turns into ``{"wave", "length", "index"}`` validation / test
    batches (``index`` into ``eval_utterances``)."""

    eval_utterances: list[str]
    trial_pairs: Tensor
    trial_labels: Tensor
    eval_batches: str


class TrialScoring(L.LightningModule):
    """Scores trials with ``self.victim`` and keeps the clean EER threshold (``verification_metrics``).

    Validation and test embed each distinct utterance of the trial list once per epoch: utterances of equal length
    in a batch share one forward pass, others run alone, always at their true length (padding never enters a
    model, so an embedding does not depend on its batch). Under DDP each rank embeds its shard; the embeddings are
    gathered with their utterance indices, the sampler's repeats dropped, and every trial is scored once from the
    cache with the victim's ``compare``. A shortened evaluation (sanity check, ``limit_val_batches``) scores the
    trials whose two utterances were embedded; ``{stage}/trials`` logs how many were scored.

    Args:
        p_target: target prior of minDCF, in (0, 1).
    """

    victim: nn.Module

    def __init__(self, p_target: float) -> None:
        super().__init__()
        check_arg("p_target", p_target, 0 < p_target < 1, "in (0, 1)")
        self.p_target = p_target
        self.register_buffer("threshold", torch.tensor(float("nan")))
        self._index: list[Tensor] = []
        self._embeddings: list[Tensor] = []
        self.last_scores: tuple[Tensor, Tensor] | None = None  # (scores, labels) of the last evaluation, for plots

    def _trial_data(self) -> TrialData:
        data = self.trainer.datamodule
        if not isinstance(data, TrialData):
            raise TypeError(
                f"{type(self).__name__} evaluates trial lists through a DataModule with eval_utterances, trial_pairs, "
                f"trial_labels and eval_batches (VoxCelebDataModule, LibriSpeechDataModule); got {type(data).__name__}"
            )
        return data

    def setup(self, stage: str) -> None:
        if stage != "predict":
            self._trial_data().eval_batches = "utterances"

    def teardown(self, stage: str) -> None:
        data = self.trainer.datamodule
        if isinstance(data, TrialData):
            data.eval_batches = "trials"  # the same DataModule may serve an attack next

    @torch.no_grad()
    def embed_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Utterance indices ``[B]`` and embeddings ``[B, D]`` of a ``{"wave", "length", "index"}`` batch (reordered:
        grouped by length)."""
        if not {"wave", "length", "index"} <= batch.keys():
            raise ValueError(f"expected utterance batches {{wave, length, index}}, got keys {sorted(batch)}")
        index = []
        embeddings = []
        for length in batch["length"].unique().tolist():
            rows = (batch["length"] == length).nonzero().flatten()
            index.append(batch["index"][rows])
            embeddings.append(self.victim.embed(batch["wave"][rows, :length]))
        return torch.cat(index), torch.cat(embeddings)

    def _collect(self, batch: dict[str, Tensor]) -> None:
        index, embeddings = self.embed_batch(batch)
        self._index.append(index)
        self._embeddings.append(embeddings)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._collect(batch)

    def gather_embeddings(self, index: Tensor, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """Every rank's ``(index, embedding)`` rows, each utterance once (the distributed sampler repeats some to
        even out shards; the first copy is kept), sorted by index."""
        if self.trainer.world_size > 1:
            count = int(self.all_gather(torch.tensor(len(index), device=self.device)).max())
            padded_index = torch.full((count,), -1, dtype=index.dtype, device=self.device)
            padded_index[: len(index)] = index
            padded = embeddings.new_zeros(count, embeddings.shape[1])
            padded[: len(index)] = embeddings
            index = self.all_gather(padded_index).flatten()
            embeddings = self.all_gather(padded).reshape(-1, padded.shape[1])
            embeddings = embeddings[index >= 0]
            index = index[index >= 0]
        order = index.argsort(stable=True)
        index = index[order]
        embeddings = embeddings[order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return index[first], embeddings[first]

    @torch.no_grad()
    def score_trials(self, index: Tensor, embeddings: Tensor, pairs: Tensor, chunk: int = 8192) -> Tensor:
        """Scores of trials ``pairs [N, 2]`` (indices of utterances) from cached ``embeddings`` of utterances
        ``index``, with the victim's ``compare``; ``chunk`` trials at a time. Every utterance must be cached."""
        index = index.to(embeddings.device)
        pairs = pairs.to(embeddings.device)
        if len(pairs) == 0:
            return embeddings.new_zeros(0)
        position = torch.full((int(max(index.max(), pairs.max())) + 1,), -1, dtype=torch.long, device=index.device)
        position[index] = torch.arange(len(index), device=index.device)
        rows = position[pairs]
        if (rows < 0).any():
            raise ValueError(f"{int((rows < 0).any(1).sum())} trials name utterances without an embedding")
        return torch.cat([self.victim.compare(embeddings[r[:, 0]], embeddings[r[:, 1]]) for r in rows.split(chunk)])

    def _finish(self, stage: str) -> None:
        if not self._index:
            return
        index, embeddings = self.gather_embeddings(torch.cat(self._index), torch.cat(self._embeddings))
        self._index = []
        self._embeddings = []
        data = self._trial_data()
        embedded = torch.zeros(len(data.eval_utterances), dtype=torch.bool)
        embedded[index.cpu()] = True
        whole = embedded[data.trial_pairs].all(1)  # all of them unless the evaluation was shortened
        scores = self.score_trials(index, embeddings, data.trial_pairs[whole]).float().cpu()
        labels = data.trial_labels[whole]
        metrics = verification_metrics(scores, labels, self.p_target)
        if stage == "val" and not self.trainer.sanity_checking:
            self.threshold.fill_(float(metrics["threshold"]))
        # every rank holds every embedding, so these values agree without a further reduction
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, sync_dist=False)
        self.log(f"{stage}/trials", float(len(scores)), sync_dist=False)
        self.last_scores = (scores, labels)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["verification"] = {"threshold": float(self.threshold), "p_target": self.p_target}
