"""Translation quality with per-domain digit classifiers: accuracy of translated images and FID on features."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance

from nets.classifier import ClassifierFeatures, DigitNet, load_digit_net


class TranslationEvaluator(nn.Module):
    """Accuracy of ``classifier_b`` on ``G(a)`` with ``a``'s labels (``acc_a2b``), of ``classifier_a`` on ``F(b)``
    (``acc_b2a``), and FID between translated and real test images of each domain, on the judging classifier's
    penultimate features (torchmetrics FID with a custom extractor: no Inception download).

    Checkpoints are read in ``setup`` (not ``__init__``) so a config can be validated without them. The judges'
    weights are part of the translation module's state dict: ``judge_configs`` / ``build_judges`` let a checkpoint
    rebuild them without the classifier files.

    Args:
        classifier_a: DigitClassifier checkpoint judging domain A images (``None`` with ``classifier_b``: off).
        classifier_b: DigitClassifier checkpoint judging domain B images.
    """

    def __init__(self, classifier_a: str | None, classifier_b: str | None) -> None:
        super().__init__()
        if (classifier_a is None) != (classifier_b is None):
            raise ValueError(
                f"classifier_a and classifier_b are set together or not at all, got classifier_a={classifier_a!r} "
                f"and classifier_b={classifier_b!r}"
            )
        self.paths = {"a": classifier_a, "b": classifier_b}
        self.judges = nn.ModuleDict()
        self.acc = nn.ModuleDict()
        self.fid = nn.ModuleDict()

    @property
    def enabled(self) -> bool:
        return len(self.judges) == 2

    def setup(self) -> None:
        """Load the judges from their checkpoints (unless already built, e.g. by ``build_judges``)."""
        if self.enabled or None in self.paths.values():
            return
        for domain, path in self.paths.items():
            self._add_judge(domain, load_digit_net(path))

    def _add_judge(self, domain: str, net: DigitNet) -> None:
        self.judges[domain] = net
        self.acc[domain] = MulticlassAccuracy(net.config["num_classes"], average="micro")
        self.fid[domain] = FrechetInceptionDistance(feature=ClassifierFeatures(net), reset_real_features=True)

    def judge_configs(self) -> dict[str, dict]:
        """``{domain: DigitNet arguments}`` of the judges (empty when evaluation is off)."""
        return {domain: dict(net.config) for domain, net in self.judges.items()}

    def build_judges(self, configs: dict[str, dict]) -> None:
        """Judges with the architecture of ``configs`` (frozen); their weights come from a state dict next."""
        for domain, config in configs.items():
            self._add_judge(domain, DigitNet(**config).eval().requires_grad_(False))

    def train(self, mode: bool = True) -> TranslationEvaluator:
        return super().train(False)  # judges stay in eval mode (frozen batch-norm statistics)

    @torch.no_grad()
    def update(self, source: str, real: Tensor, translated: Tensor, labels: Tensor) -> None:
        """``real`` images of domain ``source`` and their translations into the other domain."""
        target = "b" if source == "a" else "a"
        self.acc[target].update(self.judges[target](translated), labels)
        self.fid[target].update(translated, real=False)
        self.fid[source].update(real, real=True)

    def reset(self) -> None:
        """Fresh states, created under the current grad mode (validate runs in inference mode, fit's
        validation does not; a state made in one cannot be updated in place in the other)."""
        for metric in (*self.acc.values(), *self.fid.values()):
            metric.reset()

    def compute(self) -> dict[str, Tensor]:
        out = {
            "acc_a2b": self.acc["b"].compute(),
            "acc_b2a": self.acc["a"].compute(),
            "fid_a": self.fid["a"].compute(),
            "fid_b": self.fid["b"].compute(),
        }
        self.reset()
        out["acc_mean"] = (out["acc_a2b"] + out["acc_b2a"]) / 2
        return out
