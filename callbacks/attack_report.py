"""Reporting of an attack run: adversarial audio, per-trial CSV, summary table, plots; files always, W&B too.

Files under ``<run dir>/attack/``:

- ``adversarial/<index>_<label>.wav``: 32-bit float, 16 kHz (a 16-bit file would quantise away perturbations of
  ρ ~ 1e-3); feature-domain attacks write ``<index>_<label>.pt`` (the adversarial MFCC frames) instead;
- ``trials.csv`` (one row per trial, ``lightning_modules.attack.COLUMNS``: success, ρ, SNR, ‖δ‖∞, PESQ and STOI
  of the adversarial utterance against the clean one (NaN without the ``perceptual`` extra or when switched off),
  iterations, gradient evaluations, wall time (trials attacked together share their group's time equally),
  scores before / after), ``summary.json``, ``summary.md`` (success rate, perturbation means, FAR on non-target
  and FRR on target trials at the clean threshold, clean and attacked; no EER after the attack);
- ``examples/<index>.png``: clean waveform with the perturbation, spectrograms of the clean, adversarial and
  perturbation signals (MFCC images for feature-domain attacks), for the first ``n_examples`` trials of rank 0;
- ``rho.png``: the distribution of ρ over successful trials.

W&B: ``attack/trials`` and ``attack/summary`` tables, the example and ρ images, clean / adversarial audio of the
examples; TensorBoard: the images.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torchvision.io import decode_png

from callbacks.common import SAMPLE_RATE, log_image, run_dir
from callbacks.markdown import markdown_table


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def example_figure(clean: Tensor, adversarial: Tensor, title: str) -> bytes:
    """Clean signal and perturbation side by side: waveforms ``[T]`` with dB spectrograms (torchaudio), or MFCC
    frames ``[N, D]`` as images."""
    plt = _pyplot()
    delta = adversarial - clean
    if clean.dim() == 2:  # feature frames
        fig, axes = plt.subplots(1, 2, figsize=(10, 3))
        for ax, image, name in zip(axes, (clean, delta), ("clean MFCC", "perturbation")):
            ax.imshow(image.T.numpy(), origin="lower", aspect="auto")
            ax.set_title(name)
            ax.set_xlabel("frame")
        fig.suptitle(title)
        return _png(fig)
    from torchaudio.transforms import AmplitudeToDB, Spectrogram

    spectrogram = torch.nn.Sequential(Spectrogram(n_fft=512, hop_length=160), AmplitudeToDB(top_db=100))
    fig, axes = plt.subplots(2, 2, figsize=(11, 5.5))
    seconds = np.arange(len(clean)) / SAMPLE_RATE
    axes[0, 0].plot(seconds, clean.numpy(), lw=0.4, color="tab:blue")
    axes[0, 0].set_ylabel("clean", color="tab:blue")
    axes[0, 0].set_xlabel("s")
    twin = axes[0, 0].twinx()  # the perturbation is orders of magnitude smaller: its own scale
    twin.plot(seconds, delta.numpy(), lw=0.4, color="tab:orange")
    twin.set_ylabel("perturbation", color="tab:orange")
    with torch.no_grad():
        images = [spectrogram(x) for x in (clean, adversarial, delta)]
    low = min(float(im.min()) for im in images)
    high = max(float(im.max()) for im in images)
    for ax, image, name in zip((axes[0, 1], axes[1, 0], axes[1, 1]), images, ("clean", "adversarial", "perturbation")):
        extent = (0, len(clean) / SAMPLE_RATE, 0, SAMPLE_RATE / 2000)
        ax.imshow(image.numpy(), origin="lower", aspect="auto", vmin=low, vmax=high, extent=extent)
        ax.set_title(f"{name} (dB)")
        ax.set_xlabel("s")
        ax.set_ylabel("kHz")
    fig.suptitle(title)
    return _png(fig)


def _lower_median(v: np.ndarray) -> float:
    """x_(ceil(n/2)): the median every attack table uses."""
    return float(np.sort(v)[(len(v) - 1) // 2])


def rho_figure(rho: dict[str, np.ndarray], title: str) -> bytes:
    """log10 ρ over successful trials: a histogram for one attack, one box per attack for several."""
    plt = _pyplot()
    values = {name: np.log10(v[v > 0]) for name, v in rho.items() if (v > 0).any()}
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.35 * len(rho)) if len(rho) > 1 else (6, 3.4))
    label = "log10 ρ = log10 ‖δ‖₂ / ‖x‖₂ (successful trials)"
    if not values:
        ax.text(0.5, 0.5, "no successful trials", ha="center", va="center", transform=ax.transAxes)
    elif len(rho) > 1:
        names = list(values)
        ax.boxplot([values[n] for n in names], vert=False, whis=(5, 95), showfliers=False)
        ax.set_yticks(range(1, len(names) + 1), [f"{n} (median {10 ** _lower_median(values[n]):.2e})" for n in names])
        ax.invert_yaxis()
        ax.set_xlabel(label + ", whiskers 5-95 %")
    else:
        for name, v in values.items():
            ax.hist(v, bins=40, alpha=0.7, label=f"{name} (median {10 ** _lower_median(v):.2e})")
            ax.legend(fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("trials")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def _as_image(png: bytes) -> Tensor:
    return decode_png(torch.frombuffer(bytearray(png), dtype=torch.uint8))[:3].float() / 255


class AttackReport(L.Callback):
    """Writes and logs what an ``AdversarialAttack`` test (or predict) run produced.

    Args:
        n_examples: trials drawn (waveform + spectrogram) and logged as audio.
        save_audio: write every adversarial utterance.
    """

    def __init__(self, n_examples: int = 4, save_audio: bool = True) -> None:
        self.n_examples = n_examples
        self.save_audio = save_audio
        self._examples: list[tuple[int, int, Tensor, Tensor]] = []

    @staticmethod
    def folder(trainer: L.Trainer) -> Path:
        return run_dir(trainer) / "attack"

    def _start(self) -> None:
        self._examples = []

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start()

    def _batch(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: dict) -> None:
        """Save each trial's adversarial signal (audio as .wav, feature frames as .pt) and keep the first examples."""
        import soundfile

        folder = self.folder(trainer) / "adversarial"
        folder.mkdir(parents=True, exist_ok=True)
        trials = outputs["trials"]
        for i, (clean, adversarial) in enumerate(zip(outputs["clean"], outputs["adversarial"])):
            index = int(trials["index"][i])
            label = int(trials["label"][i])
            name = f"{index:05d}_{label}"
            if self.save_audio and pl_module.attack.audible:
                soundfile.write(folder / f"{name}.wav", adversarial.numpy(), SAMPLE_RATE, "FLOAT")
            elif self.save_audio:
                torch.save(adversarial, folder / f"{name}.pt")
            if trainer.is_global_zero and len(self._examples) < self.n_examples:
                self._examples.append((index, label, clean, adversarial))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(trainer, pl_module, outputs)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(trainer, pl_module, outputs)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._write_examples(trainer, pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or pl_module.trials is None:
            return
        folder = self.folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        col = pl_module.trials
        columns = list(col)
        values = zip(*(col[c].tolist() for c in columns))
        rows = [[int(v) if c in ("index", "label") else float(v) for c, v in zip(columns, row)] for row in values]
        with open(folder / "trials.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
        name = type(pl_module.attack).__name__
        victim = type(pl_module.victim).__name__
        summary = {"attack": name, "victim": victim, "domain": pl_module.domain, "threshold": pl_module.threshold}
        summary = {**summary, "checkpoint": str(pl_module.checkpoint), **pl_module.summary}
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (folder / "summary.md").write_text(markdown_table(list(summary), [list(summary.values())]))
        won = (col["success"] > 0) & (col["clean_correct"] > 0)
        png = rho_figure({name: col["rho"][won].numpy()}, f"{name} vs {victim}")
        (folder / "rho.png").write_bytes(png)
        step = trainer.global_step
        log_image(trainer, "attack/rho", _as_image(png), step)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table("attack/trials", columns=columns, data=rows, step=step)
                logger.log_table("attack/summary", columns=list(summary), data=[list(summary.values())], step=step)
        self._write_examples(trainer, pl_module)

    def _write_examples(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        folder = self.folder(trainer) / "examples"
        folder.mkdir(parents=True, exist_ok=True)
        name = type(pl_module.attack).__name__
        for index, label, clean, adversarial in self._examples:
            kind = "target" if label == 1 else "non-target"
            png = example_figure(clean, adversarial, f"{name}: trial {index} ({kind})")
            (folder / f"{index:05d}.png").write_bytes(png)
            log_image(trainer, f"attack/example_{index}", _as_image(png), trainer.global_step)
            if not pl_module.attack.audible:
                continue
            audio = [clean.numpy(), adversarial.numpy()]
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    rates = [SAMPLE_RATE] * 2
                    logger.log_audio(
                        f"attack/audio_{index}", audio, caption=["clean", "adversarial"], sample_rate=rates
                    )
