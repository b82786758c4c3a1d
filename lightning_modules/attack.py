"""The attack LightningModule: a frozen, trained victim, an injected perturbation search, every trial of a list.

``coadv test -c configs/attack/<attack>_<victim>.yaml`` rebuilds the victim from its training checkpoint
(``victim_loading``), attacks the test side of each trial, and reports per trial (a table of named columns,
``COLUMNS``) and in aggregate (``summarize``, in ``attack_metrics``).

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
import time
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import instantiate_module
from torch import Tensor, nn

from attacks import Attack, VerificationObjective
from attacks.objective import KAPPA
from lightning_modules.attack_metrics import (
    COLUMNS,
    announce_perceptual,
    feature_rho,
    perceptual_scores,
    perturbation_columns,
    summarize,
    table,
)
from lightning_modules.hparams import save_config
from lightning_modules.verification import TrialScoring
from lightning_modules.victim_loading import load_victim
from nets.checks import check_arg
from nets.speaker.contract import FeatureDomainVictim


class AdversarialAttack(L.LightningModule):
    """Runs ``attack`` against a frozen victim in ``test_step`` / ``predict_step``.

    The victim is named by its training checkpoint only: architecture, weights and clean threshold come from it.

    Args:
        checkpoint: the victim's training checkpoint (``checkpoints/victims/<name>.ckpt``), written by
            ``coadv fit`` of its configs/speaker files.
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
        self.victim = victim
        self.attack = attack
        self.checkpoint = checkpoint
        self.kappa = kappa
        self.threshold_override = threshold
        self.seed = seed
        self.batch_trials = batch_trials
        self.perceptual = perceptual
        self._perceptual = {"pesq": False, "stoi": False}  # what this run computes (set in setup)
        self.threshold = float("nan")
        self.victim_hparams: dict | None = None  # the victim checkpoint's hyperparameters, kept in our checkpoints
        self._restored = False  # rebuilt from an attack checkpoint: the victim file is not read again
        self._tables: list[dict[str, Tensor]] = []  # the test batches' tables of trials
        self.trials: dict[str, Tensor] | None = None  # the run's table of trials (``COLUMNS``), after a test
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
        self._perceptual = announce_perceptual(self.perceptual and self.attack.audible, self.global_rank == 0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["attack"] = {"threshold": self.threshold, "victim_hyper_parameters": self.victim_hparams}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get("attack", {})
        hparams = stored.get("victim_hyper_parameters")
        if self.victim is None and hparams is not None:  # the weights follow from our own state_dict
            self.victim = instantiate_module(
                TrialScoring, {k: v for k, v in hparams.items() if k != "_instantiator"}
            ).victim
        self.victim_hparams = hparams
        self.threshold = float(stored.get("threshold", float("nan")))
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
    ) -> tuple[list[dict[str, float]], Tensor, Tensor]:
        """Attack trials whose test waveforms ``test [G, T]`` have one length; per trial a row (``COLUMNS``), and
        the clean and adversarial signals in the domain attacked (``AttackResult.clean`` / ``attacked``: waveforms
        ``[G, T]`` or MFCC frames ``[G, N, D]``). ``enrol`` (padded, true lengths ``enrol_len``) is re-embedded alone
        for the final decision; the search uses the given ``enrol_embedding``."""
        torch.manual_seed(self.seed + int(index.min()))
        seeds = self.seed + index  # per-trial generators: a trial's random draws do not depend on its group
        objective = VerificationObjective(
            self.victim, enrol, labels, self.threshold, self.kappa, enrol_embedding, seeds
        )
        start = time.perf_counter()
        result = self.attack.perturb(test, objective)
        wall = (time.perf_counter() - start) / len(test)
        clean = test if result.clean is None else result.clean  # None: the waveforms given to the attack
        adversarial = result.attacked
        with torch.no_grad():
            enrol_alone = torch.cat(
                [self.victim.embed(enrol[j : j + 1, : int(enrol_len[j])]) for j in range(len(test))]
            )
            before = self.score_alone(enrol_alone, test)
            after = self.score_alone(enrol_alone, adversarial, partial(self.attack.embed, self.victim))
            success = objective.flipped(after)  # the victim's own decision, each trial scored alone
        rows = []
        for j in range(len(test)):
            correct = (float(before[j]) >= self.threshold) == (int(labels[j]) == 1)  # accept <=> score >= theta
            row = {
                "index": int(index[j]),
                "label": int(labels[j]),
                "clean_correct": float(correct),
                "success": float(bool(success[j])),
                **perturbation_columns(clean[j], adversarial[j]),
                **dict(zip(("pesq", "stoi"), perceptual_scores(adversarial[j], clean[j], self._perceptual))),
                "iterations": float(result.iterations[j]),
                "grad_evals": float(result.grad_evals[j]),
                "wall_s": wall,
                "score_before": float(before[j]),
                "score_after": float(after[j]),
                "rho_feat": self.feature_rho(clean[j], adversarial[j]),
            }
            rows.append(row)
        return rows, clean.detach(), adversarial.detach()

    @torch.no_grad()
    def feature_rho(self, clean: Tensor, adversarial: Tensor) -> float:
        """The trial's ρ in the victim's MFCC domain (a waveform attack's induced feature change, or a
        feature-domain attack's own ρ); NaN for victims without a feature front-end."""
        if not isinstance(self.victim, FeatureDomainVictim):
            return math.nan
        features = partial(self.attack.features, self.victim)
        return feature_rho(features(clean[None])[0], features(adversarial[None])[0])

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
        """The trials of a batch attacked, in batch order: ``trials`` (a table: ``{column: [B]}``), ``clean`` /
        ``adversarial`` (per trial, the signals in the domain attacked, on the CPU)."""
        enrol_embedding = self.embed_enrolment(batch["enrol"], batch["enrol_len"])
        n = len(batch["label"])
        rows: list[dict[str, float]] = [{}] * n
        clean: list[Tensor] = [torch.empty(0)] * n
        adversarial: list[Tensor] = [torch.empty(0)] * n
        for group in self.trial_groups(batch["test_len"]):
            length = int(batch["test_len"][group[0]])
            group_rows, group_clean, group_adversarial = self.attack_group(
                batch["enrol"][group],
                batch["enrol_len"][group],
                enrol_embedding[group],
                batch["test"][group, :length],
                batch["label"][group],
                batch["index"][group],
            )
            for j, position in enumerate(group.tolist()):
                rows[position] = group_rows[j]
                clean[position] = group_clean[j].cpu()
                adversarial[position] = group_adversarial[j].cpu()
        return {"trials": table(rows), "clean": clean, "adversarial": adversarial}

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        out = self._attack_batch(batch)
        self._tables.append(out["trials"])
        return out

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Any]:
        return self._attack_batch(batch)

    def on_test_epoch_start(self) -> None:
        self._tables = []

    def gather_trials(self, local: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every rank's trials, once, deduplicated by trial index (the distributed sampler repeats trials to even
        out shards) and ordered by it. A dict of columns gathers as one: Lightning gathers each tensor."""
        if self.trainer.world_size > 1:
            count = int(self.all_gather(torch.tensor(len(local["index"]), device=self.device)).max())
            padded = {}
            for name, column in local.items():  # NaN rows pad a short shard (index NaN: dropped below)
                padded[name] = torch.full((count,), float("nan"), dtype=column.dtype, device=self.device)
                padded[name][: len(column)] = column.to(self.device)
            local = {name: column.reshape(-1).cpu() for name, column in self.all_gather(padded).items()}
            real = ~local["index"].isnan()
            local = {name: column[real] for name, column in local.items()}
        order = local["index"].argsort(stable=True)
        local = {name: column[order] for name, column in local.items()}
        keep = torch.ones(len(order), dtype=torch.bool)
        keep[1:] = local["index"][1:] != local["index"][:-1]
        return {name: column[keep] for name, column in local.items()}

    def on_test_epoch_end(self) -> None:
        local = {name: torch.cat([t[name] for t in self._tables]) for name in COLUMNS} if self._tables else table([])
        self._tables = []
        self.trials = self.gather_trials(local)
        self.summary = summarize(self.trials, self.threshold)
        # every rank holds the gathered trials, so these values agree without a further reduction
        self.log_dict({f"test/{k}": v for k, v in self.summary.items()}, sync_dist=False)
