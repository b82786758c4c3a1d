"""Translation quality with per-domain digit classifiers: accuracy of translated images and FID on features."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance

from nets.classifier import ClassifierFeatures, DigitNet, load_digit_net


def weights_digest(net: nn.Module) -> str:
    """A short hash of a net's state dict (names and exact values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class TranslationEvaluator(nn.Module):
    """Accuracy of ``classifier_b`` on ``G(a)`` with ``a``'s labels (``acc_a2b``), of ``classifier_a`` on ``F(b)``
    (``acc_b2a``), and FID between translated and real test images of each domain, on the judging classifier's
    penultimate features (torchmetrics FID with a custom extractor: no Inception download).

    The judges are read from ``classifier_a`` / ``classifier_b`` in ``setup`` (not ``__init__``, so a config validates
    without them) and are left out of the translation module's state dict: the configured paths are the one source
    of the judges, so a changed path takes effect on resume or reload and a missing file fails naming it.
    ``fingerprints`` (path and weight digest of each judge) travel in translation checkpoints instead; evaluating
    with judges other than those a checkpoint's numbers were measured with warns (``expect``).

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
        self.digests: dict[str, str] = {}
        self.logged_with: dict[str, dict[str, str]] = {}  # fingerprints a checkpoint's numbers were measured with

    @property
    def enabled(self) -> bool:
        return len(self.judges) == 2

    def setup(self) -> None:
        """Load the judges from their checkpoints (once)."""
        if self.enabled or None in self.paths.values():
            return
        for domain, path in self.paths.items():
            try:
                net = load_digit_net(path)
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"classifier_{domain}: {error}. Translation checkpoints do not carry the judges: pass their paths "
                    f"(--model.init_args.classifier_{domain}=... or load_from_checkpoint(path, classifier_{domain}=...))"
                ) from error
            self._add_judge(domain, net)
        self._compare_judges()

    def _add_judge(self, domain: str, net: DigitNet) -> None:
        self.judges[domain] = net
        self.digests[domain] = weights_digest(net)
        self.acc[domain] = MulticlassAccuracy(net.config["num_classes"], average="micro")
        self.fid[domain] = FrechetInceptionDistance(feature=ClassifierFeatures(net), reset_real_features=True)

    def fingerprints(self) -> dict[str, dict[str, str]]:
        """``{domain: {"path", "digest"}}`` of the loaded judges (empty when evaluation is off)."""
        return {domain: {"path": str(self.paths[domain]), "digest": digest} for domain, digest in self.digests.items()}

    def expect(self, fingerprints: dict[str, dict[str, str]] | None) -> None:
        """Judges a checkpoint's logged numbers were measured with: warn (now or in ``setup``) if ours differ."""
        self.logged_with = dict(fingerprints or {})
        self._compare_judges()

    def _compare_judges(self) -> None:
        for domain, saved in self.logged_with.items():
            if domain in self.digests and saved.get("digest") != self.digests[domain]:
                rank_zero_warn(
                    f"classifier_{domain}={self.paths[domain]!r} holds other weights than the judge this checkpoint "
                    f"was evaluated with ({saved.get('path')!r}): its val/test numbers, and a ModelCheckpoint's best "
                    "score, are not comparable with the ones computed now"
                )

    def state_dict(self, *args: Any, destination: Any = None, **kwargs: Any) -> Any:
        """Nothing: the judges come from their files (``setup``), the metric states live for one epoch."""
        return OrderedDict() if destination is None else destination

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            del state_dict[key]  # judges stored by older checkpoints: the configured files win
        state_dict.update(nn.Module.state_dict(self, prefix=prefix, keep_vars=True))  # ours, loaded onto themselves
        super()._load_from_state_dict(state_dict, prefix, *args)

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
