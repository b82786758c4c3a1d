"""EER, threshold and minDCF on raw scores: hand-computed cases (negative scores, scores beyond [-1, 1], ties,
all-equal scores, one class), a brute-force cross-check, and what torchmetrics does with raw scores by default."""

import math

import pytest
import torch
from torchmetrics.classification import BinaryEER, BinaryROC

from lightning_modules.verification import verification_metrics


def metrics(scores, labels, p_target=0.01) -> dict[str, float]:
    out = verification_metrics(torch.tensor(scores), torch.tensor(labels), p_target)
    return {k: float(v) for k, v in out.items()}


def test_threshold_is_the_score_itself_when_scores_are_negative():
    m = metrics([0.9, 0.6, 0.3, -0.2], [1, 1, 0, 0])
    assert m["threshold"] == pytest.approx(0.6) and m["eer"] == 0 and m["min_dcf"] == 0
    # torchmetrics' default passes the scores through a sigmoid as soon as one is negative: sigma(0.6) = 0.6457
    _, _, sigmoid_thresholds = BinaryROC(thresholds=None)(
        torch.tensor([0.9, 0.6, 0.3, -0.2]), torch.tensor([1, 1, 0, 0])
    )
    assert float(sigmoid_thresholds[2]) == pytest.approx(0.6457, abs=1e-4)
    assert metrics([-0.1, -0.3, -0.5, -0.9], [1, 1, 0, 0])["threshold"] == pytest.approx(-0.3)


def test_scores_beyond_the_unit_interval_are_neither_clamped_nor_squashed():
    assert metrics([12.0, 3.5, -4.0, -20.0], [1, 1, 0, 0])["threshold"] == 3.5  # was clamped to 1
    saturating = torch.tensor([30.0, 40.0, 25.0, 20.0])
    labels = torch.tensor([1, 1, 0, 0])
    m = metrics(saturating.tolist(), labels.tolist())
    assert m["eer"] == 0 and m["threshold"] == 30.0
    assert float(BinaryEER(thresholds=None)(saturating, labels)) == 0.5  # sigmoid(>= 17) == 1.0: every score ties
    assert float(BinaryEER(thresholds=None, normalization=None)(saturating, labels)) == 0


def test_hand_computed_eer_and_min_dcf():
    # descending: .9T .8N .7T .35T .3N .1T 0N -.5N; at t = .35: FRR 1/4 (0.1), FAR 1/4 (0.8)
    scores = [0.9, 0.7, 0.35, 0.1, 0.8, 0.3, 0.0, -0.5]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    m = metrics(scores, labels)
    assert m["eer"] == 0.25 and m["threshold"] == pytest.approx(0.35)
    # p = 0.01: FRR + 99 FAR, best at t = .9 (FRR 3/4, FAR 0)
    assert m["min_dcf"] == pytest.approx(0.75)
    # p = 0.5: FRR + FAR, best 1/2 (t = .35 or .1); p = 0.9: 9 FRR + FAR, best at t = .1 (FRR 0, FAR 1/2)
    assert metrics(scores, labels, 0.5)["min_dcf"] == pytest.approx(0.5)
    assert metrics(scores, labels, 0.9)["min_dcf"] == pytest.approx(0.5)


def test_tied_scores_are_decided_together_and_the_largest_threshold_wins_a_tie():
    # the target and the non-target at 0.5 are accepted together: no threshold separates them, so the EER is not 0
    # candidates: t = .7 (FRR 1/2, FAR 0) and t = .5 (FRR 0, FAR 1/2) tie on |FAR - FRR|; the larger is kept
    m = metrics([0.7, 0.5, 0.5, 0.2], [1, 1, 0, 0])
    assert m["eer"] == 0.25 and m["threshold"] == pytest.approx(0.7)


def test_all_equal_scores():
    m = metrics([0.3, 0.3, 0.3, 0.3], [1, 0, 1, 0])
    assert m["eer"] == 0.5 and m["threshold"] == pytest.approx(0.3)
    assert m["min_dcf"] == 1  # "reject all" costs p / min(p, 1 - p) = 1; accepting all costs 99


def test_one_class_gives_nan():
    assert all(math.isnan(v) for v in metrics([0.1, 0.2], [1, 1]).values())


def brute_force(scores: torch.Tensor, labels: torch.Tensor, p: float) -> tuple[float, float, float]:
    """EER, threshold and minDCF straight from the definitions, accept <=> score >= t."""
    target = scores[labels == 1]
    nontarget = scores[labels == 0]
    points = []
    for t in sorted(set(scores.tolist()), reverse=True):
        far = float((nontarget >= t).float().mean())
        frr = float((target < t).float().mean())
        points.append((abs(far - frr), (far + frr) / 2, t, (p * frr + (1 - p) * far) / min(p, 1 - p)))
    best = min(points, key=lambda q: q[0])  # min keeps the first, i.e. the largest t, on ties
    return best[1], best[2], min([q[3] for q in points] + [p / min(p, 1 - p)])


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_the_definitions_and_with_binary_eer_without_sigmoid(seed):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (60,), generator=gen)
    labels[:2] = torch.tensor([0, 1])
    scores = ((torch.randn(60, generator=gen) + labels * 1.5) * 3).round() / 2  # many ties, values beyond [-1, 1]
    m = verification_metrics(scores, labels, 0.05)
    eer, threshold, min_dcf = brute_force(scores, labels, 0.05)
    assert float(m["eer"]) == pytest.approx(eer) and float(m["threshold"]) == threshold
    assert float(m["min_dcf"]) == pytest.approx(min_dcf)
    assert float(m["eer"]) == pytest.approx(float(BinaryEER(thresholds=None, normalization=None)(scores, labels)))
