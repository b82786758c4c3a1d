"""Translation metrics pinned by hand: KID / FID on 3-D features, joint-judge rates, the judge's informativeness,
the train-on-translated probe's identities, paired-difference intervals and verdicts."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from coadv.study.tables import interval_verdict, t_interval
from datamodules.digits import load_domain
from lightning_modules.translation_metrics import (
    Recipe,
    Split,
    direction_metrics,
    distribution_distances,
    fit_classifier,
    joint_rates,
    judge_informative,
    probe_correct,
    reference_metrics,
    train_on_translated,
)


class Points(nn.Module):
    """The "images" are 3-D feature vectors already."""

    num_features = 3

    def forward(self, x):
        return x.double()


def test_kid_and_fid_against_hand_computed_values():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(6, 3, generator=g)
    fake = torch.randn(6, 3, generator=g) + 0.5
    out = distribution_distances(Points(), real, fake, subset_size=6, subsets=1)
    x = real.double().numpy()
    y = fake.double().numpy()

    def k(p, q):  # torchmetrics' polynomial kernel: (p.q / d + 1)^3
        return (p @ q.T / 3 + 1) ** 3

    m = len(x)
    kxx = k(x, x)
    kyy = k(y, y)
    kxy = k(x, y)
    mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    assert out["kid"] == pytest.approx(mmd, rel=1e-5)
    mu1 = x.mean(0)
    mu2 = y.mean(0)
    s1 = np.cov(x, rowvar=False)
    s2 = np.cov(y, rowvar=False)
    fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert out["fid"] == pytest.approx(fid, rel=1e-4)


def test_joint_rates_by_hand():
    # classes 0-9: domain A digits, 10-19: domain B digits; target B (index 1)
    pred = torch.tensor([13, 3, 15, 12])  # (B, 3) right; (A, 3) wrong domain; (B, 5) wrong digit; (B, 2) right
    logits = torch.nn.functional.one_hot(pred, 20).float()
    rates = joint_rates(logits, torch.tensor([3, 3, 4, 2]), target=1)
    assert rates == {"joint": pytest.approx(0.5), "real": pytest.approx(0.75)}


def test_judge_informative_by_hand():
    # 0.967 on source vs 0.945 own (the inverted MNIST-M judge): not informative
    assert not judge_informative(0.967, 0.945, 1000, 1000)
    # 0.20 vs 0.95 on 1,000 each: informative; 0.93 vs 0.95: within 1.96 SE (0.0209) of each other
    assert judge_informative(0.20, 0.95, 1000, 1000)
    se = math.sqrt(0.93 * 0.07 / 1000 + 0.95 * 0.05 / 1000)
    assert 0.02 < 1.96 * se and not judge_informative(0.93, 0.95, 1000, 1000)


def test_t_interval_and_verdicts_by_hand():
    mean, low, high = t_interval([0.1, 0.2, 0.3, 0.4])
    half = 3.182446305284263 * statistics_stdev([0.1, 0.2, 0.3, 0.4]) / 2  # t(0.975, 3)
    assert (mean, low, high) == pytest.approx((0.25, 0.25 - half, 0.25 + half))
    assert interval_verdict(low, high, True) == "holds" and interval_verdict(low, high, False) == "does not hold"
    assert interval_verdict(-0.1, 0.2, True) == "inconclusive"
    assert interval_verdict(*t_interval([0.3])[1:], True).startswith("inconclusive")


def statistics_stdev(values):
    mu = sum(values) / len(values)
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))


def test_fit_classifier_is_seeded_and_leaves_the_global_rng_alone():
    x = torch.randn(40, 3, 32, 32)
    y = torch.randint(0, 10, (40,))
    state = torch.random.get_rng_state()
    a = train_on_translated(x, y, x, y, Recipe(steps=5, batch_size=8))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert train_on_translated(x, y, x, y, Recipe(steps=5, batch_size=8)) == a
    assert float(probe_correct(x, y, x, y, Recipe(steps=5, batch_size=8)).mean()) == pytest.approx(a)
    with pytest.raises(ValueError, match="3 images and 4 labels"):
        fit_classifier(lambda: nn.Linear(1, 2), torch.zeros(3, 1), torch.zeros(4, dtype=torch.long))


def _split(domain: str, cache_dir: str, n: int = 300) -> Split:
    out = []
    for split in ("train", "test"):
        x, y = load_domain(domain, split, cache_dir=cache_dir)
        out += [x[:n].float() / 127.5 - 1, y[:n]]
    return Split(*out)


def test_train_on_translated_identities(cache_dir):
    """G = identity on the source gives the "source only" figure, G = identity on the target itself the "target
    oracle" figure; the reference rows are the identity's metrics."""
    source = _split("mnist", cache_dir)
    target = _split("mnist_m", cache_dir)
    from nets.classifier import DigitNet

    judge = fit_classifier(lambda: DigitNet(3, width=4, feature_dim=8), target.train_x, target.train_y, Recipe(steps=3))
    joint = fit_classifier(
        lambda: DigitNet(3, 20, width=4, feature_dim=8),
        torch.cat([source.train_x, target.train_x]),
        torch.cat([source.train_y, target.train_y + 10]),
        Recipe(steps=3),
    )
    recipe = Recipe(steps=150, batch_size=32)
    ref = reference_metrics(source, target, judge, joint, 1, recipe)
    identity = direction_metrics(nn.Identity(), source, target, judge, joint, 1, recipe)
    assert identity == pytest.approx({k.removesuffix("_src"): v for k, v in ref.items() if k.endswith("_src")})
    on_target = direction_metrics(nn.Identity(), target, target, judge, joint, 1, recipe)
    assert on_target["tot"] == ref["tot_oracle"]
    assert ref["tot_oracle"] > ref["tot_src"] + 0.1  # trained on MNIST-M, the probe reads MNIST-M better


def test_verdicts_on_tied_empty_and_one_sided_inputs():
    assert interval_verdict(*t_interval([0.0, 0.0, 0.0])[1:], True) == "inconclusive"  # no difference at all
    assert interval_verdict(*t_interval([0.02, 0.02])[1:], True) == "holds"  # every seed the same gain: zero spread
    assert interval_verdict(*t_interval([-0.02, -0.02])[1:], False) == "holds"  # lower is better (KID, FID)
    mean, low, high = t_interval([])
    assert math.isnan(mean) and interval_verdict(low, high, True).startswith("inconclusive")


def test_robustness_summary_is_the_mean_of_every_corruption_and_severity():
    from lightning_modules.translation_metrics import robustness_metrics
    from nets.corruptions import KINDS

    class Joint(nn.Module):  # reads (target B, digit 3) when the image is bright on average, else class 10
        def forward(self, x):
            return torch.nn.functional.one_hot((x.mean((1, 2, 3)) > 0).long() * 3 + 10, 20).float()

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 32, 32, generator=gen) * 2 - 1
    y = torch.full((40,), 3)
    source = Split(x, y, x, y)
    out = robustness_metrics(None, source, Joint(), target_index=1)
    per = [out[f"rob_{k}_{s}"] for k in KINDS for s in (1, 2, 3)]
    assert len(out) == 2 + 3 * len(KINDS)
    assert out["rob_mean"] == pytest.approx(sum(per) / len(per))
    assert out["rob_clean"] == pytest.approx(float((x.mean((1, 2, 3)) > 0).float().mean()))
