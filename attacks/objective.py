"""The verification objective (plain torch): residuals, successes and gradient counts of a batch of trials.

Threat model: white-box, only the test side of a trial is perturbed, waveform kept in [clip_min, clip_max].
One decision rule: a trial is accepted when ``s >= theta``. With sigma = +1 for a target trial (label 1) and -1
for a non-target trial, the residual is ``r(delta) = sigma (s(enrol, x + delta) - theta) + kappa``. Inside a search
a point counts as a success (``is_success``) only with ``r <= 0``, i.e. past the threshold by the margin ``kappa``:
a batched forward pass moves a score by float noise (measured by ``benchmarks/score_noise.py``, figures in
docs/attacks/design.md), so a success with a smaller margin could reverse when the trial is scored alone. The *final* success of every attack is the
victim's own decision, the trial re-scored alone at ``theta`` (``flipped_alone``), never a batched check.

Every tensor an attack creates lives on its input's device and dtype; half-precision victims and inputs are refused
(``check_precision``): minimal perturbations are ~1e-3 of the signal, the resolution of float16.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nets.speaker.contract import SpeakerVictim

HALF = (torch.float16, torch.bfloat16)
# the common success margin of every attack config: about 10x the largest batch noise of the victims' scores
# (docs/attacks/design.md, `python benchmarks/score_noise.py`), so that a search's success survives scoring alone
KAPPA = 1e-5


def check_precision(what: str, dtype: torch.dtype) -> None:
    """Raise ``ValueError`` for half-precision tensors: an attack's perturbations (rho ~ 1e-3 of the signal, steps
    far smaller) are at or below float16 / bfloat16 resolution (eps 1e-3 / 8e-3), so the search would stall."""
    if dtype in HALF:
        raise ValueError(
            f"{what} is {dtype}: attacks need float32 or float64, because the minimal perturbations they look for "
            f"(rho ~ 1e-3 of the signal) are below {dtype} resolution (eps {torch.finfo(dtype).eps:.0e}); "
            "run the victim in full precision (e.g. trainer.precision: 32-true, victim.float())"
        )


class VerificationObjective:
    """Residual of a batch of trials against a ``SpeakerVictim``; the enrolment side is embedded once here (it is
    never perturbed), halving the cost of every residual.

    ``grad_evals [B]`` counts, per trial, the gradient evaluations spent on it: ``residual_and_grad`` evaluates
    only the trials it is asked for (``active``) and counts only those, so a trial that stopped stops counting.
    Labels, sigma and the counter live on the device of the enrolment embeddings.

    Args:
        victim: the speaker model (frozen by the caller); float32 or float64 (half precision raises).
        enrol: enrolment waveforms ``[B, T_e]``.
        labels: 1 for target trials, 0 for non-target, ``[B]``.
        threshold: the victim's clean EER threshold theta.
        kappa: margin past the threshold that a search needs to count a point as a success, >= 0 (score units;
            ``KAPPA`` in every config, about 10x the measured batch noise of the victims' scores).
        enrol_embedding: precomputed ``victim.embed(enrol)`` ``[B, D]`` (e.g. each trial embedded at its length).
        seeds: one seed per trial ``[B]``: random draws of attacks come from per-trial generators
            (:meth:`random_like`), so a trial's result does not depend on which trials share its batch.
            ``None``: the global generator.
    """

    def __init__(
        self,
        victim: SpeakerVictim,
        enrol: Tensor,
        labels: Tensor,
        threshold: float,
        kappa: float = 0.0,
        enrol_embedding: Tensor | None = None,
        seeds: Tensor | None = None,
    ) -> None:
        if isinstance(victim, torch.nn.Module):
            for name, p in victim.named_parameters():
                check_precision(f"victim parameter {name!r}", p.dtype)
        check_precision("the enrolment waveform", enrol.dtype)
        self.victim = victim
        self.enrol = enrol
        self.threshold = float(threshold)
        self.kappa = kappa
        self.seeds = None if seeds is None else [int(v) for v in seeds]
        if enrol_embedding is None:
            with torch.no_grad():
                enrol_embedding = victim.embed(enrol)
        check_precision("the enrolment embedding", enrol_embedding.dtype)
        self.enrol_embedding = enrol_embedding
        self.labels = labels.to(enrol_embedding.device)
        self.sigma = self.labels.to(enrol_embedding.dtype) * 2 - 1
        self.grad_evals = torch.zeros(len(labels), dtype=torch.long, device=enrol_embedding.device)

    def score(self, x: Tensor) -> Tensor:
        """Victim scores ``[B]`` of test waveforms ``x [B, T]`` (differentiable)."""
        return self._score(x, slice(None), self.victim.embed)

    def _score(self, x: Tensor, rows: Tensor | slice, embed: Callable[[Tensor], Tensor]) -> Tensor:
        check_precision("the attacked input", x.dtype)
        score = self.victim.compare(self.enrol_embedding[rows], embed(x))
        check_precision("the victim's score", score.dtype)
        return score

    def residual_of_score(self, score: Tensor) -> Tensor:
        """``r = sigma (score - theta) + kappa`` ``[B]``."""
        return self.sigma * (score - self.threshold) + self.kappa

    def is_success(self, r: Tensor) -> Tensor:
        """Per trial: the decision at ``theta`` flipped with margin ``kappa``. ``r <= 0``, except that ``r == 0``
        on a target trial with ``kappa == 0`` means ``s == theta``, which is still accepted (``s >= theta``).
        NaN (a trial not evaluated) is no success."""
        return (r < 0) | ((r == 0) & ((self.sigma < 0) | (self.kappa > 0)))

    def flipped(self, score: Tensor) -> Tensor:
        """Per trial: the decision at ``theta`` (accept <=> ``score >= theta``) differs from the label's, no margin;
        a non-finite score is no success."""
        accepted = score >= self.threshold
        return torch.where(self.sigma > 0, ~accepted, accepted) & torch.isfinite(score)

    @torch.no_grad()
    def score_alone(self, x: Tensor) -> Tensor:
        """Scores ``[B]`` with each test waveform embedded in a forward pass of its own (no batch noise)."""
        if len(x) == 0:
            return x.new_zeros(0)
        return torch.cat([self._score(x[i : i + 1], slice(i, i + 1), self.victim.embed) for i in range(len(x))])

    def flipped_alone(self, x: Tensor) -> Tensor:
        """The final success of a trial: its decision flipped when ``x`` is re-scored alone."""
        return self.flipped(self.score_alone(x))

    def residual(self, x: Tensor) -> Tensor:
        """``r [B]`` at test waveforms ``x [B, T]`` (differentiable)."""
        return self.residual_of_score(self.score(x))

    def residual_and_grad(
        self, x: Tensor, active: Tensor | None = None, embed: Callable[[Tensor], Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(r [B], dr/dx [B, ...])`` at the trials ``active [B]`` (all when None), one gradient evaluation counted
        for each; the other trials are not evaluated (r = NaN, gradient 0). ``embed`` replaces ``victim.embed``
        for inputs in another domain (feature frames)."""
        embed = self.victim.embed if embed is None else embed
        if active is None or bool(active.all()):
            rows: Tensor | slice = slice(None)
        else:
            rows = active.nonzero().squeeze(1)
        xs = x[rows].detach().requires_grad_(True)
        with torch.enable_grad():
            r = self.sigma[rows] * (self._score(xs, rows, embed) - self.threshold) + self.kappa
            (g,) = torch.autograd.grad(r.sum(), xs)  # trials are independent: the sum's gradient is per-trial
        self.grad_evals[rows] += 1
        if isinstance(rows, slice):
            return r.detach(), g
        r_all = torch.full(x.shape[:1], float("nan"), dtype=r.dtype, device=r.device)
        g_all = torch.zeros_like(x, dtype=g.dtype)
        r_all[rows] = r.detach()
        g_all[rows] = g
        return r_all, g_all

    def subset(self, index: slice) -> VerificationObjective:
        """The objective of a slice of the trials (shares the victim and the cached enrolment embeddings; counts
        its own gradient evaluations)."""
        seeds = None if self.seeds is None else torch.tensor(self.seeds)[index]
        return VerificationObjective(
            self.victim,
            self.enrol[index],
            self.labels[index],
            self.threshold,
            self.kappa,
            self.enrol_embedding[index],
            seeds,
        )

    def random_like(self, x: Tensor, kind: str = "uniform") -> Tensor:
        """Random ``x``-shaped draw (``"uniform"`` in [0, 1) or ``"normal"``); row ``i`` from trial ``i``'s own
        generator when the objective has ``seeds``, else from the global generator."""
        draw = torch.rand_like if kind == "uniform" else torch.randn_like
        if self.seeds is None:
            return draw(x)
        rows = []
        for seed, row in zip(self.seeds, x):
            generator = torch.Generator(device=x.device).manual_seed(seed)
            make = torch.rand if kind == "uniform" else torch.randn
            rows.append(make(row.shape, generator=generator, device=x.device, dtype=x.dtype))
        return torch.stack(rows) if rows else draw(x)
