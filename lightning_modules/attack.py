"""The attack LightningModule: a frozen, trained victim, an injected perturbation search, every trial of a list.

``coadv test -c configs/attack/<attack>_<victim>.yaml`` loads the victim's training checkpoint (weights
under ``victim.`` and the clean EER threshold under ``checkpoint["verification"]``), attacks the test side of each
trial, and reports per trial (``COLUMNS``) and in aggregate (``summarize``). Trials are attacked one at a time at
their true length (padding never enters the victim, and the wall time is the trial's own); under DDP each rank
attacks its shard and the rows are gathered once, deduplicated and ordered by trial index, so the table does not
depend on the number of processes. Per-trial seeds (``seed + index``) make random starts shard-independent.

Success and ρ are reported over the trials the victim decides correctly when clean (the others need no attack);
EER / FAR / FRR cover every trial. Input gradients are impossible under inference mode: configs set
``trainer.inference_mode: false``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from attacks import Attack, VerificationObjective
from lightning_modules.verification import verification_metrics

COLUMNS = (
    "index", "label", "clean_correct", "success", "rho", "snr_db", "linf", "iterations", "grad_evals", "wall_s",
    "score_before", "score_after",
)  # fmt: skip


def load_victim(victim: nn.Module, path: str | Path) -> float | None:
    """Load a victim's weights from its training checkpoint; returns the clean threshold stored with them
    (``None`` when the checkpoint has none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"victim checkpoint {path} does not exist; train the victim first "
            "(coadv fit -c configs/speaker/<victim>_synth.yaml)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle / zip errors say nothing of which file
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from error
    state = {
        k.removeprefix("victim."): v for k, v in checkpoint.get("state_dict", {}).items() if k.startswith("victim.")
    }
    if not state:
        raise ValueError(f"{path}: no 'victim.*' weights in state_dict; is it a speaker-verification checkpoint?")
    try:
        victim.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit {type(victim).__name__} as configured: {error}") from error
    threshold = checkpoint.get("verification", {}).get("threshold")
    return float(threshold) if threshold is not None and math.isfinite(threshold) else None


def summarize(rows: Tensor, threshold: float) -> dict[str, float]:
    """Aggregates of a per-trial table ``[N, len(COLUMNS)]``.

    ``success_rate`` and the perturbation statistics cover trials decided correctly when clean (ρ, SNR and
    ‖δ‖∞ over the successful ones); ``far`` / ``frr`` / ``eer`` are of the attacked scores over every trial,
    ``clean_far`` / ``clean_frr`` of the clean ones, both at the clean threshold.
    """
    col = {name: rows[:, i] for i, name in enumerate(COLUMNS)}
    attacked = col["clean_correct"] > 0
    won = attacked & (col["success"] > 0)
    target, nontarget = col["label"] == 1, col["label"] == 0

    def mean(x: Tensor) -> float:
        return float(x.mean()) if len(x) else float("nan")

    def rate(decided: Tensor, mask: Tensor) -> float:
        return float(decided[mask].float().mean()) if mask.any() else float("nan")

    out = {
        "trials": float(len(rows)),
        "attacked": float(attacked.sum()),
        "success_rate": rate(col["success"] > 0, attacked),
        "rho_mean": mean(col["rho"][won]),
        "rho_median": float(col["rho"][won].median()) if won.any() else float("nan"),
        "snr_db_mean": mean(col["snr_db"][won]),
        "linf_mean": mean(col["linf"][won]),
        "iterations_mean": mean(col["iterations"][attacked]),
        "grad_evals_mean": mean(col["grad_evals"][attacked]),
        "wall_s_mean": mean(col["wall_s"][attacked]),
        "clean_far": rate(col["score_before"] >= threshold, nontarget),
        "clean_frr": rate(col["score_before"] < threshold, target),
        "far": rate(col["score_after"] >= threshold, nontarget),
        "frr": rate(col["score_after"] < threshold, target),
        "eer": float("nan"),
    }
    if target.any() and nontarget.any():
        out["eer"] = float(verification_metrics(col["score_after"], col["label"].long())["eer"])
    return out


class AdversarialAttack(L.LightningModule):
    """Runs ``attack`` against a frozen ``victim`` in ``test_step`` / ``predict_step``.

    Args:
        victim: the victim network as in its training config (class_path + init_args).
        checkpoint: the victim's training checkpoint (``checkpoints/victims/<name>.ckpt``).
        attack: the perturbation search (``attacks.*``).
        kappa: success margin past the threshold (score units).
        threshold: clean threshold override; ``None`` reads it from the checkpoint (an error if absent).
        seed: trial ``i`` is attacked after ``torch.manual_seed(seed + i)``.
    """

    def __init__(
        self,
        victim: nn.Module,
        checkpoint: str,
        attack: Attack,
        kappa: float = 0.0,
        threshold: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.victim, self.attack, self.checkpoint = victim, attack, checkpoint
        self.kappa, self.threshold_override, self.seed = kappa, threshold, seed
        self.threshold = float("nan")
        self._rows: list[Tensor] = []
        self.rows: Tensor | None = None
        self.summary: dict[str, float] = {}

    @property
    def domain(self) -> str:
        """What the attack perturbs: ``"waveform"`` or ``"mfcc"`` (feature-domain attacks)."""
        return getattr(self.attack, "domain", "waveform")

    def setup(self, stage: str) -> None:
        stored = load_victim(self.victim, self.checkpoint)
        threshold = self.threshold_override if self.threshold_override is not None else stored
        if threshold is None:
            raise ValueError(
                f"{self.checkpoint}: no clean threshold (checkpoint['verification']['threshold'] is missing or "
                "NaN); validate the victim so it is stored, or set model.init_args.threshold"
            )
        self.threshold = float(threshold)
        self.victim.eval().requires_grad_(False)

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

    def attack_trial(self, enrol: Tensor, test: Tensor, label: int, index: int) -> tuple[Tensor, Tensor]:
        """Attack one trial; returns its row ``[len(COLUMNS)]`` and the adversarial object (waveform ``[T]`` or,
        for feature-domain attacks, MFCC frames ``[N, D]``)."""
        torch.manual_seed(self.seed + index)
        labels = torch.tensor([label], device=test.device)
        objective = VerificationObjective(self.victim, enrol[None], labels, self.threshold, self.kappa)
        with torch.no_grad():
            before = objective.score(test[None])
        start = time.perf_counter()
        result = self.attack.perturb(test[None], objective)
        wall = time.perf_counter() - start
        with torch.no_grad():
            if "features" in result.extra:
                clean, adversarial = self.victim.frames(test[None]), result.extra["features"]
                after = self.victim.compare(objective.enrol_embedding, self.victim.embed_frames(adversarial))
            else:
                clean, adversarial = test[None], result.adversarial
                after = objective.score(adversarial)
        delta = (adversarial - clean).flatten()
        rho = float(delta.norm() / clean.norm().clamp(min=1e-12))
        sigma = 1.0 if label == 1 else -1.0
        row = [
            index, label, float(sigma * (float(before) - self.threshold) > 0),
            float(float(objective.residual_of_score(after)) <= 0), rho,
            -20 * math.log10(rho) if rho > 0 else float("inf"), float(delta.abs().max()),
            float(result.iterations[0]), float(result.grad_evals[0]), wall, float(before), float(after),
        ]  # fmt: skip
        return torch.tensor(row, dtype=torch.float64), adversarial[0].detach().cpu()

    def _attack_batch(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        rows, adversarial = [], []
        for i in range(len(batch["label"])):
            row, adv = self.attack_trial(
                batch["enrol"][i, : int(batch["enrol_len"][i])], batch["test"][i, : int(batch["test_len"][i])],
                int(batch["label"][i]), int(batch["index"][i]),
            )  # fmt: skip
            rows.append(row)
            adversarial.append(adv)
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
