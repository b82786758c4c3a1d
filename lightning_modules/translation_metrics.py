"""Translation metrics that can move in both directions, computed after training on the test splits.

- **Target judge**: the target domain's digit classifier on translated test images (``judge``). A direction is
  *uninformative* for it when the judge reads untranslated source images about as well as its own domain
  (:func:`judge_informative`): the identity then scores as well as a good translation.
- **Train on translated, test on real target** (the pixel-level protocol of PixelDA / CyCADA; ``tot``): a fresh
  :class:`LeNet` with a fixed recipe and seed (:func:`fit_classifier`) trained on ``G(source train)`` with the source
  labels and tested on real target test images. Reference rows: ``source only`` (trained on raw source) and
  ``target oracle`` (trained on target train).
- **Joint judge** (20 classes: domain x digit, trained on both domains' training splits): the rate at which
  translations are read as (target domain, right digit) (``joint``) and as the target domain at all (``real``).
- **KID and FID** on the joint judge's penultimate features (torchmetrics ``KernelInceptionDistance`` /
  ``FrechetInceptionDistance`` with a custom extractor), translated vs real target test images; reference rows:
  untranslated source vs target test, target train vs target test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from nets.classifier import ClassifierFeatures, DigitNet
from nets.corruptions import KINDS, Corruption


class LeNet(nn.Module):
    """LeNet-5-like classifier ``[B, C, 32, 32] -> [B, num_classes]`` (the train-on-translated probe)."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.LazyLinear(128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@dataclass(frozen=True)
class Recipe:
    """How a probe classifier is trained: Adam at ``lr`` for ``steps`` batches of ``batch_size``, order and init
    drawn from ``seed``. A fixed number of steps (not epochs) so that training sets of different sizes get the same
    training."""

    steps: int = 500
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0


def fit_classifier(make: Callable[[], nn.Module], x: Tensor, y: Tensor, recipe: Recipe = Recipe()) -> nn.Module:
    """The net ``make()`` builds (its init drawn from ``recipe.seed``), trained on ``(x, y)`` by ``recipe``; eval mode,
    frozen. The global RNG is left as it was."""
    if len(x) != len(y) or not len(x):
        raise ValueError(f"fit_classifier: {len(x)} images and {len(y)} labels")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        net = make()
        net.eval()(x[:1])  # materialise lazy layers (init from the same seeded stream; no batch-norm update)
        order = torch.Generator().manual_seed(recipe.seed)
        opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
        net.train()
        perm = torch.randperm(len(x), generator=order)
        pos = 0
        for _ in range(recipe.steps):
            if pos + recipe.batch_size > len(x):
                perm = torch.randperm(len(x), generator=order)
                pos = 0
            idx = perm[pos : pos + recipe.batch_size]
            pos += recipe.batch_size
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval().requires_grad_(False)


@torch.no_grad()
def predict(net: nn.Module, x: Tensor, batch: int = 500) -> Tensor:
    """Logits of ``net`` on ``x`` in batches."""
    return torch.cat([net(chunk) for chunk in x.split(batch)])


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy (torchmetrics ``MulticlassAccuracy``, micro)."""
    metric = MulticlassAccuracy(logits.shape[1], average="micro")
    return float(metric(logits, labels))


@torch.no_grad()
def translate(net: nn.Module | None, x: Tensor, batch: int = 250) -> Tensor:
    """``net(x)`` in eval mode and batches (``None``: ``x`` itself, the no-translation reference)."""
    if net is None:
        return x
    was_training = net.training
    net.eval()
    out = torch.cat([net(chunk) for chunk in x.split(batch)])
    net.train(was_training)
    return out


def train_on_translated(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, recipe: Recipe = Recipe()
) -> float:
    """Accuracy on ``(test_x, test_y)`` of a fresh :class:`LeNet` trained on ``(train_x, train_y)`` by ``recipe``:
    with ``train_x = G(source train)`` and real target test images, the pixel-level adaptation protocol."""
    net = fit_classifier(lambda: LeNet(train_x.shape[1], 10), train_x, train_y, recipe)
    return accuracy(predict(net, test_x), test_y)


def probe_correct(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, recipe: Recipe = Recipe()
) -> Tensor:
    """Per test image, 1.0 where the :func:`train_on_translated` probe is right (its mean is that accuracy): probes
    trained on different sets and tested on the same images give paired per-image differences."""
    net = fit_classifier(lambda: LeNet(train_x.shape[1], 10), train_x, train_y, recipe)
    return (predict(net, test_x).argmax(1) == test_y).float()


def judge_informative(source_acc: float, own_acc: float, n_source: int, n_own: int) -> bool:
    """Whether the target judge can reward translation: its accuracy on untranslated source images is below its
    own-domain accuracy by more than 1.96 standard errors of the difference (binomial, independent test sets)."""
    se = math.sqrt(source_acc * (1 - source_acc) / n_source + own_acc * (1 - own_acc) / n_own)
    return own_acc - source_acc > 1.96 * se


def probe_informative(source_only: float, oracle: float, n_test: int) -> bool:
    """Whether train-on-translated can reward translation: the classifier trained on untranslated source is below
    the target oracle by more than 1.96 standard errors (both tested on the same ``n_test`` target images; the
    independent-sample error is the larger one for positively correlated errors, so this errs toward
    "uninformative")."""
    return judge_informative(source_only, oracle, n_test, n_test)


def joint_labels(labels: Tensor, domain: int) -> Tensor:
    """Joint-judge classes: ``10 * domain + digit`` (domain 0: A, 1: B)."""
    return labels + 10 * domain


def joint_rates(logits: Tensor, labels: Tensor, target: int) -> dict[str, float]:
    """``joint``: read as (target domain, right digit); ``real``: read as the target domain, any digit."""
    pred = logits.argmax(1)
    return {
        "joint": accuracy(logits, joint_labels(labels, target)),
        "real": float((pred // 10 == target).float().mean()),
    }


def distribution_distances(
    features: nn.Module, real: Tensor, fake: Tensor, subset_size: int = 500, subsets: int = 50, seed: int = 0
) -> dict[str, float]:
    """KID (mean over ``subsets`` random subsets of ``subset_size``, torchmetrics' polynomial-kernel unbiased MMD^2)
    and FID between ``real`` and ``fake`` images on ``features`` (a module with ``num_features``). The subsets are
    drawn from ``seed`` (the global RNG is left as it was)."""
    subset_size = min(subset_size, len(real), len(fake))
    kid = KernelInceptionDistance(feature=features, subsets=subsets, subset_size=subset_size)
    fid = FrechetInceptionDistance(feature=features)
    for metric in (kid, fid):
        for chunk in real.split(500):
            metric.update(chunk, real=True)
        for chunk in fake.split(500):
            metric.update(chunk, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kid_mean, _ = kid.compute()
    return {"kid": float(kid_mean), "fid": float(fid.compute())}


def fit_joint_judge(a: Tensor, y_a: Tensor, b: Tensor, y_b: Tensor, recipe: Recipe = Recipe(steps=1500)) -> DigitNet:
    """The 20-class joint judge (domain x digit) trained on both domains' training images."""
    x = torch.cat([a, b])
    y = torch.cat([joint_labels(y_a, 0), joint_labels(y_b, 1)])
    return fit_classifier(lambda: DigitNet(a.shape[1], num_classes=20, width=16, feature_dim=64), x, y, recipe)


@dataclass(frozen=True)
class Split:
    """One domain's images (float in [-1, 1], as the nets read them) and labels: training and test."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def direction_metrics(
    net: nn.Module | None,
    source: Split,
    target: Split,
    judge: nn.Module,
    joint: DigitNet,
    target_index: int,
    recipe: Recipe = Recipe(),
) -> dict[str, float]:
    """Every metric of translating ``source`` into ``target`` with ``net`` (``None``: no translation, the
    reference): ``judge`` (target judge on translated test), ``tot`` (train on translated source train, test on
    real target test), ``joint`` / ``real`` (joint judge), ``kid`` / ``fid`` (joint-judge features, translated
    source test vs target test)."""
    test = translate(net, source.test_x)
    out = {"judge": accuracy(predict(judge, test), source.test_y)}
    out["tot"] = train_on_translated(
        translate(net, source.train_x), source.train_y, target.test_x, target.test_y, recipe
    )
    out.update(joint_rates(predict(joint, test), source.test_y, target_index))
    out.update(distribution_distances(ClassifierFeatures(joint), target.test_x, test))
    return out


def reference_metrics(
    source: Split, target: Split, judge: nn.Module, joint: DigitNet, target_index: int, recipe: Recipe = Recipe()
) -> dict[str, float]:
    """The reference rows of a direction: ``*_src`` (no translation: ``direction_metrics`` of the identity),
    ``judge_own`` (the judge on its own domain's test images) and ``informative`` (:func:`judge_informative`),
    ``tot_oracle`` (trained on target train) and ``tot_informative`` (:func:`probe_informative`), ``kid_train`` /
    ``fid_train`` (a target-train sample of the test
    set's size vs target test), ``joint_own`` / ``real_own`` (joint judge on target test)."""
    out = {
        f"{k}_src": v for k, v in direction_metrics(None, source, target, judge, joint, target_index, recipe).items()
    }
    out["judge_own"] = accuracy(predict(judge, target.test_x), target.test_y)
    out["informative"] = float(
        judge_informative(out["judge_src"], out["judge_own"], len(source.test_y), len(target.test_y))
    )
    out["tot_oracle"] = train_on_translated(target.train_x, target.train_y, target.test_x, target.test_y, recipe)
    out["tot_informative"] = float(probe_informative(out["tot_src"], out["tot_oracle"], len(target.test_y)))
    pick = torch.randperm(len(target.train_x), generator=torch.Generator().manual_seed(0))[: len(target.test_x)]
    train = distribution_distances(ClassifierFeatures(joint), target.test_x, target.train_x[pick])
    out.update(kid_train=train["kid"], fid_train=train["fid"])
    own = joint_rates(predict(joint, target.test_x), target.test_y, target_index)
    out.update(joint_own=own["joint"], real_own=own["real"])
    return out


def robustness_metrics(
    net: nn.Module, source: Split, joint: DigitNet, target_index: int, kinds: tuple[str, ...] = KINDS, seed: int = 0
) -> dict[str, float]:
    """The joint judge's (target domain, right digit) rate of ``net`` on corrupted source test images, per
    corruption and severity 1-3 (``rob_<kind>_<severity>``), at severity 0 (``rob_clean``) and averaged over every
    corruption and severity (``rob_mean``, the common-corruption summary). Corruptions draw from ``seed`` only:
    every net is tested on the same corrupted images."""

    def rate(x: Tensor) -> float:
        return joint_rates(predict(joint, translate(net, x)), source.test_y, target_index)["joint"]

    out = {"rob_clean": rate(source.test_x)}
    for kind in kinds:
        for severity in (1, 2, 3):
            out[f"rob_{kind}_{severity}"] = rate(Corruption(kind, severity, seed)(source.test_x))
    out["rob_mean"] = sum(v for k, v in out.items() if k != "rob_clean") / (3 * len(kinds))
    return out


def area_under_curve(steps: list[float], values: list[float]) -> float:
    """Trapezoidal area under ``values`` over ``steps``, divided by the step range: the curve's mean level."""
    if len(steps) != len(values) or len(steps) < 2:
        raise ValueError(f"area_under_curve needs >= 2 points with steps, got {len(steps)} steps, {len(values)} values")
    area = sum((s1 - s0) * (v0 + v1) / 2 for s0, s1, v0, v1 in zip(steps, steps[1:], values, values[1:]))
    return area / (steps[-1] - steps[0])


def collapsed(values: list[float], baseline: float, margin: float = 0.05) -> bool:
    """Whether a curve fell back to ``baseline`` (the no-translation value) or below after having risen above
    ``baseline + margin``."""
    risen = False
    for v in values:
        if v >= baseline + margin:
            risen = True
        elif risen and v <= baseline:
            return True
    return False
