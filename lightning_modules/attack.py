"""The attack LightningModule: a frozen, trained victim, an injected perturbation search, every trial of a list.

``coadv test -c configs/attack/<attack>_<victim>.yaml`` rebuilds the victim from its training checkpoint
(architecture from the checkpoint's hyperparameters, weights under ``victim.``, the clean EER threshold under
``checkpoint["verification"]``), attacks the test side of each trial, and reports per trial (``COLUMNS``) and in
aggregate (``summarize``, in ``attack_metrics``).

Batching: in each step the enrolment sides are embedded once (equal lengths share a forward pass, every utterance
at its true length), then the trials whose test utterances have exactly the same length are attacked together, one
``perturb`` call per group; padding never enters the victim, so a trial's scores do not depend on its batch
(``tests/attacks/test_attack_batching.py``). The per-trial ``wall_s`` of a group is the group's wall time divided by its
size. ``data.init_args.sort_trials_by_length: true`` makes groups larger. Under DDP each rank attacks its shard and
the rows are gathered once, deduplicated and ordered by trial index. With ``batch_trials: false`` the table does not
depend on the number of processes, bit for bit; batched, a trial's group follows the shard, so deterministic attacks
agree to float noise (a batched forward pass is not bitwise the single one) and random draws differ (below).

Seeds: each group is attacked after ``torch.manual_seed(seed + i)``, ``i`` the smallest trial index in it; a trial
attacked alone (``batch_trials: false``, or a unique length) thus gets ``seed + index`` whatever the batch or shard.
Deterministic attacks give the same per-trial results batched or not; an attack that draws random numbers (PGD's
random start) draws them for the whole group from that one generator, so its random starts depend on the group
until it draws per trial.

One decision rule: a trial is accepted when its score is >= the clean threshold. Success and ρ are reported over
the trials the victim decides correctly when clean (the others need no attack); FAR (non-target trials) and FRR
(target trials) after the attack cover every trial. PESQ / STOI (adversarial vs clean) are optional
(``perceptual``). Input gradients are impossible under inference mode: configs set ``trainer.inference_mode: false``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import instantiate_module
from torch import Tensor, nn

from attacks import Attack, VerificationObjective
from attacks.base import KAPPA
from lightning_modules.attack_metrics import (
    COLUMNS,
    announce_perceptual,
    feature_rho,
    perceptual_scores,
    summarize,
    trial_row,
)
from lightning_modules.hparams import INSTANTIATOR, UnreadableCheckpoint, read_checkpoint, save_config
from lightning_modules.verification import TrialScoring
from nets.checks import check_arg
from nets.speaker.contract import FeatureDomainVictim

EXPECTED = "expected a speaker-verification checkpoint written by `coadv fit -c configs/speaker/<victim>.yaml`"


def _not_a_victim(path: Path, reason: str) -> ValueError:
    return ValueError(f"{path}: not a coadv speaker checkpoint: {reason}; {EXPECTED} (SpeakerEmbedding, IVectorSystem)")


def read_victim_checkpoint(path: Path) -> dict[str, Any]:
    """A victim checkpoint as plain data (:func:`read_checkpoint`), its errors naming what a victim file must be."""
    try:
        return read_checkpoint(
            path, "victim checkpoint", "; train the victim first (coadv fit -c configs/speaker/<victim>_synth.yaml)"
        )
    except UnreadableCheckpoint as error:
        raise _not_a_victim(path, error.reason.split(" (found")[0]) from None


def _victim_hparams(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or hparams.get("_instantiator") != INSTANTIATOR:
        raise _not_a_victim(
            path, "it does not name its architecture (no hyper_parameters); set model.init_args.victim to it"
        )
    name = str(hparams.get("_class_path"))
    module, _, cls = name.rpartition(".")
    known = getattr(sys.modules.get(module), cls, None)  # imported modules only: a file never triggers an import
    if not (isinstance(known, type) and issubclass(known, TrialScoring)):
        raise _not_a_victim(path, f"it was written by {name}")
    return hparams


def load_victim(path: str | Path, victim: nn.Module | None = None) -> tuple[nn.Module, float | None, dict | None]:
    """The victim of a training checkpoint, its clean threshold (``None`` when missing or NaN) and the
    hyperparameters it was rebuilt from. ``victim`` overrides the architecture (its weights still come from the
    checkpoint), for checkpoints that do not name theirs."""
    path = Path(path)
    checkpoint = read_victim_checkpoint(path)
    hparams = None
    if victim is None:
        hparams = _victim_hparams(checkpoint, path)
        try:
            victim = instantiate_module(TrialScoring, {k: v for k, v in hparams.items() if k != "_instantiator"}).victim
        except Exception as error:  # jsonargparse's message names no file; its innermost cause is the useful line
            lines = [line.strip()[2:] for line in str(error).splitlines() if line.strip().startswith("- ")]
            cause = next((x for x in lines if not x.startswith(("Expected a <class", "Does not validate"))), None)
            cause = cause or str(error).strip().splitlines()[0]
            raise _not_a_victim(path, f"its hyperparameters do not build {hparams['_class_path']} ({cause})") from error
    state = {k.removeprefix("victim."): v for k, v in checkpoint["state_dict"].items() if k.startswith("victim.")}
    if not state:
        raise _not_a_victim(path, "no 'victim.*' weights in its state_dict")
    try:
        victim.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit {type(victim).__name__} as configured: {error}") from error
    verification = checkpoint.get("verification")
    threshold = verification.get("threshold") if isinstance(verification, dict) else None
    finite = isinstance(threshold, (int, float)) and math.isfinite(threshold)
    return victim, (float(threshold) if finite else None), hparams


class AdversarialAttack(L.LightningModule):
    """Runs ``attack`` against a frozen victim in ``test_step`` / ``predict_step``.

    The victim is named by its training checkpoint only: architecture, weights and clean threshold come from it.

    Args:
        checkpoint: the victim's training checkpoint (``checkpoints/victims/<name>.ckpt``), written by
            ``coadv fit -c configs/speaker/<victim>.yaml``.
        attack: the perturbation search (``attacks.*``).
        kappa: success margin past the threshold a search needs, in score units, >= 0 (``attacks.base.KAPPA`` =
            1e-5, about 10x the victims' measured batch noise); the reported success is the decision re-scored
            alone.
        threshold: clean threshold override; ``None`` reads it from the checkpoint (an error if absent).
        seed: a group of trials is attacked after ``torch.manual_seed(seed + i)``, ``i`` its smallest trial index
            (a trial alone: its own index).
        victim: architecture override (class_path + init_args) for checkpoints that do not name theirs; the
            weights still come from ``checkpoint``. ``None``: the checkpoint's own architecture.
        batch_trials: attack the trials of a batch whose test utterances have the same length in one ``perturb``
            call (True); False: one trial at a time. ``wall_s`` of a batched trial is its group's time / size.
        perceptual: compute PESQ (wideband) and STOI of each adversarial utterance against its clean one (True;
            CPU-bound, about 0.1 s per 3 s utterance each); needs ``pip install 'coadv[perceptual]'``, otherwise
            the columns are NaN.
    """

    def __init__(
        self,
        checkpoint: str,
        attack: Attack,
        kappa: float = KAPPA,
        threshold: float | None = None,
        seed: int = 0,
        victim: nn.Module | None = None,
        batch_trials: bool = True,
        perceptual: bool = True,
    ) -> None:
        super().__init__()
        save_config(self)
        check_arg("kappa", kappa, kappa >= 0, ">= 0")
        check_arg("threshold", threshold, threshold is None or math.isfinite(threshold), "None or a finite score")
        self.victim, self.attack, self.checkpoint = victim, attack, checkpoint
        self.kappa, self.threshold_override, self.seed = kappa, threshold, seed
        self.batch_trials, self.perceptual = batch_trials, perceptual
        self._perceptual = {"pesq": False, "stoi": False}  # what this run computes (set in setup)
        self.threshold = float("nan")
        self.victim_hparams: dict | None = None  # the victim checkpoint's hyperparameters, kept in our checkpoints
        self._restored = False  # rebuilt from an attack checkpoint: the victim file is not read again
        self._rows: list[Tensor] = []
        self.rows: Tensor | None = None
        self.summary: dict[str, float] = {}

    @property
    def domain(self) -> str:
        """What the attack perturbs: ``"waveform"`` or ``"mfcc"`` (feature-domain attacks)."""
        return self.attack.domain

    def setup(self, stage: str) -> None:
        if not self._restored:
            self.victim, stored, self.victim_hparams = load_victim(self.checkpoint, self.victim)
            threshold = self.threshold_override if self.threshold_override is not None else stored
            if threshold is None:
                raise ValueError(
                    f"{self.checkpoint}: no clean threshold (checkpoint['verification']['threshold'] is missing or "
                    "NaN); validate the victim so it is stored, or set model.init_args.threshold"
                )
            self.threshold = float(threshold)
        self.victim.eval().requires_grad_(False)
        self._perceptual = announce_perceptual(self.perceptual and self.domain == "waveform", self.global_rank == 0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["attack"] = {"threshold": self.threshold, "victim_hyper_parameters": self.victim_hparams}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("attack", {})
        hparams = stored.get("victim_hyper_parameters")
        if self.victim is None and hparams is not None:  # the weights follow from our own state_dict
            self.victim = instantiate_module(
                TrialScoring, {k: v for k, v in hparams.items() if k != "_instantiator"}
            ).victim
        self.victim_hparams, self.threshold = hparams, float(stored.get("threshold", float("nan")))
        self._restored = self.victim is not None and math.isfinite(self.threshold)

    def train(self, mode: bool = True) -> AdversarialAttack:
        super().train(mode)
        self.victim.eval()  # frozen: dropout / batch-norm statistics never move
        return self

    def _check_grad_mode(self) -> None:
        if torch.is_inference_mode_enabled():
            raise RuntimeError("attacks need input gradients: set trainer.inference_mode: false in the config")

    def on_test_start(self) -> None:
        self._check_grad_mode()

    def on_predict_start(self) -> None:
        self._check_grad_mode()

    @torch.no_grad()
    def embed_enrolment(self, wave: Tensor, length: Tensor) -> Tensor:
        """Embeddings ``[B, D]`` of padded enrolment waveforms ``[B, T]``, each at its true ``length``; equal
        lengths share one forward pass (one each without ``batch_trials``: then no float depends on the batch)."""
        out: Tensor | None = None
        for rows in self.trial_groups(length):
            embedding = self.victim.embed(wave[rows, : int(length[rows[0]])])
            out = embedding.new_empty(len(length), embedding.shape[1]) if out is None else out
            out[rows] = embedding
        return out

    def trial_groups(self, lengths: Tensor) -> list[Tensor]:
        """Positions in the batch that share a forward pass: equal ``lengths`` (in order of first appearance), or
        one each when ``batch_trials`` is off."""
        if not self.batch_trials:
            return [torch.tensor([i]) for i in range(len(lengths))]
        return [(lengths == n).nonzero().flatten().cpu() for n in dict.fromkeys(lengths.tolist())]

    def attack_group(
        self, enrol: Tensor, enrol_len: Tensor, enrol_embedding: Tensor, test: Tensor, labels: Tensor, index: Tensor
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Attack trials whose test waveforms ``test [G, T]`` have one length; rows ``[len(COLUMNS)]`` and
        adversarial objects (waveform ``[T]`` or, for feature-domain attacks, MFCC frames ``[N, D]``) per trial.
        ``enrol`` (padded, true lengths ``enrol_len``) is re-embedded alone for the final decision; the search
        uses the given ``enrol_embedding``."""
        torch.manual_seed(self.seed + int(index.min()))
        seeds = self.seed + index  # per-trial generators: a trial's random draws do not depend on its group
        objective = VerificationObjective(
            self.victim, enrol, labels, self.threshold, self.kappa, enrol_embedding, seeds
        )
        start = time.perf_counter()
        result = self.attack.perturb(test, objective)
        wall = (time.perf_counter() - start) / len(test)
        with torch.no_grad():
            if self.domain != "waveform":
                clean, adversarial = self.victim.frames(test), result.extra["features"]
                embed = self.victim.embed_frames
            else:
                clean, adversarial, embed = test, result.adversarial, self.victim.embed
            enrol_alone = torch.cat(
                [self.victim.embed(enrol[j : j + 1, : int(enrol_len[j])]) for j in range(len(test))]
            )
            before = self.score_alone(enrol_alone, test)
            after = self.score_alone(enrol_alone, adversarial, embed)
            success = objective.flipped(after)  # the victim's own decision, each trial scored alone
        rows = []
        for j in range(len(test)):
            perceptual = perceptual_scores(adversarial[j], clean[j], self._perceptual)
            bookkeeping = (float(result.iterations[j]), float(result.grad_evals[j]), wall)
            rows.append(trial_row(int(index[j]), int(labels[j]), float(before[j]), float(after[j]),
                                  bool(success[j]), clean[j], adversarial[j], self.threshold, perceptual,
                                  bookkeeping, self.feature_rho(clean[j], adversarial[j])))  # fmt: skip
        return rows, [a.detach().cpu() for a in adversarial]

    @torch.no_grad()
    def feature_rho(self, clean: Tensor, adversarial: Tensor) -> float:
        """The trial's ρ in the victim's MFCC domain (a waveform attack's induced feature change, or a
        feature-domain attack's own ρ); NaN for victims without a feature front-end."""
        if not isinstance(self.victim, FeatureDomainVictim):
            return math.nan
        if self.domain == "waveform":
            clean, adversarial = self.victim.frames(clean[None])[0], self.victim.frames(adversarial[None])[0]
        return feature_rho(clean, adversarial)

    @torch.no_grad()
    def score_alone(self, enrol_alone: Tensor, test: Tensor, embed=None) -> Tensor:
        """Scores ``[G]`` of each trial with its test side in a forward pass of its own (through ``embed``,
        ``victim.embed`` by default) against enrolment embeddings each computed alone at its true length: what
        scoring the saved audio alone gives, free of the batch noise of grouped forward passes."""
        embed = self.victim.embed if embed is None else embed
        return torch.cat(
            [self.victim.compare(enrol_alone[j : j + 1], embed(test[j : j + 1])) for j in range(len(test))]
        )

    def _attack_batch(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        enrol_embedding = self.embed_enrolment(batch["enrol"], batch["enrol_len"])
        rows: list[Tensor] = [torch.empty(0)] * len(batch["label"])
        adversarial: list[Tensor] = [torch.empty(0)] * len(batch["label"])
        for group in self.trial_groups(batch["test_len"]):
            n = int(batch["test_len"][group[0]])
            group_rows, group_adversarial = self.attack_group(
                batch["enrol"][group],
                batch["enrol_len"][group],
                enrol_embedding[group],
                batch["test"][group, :n],
                batch["label"][group],
                batch["index"][group],
            )
            for position, row, adv in zip(group.tolist(), group_rows, group_adversarial):
                rows[position], adversarial[position] = row, adv
        return {"rows": torch.stack(rows), "adversarial": adversarial}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        out = self._attack_batch(batch)
        self._rows.append(out["rows"])
        return out

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        return self._attack_batch(batch)

    def on_test_epoch_start(self) -> None:
        self._rows = []

    def gather_rows(self, local: Tensor) -> Tensor:
        """Every rank's rows, once, deduplicated by trial index (the distributed sampler repeats trials to even
        out shards) and ordered by it."""
        if self.trainer.world_size > 1:
            count = self.all_gather(torch.tensor(len(local), device=self.device)).max()
            padded = torch.full((int(count), len(COLUMNS)), float("nan"), dtype=local.dtype, device=self.device)
            padded[: len(local)] = local.to(self.device)
            local = self.all_gather(padded).reshape(-1, len(COLUMNS)).cpu()
            local = local[~local[:, 0].isnan()]
        order = local[:, 0].argsort(stable=True)
        local = local[order]
        keep = torch.ones(len(local), dtype=torch.bool)
        keep[1:] = local[1:, 0] != local[:-1, 0]
        return local[keep]

    def on_test_epoch_end(self) -> None:
        local = torch.cat(self._rows) if self._rows else torch.zeros(0, len(COLUMNS), dtype=torch.float64)
        self._rows = []
        self.rows = self.gather_rows(local)
        self.summary = summarize(self.rows, self.threshold)
        # every rank holds the gathered rows, so these values agree without a further reduction
        self.log_dict({f"test/{k}": v for k, v in self.summary.items()}, sync_dist=False)
