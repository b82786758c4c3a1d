"""i-vector training streamed from sufficient statistics: UBM and total-variability EM over batches equal full-batch
EM on the same data from the same start, and IVectorSystem reads its training files one batch at a time."""

import math

import pytest
import torch
from helpers import quiet_trainer

from datamodules import VoxCelebDataModule
from datamodules.audio import read_wave
from datamodules.synth_speech import write_corpus
from lightning_modules import IVectorSystem
from nets.speaker import IVector

BUFFERS = ("log_weights", "means", "variances", "T", "center", "lda")


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> bool:
    return bool(((a - b).abs().max() <= rtol * b.abs().max()).item())


def full_batch_ubm(model: IVector, frames: torch.Tensor, iterations: int, seed: int) -> list[float]:
    """The textbook EM on every frame at once (the former ``fit_ubm``, in float64): the reference."""
    x = frames.double()
    means = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[: model.means.shape[0]]]
    floor = 1e-3 * x.var(0)
    variances = x.var(0).expand_as(means)
    log_w = model.log_weights.double()
    history = []
    for _ in range(iterations):
        ll = torch.distributions.Normal(means, variances.sqrt()).log_prob(x[:, None]).sum(-1) + log_w  # [N, C]
        history.append(float(ll.logsumexp(-1).mean()))
        gamma = ll.softmax(-1)
        n = gamma.sum(0) + 1e-6
        means = gamma.T @ x / n[:, None]
        variances = (gamma.T @ (x * x) / n[:, None] - means * means).clamp(min=floor)
        log_w = (n / n.sum()).log()
    model.means.copy_(means), model.variances.copy_(variances), model.log_weights.copy_(log_w)
    return history


def test_one_component_ubm_is_the_mean_and_variance_of_the_frames():
    model = IVector(n_components=1, rank=2, n_mfcc=1)  # frames of 3 dims: static, delta, delta-delta
    x = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 1.0], [4.0, 6.0, 2.0]])
    chunks = [x[:1], x[1:1], x[1:]]  # an empty chunk among them
    history = model.fit_ubm(chunks, iterations=2, generator=torch.Generator().manual_seed(0))
    start = x[int(torch.randperm(3, generator=torch.Generator().manual_seed(0))[0])]
    first = torch.distributions.Normal(start, torch.tensor([4.0, 12.0, 1.0]).sqrt()).log_prob(x).sum(-1).mean()
    assert history[0] == pytest.approx(float(first), rel=1e-6)  # unbiased variances 4, 12, 1 to start
    assert torch.allclose(model.means, torch.tensor([[2.0, 2.0, 1.0]]), rtol=1e-5)
    assert torch.allclose(model.variances, torch.tensor([[8 / 3, 8.0, 2 / 3]]), rtol=1e-5)  # biased: the ML fit
    assert model.log_weights.item() == pytest.approx(0.0, abs=1e-6)
    assert history[1] == pytest.approx(-1.5 * math.log(2 * math.pi) - 0.5 * math.log(8 / 3 * 8 * 2 / 3) - 1.5)


def utterances(count: int = 9, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Noisy tones of three "speakers" (pitch), lengths 0.3 to 0.7 s."""
    g = torch.Generator().manual_seed(seed)
    waves = []
    for i in range(count):
        n = 4800 + int(torch.randint(0, 6400, (), generator=g))
        t = torch.arange(n) / 16000
        waves.append(0.3 * torch.sin(2 * math.pi * (120 + 70 * (i % 3)) * t) + 0.05 * torch.randn(n, generator=g))
    return waves, torch.arange(count) % 3


def test_streaming_ubm_equals_full_batch_em():
    model = IVector(n_components=6, rank=4, n_mfcc=8)
    reference = IVector(n_components=6, rank=4, n_mfcc=8)
    frames = [model.frames(w[None])[0] for w in utterances()[0]]
    chunks = [torch.cat(frames[:1]), torch.cat(frames[1:4]), frames[4][:0], torch.cat(frames[4:])]
    history = model.fit_ubm(chunks, iterations=4, generator=torch.Generator().manual_seed(3))
    expected = full_batch_ubm(reference, torch.cat(frames), 4, seed=3)
    assert history == pytest.approx(expected, rel=1e-6) and history[-1] > history[0]
    for name in ("means", "variances", "log_weights"):
        assert close(getattr(model, name), getattr(reference, name)), name


def full_batch_tv(model: IVector, n: torch.Tensor, f: torch.Tensor, iterations: int) -> torch.Tensor:
    """The former ``fit_tv`` on every utterance at once (float64): the reference."""
    t = model.T.double()
    for _ in range(iterations):
        precision = torch.eye(t.shape[2], dtype=t.dtype) + torch.einsum("bc,cdr,cds->brs", n, t, t)
        w = torch.linalg.solve(precision, torch.einsum("cdr,bcd->br", t, f).unsqueeze(-1)).squeeze(-1)
        ww = torch.linalg.inv(precision) + w.unsqueeze(-1) * w.unsqueeze(-2)
        a = torch.einsum("bc,brs->crs", n, ww)
        c = torch.einsum("bcd,br->cdr", f, w)
        t = torch.linalg.solve(a, c.transpose(1, 2)).transpose(1, 2)
    return t


def test_streaming_tv_equals_full_batch_em():
    model = IVector(n_components=4, rank=3, n_mfcc=8)
    frames = [model.frames(w[None])[0] for w in utterances()[0]]
    model.fit_ubm(torch.cat(frames), iterations=3, generator=torch.Generator().manual_seed(0))
    n, f = model.utterance_statistics(frames)
    assert torch.allclose(n.sum(1), torch.tensor([len(x) for x in frames], dtype=n.dtype))  # gamma sums to 1
    expected = full_batch_tv(model, n, f, iterations=3)
    model.fit_tv([(n[:1], f[:1]), (n[1:5], f[1:5]), (n[5:], f[5:])], iterations=3)
    assert close(model.T.double(), expected)


def test_fit_gives_the_same_model_for_any_batch_size():
    waves, speakers = utterances(count=12)
    models = []
    for size in (12, 5, 1):
        torch.manual_seed(0)  # the same random T to start
        model = IVector(n_components=4, rank=5, n_mfcc=8, lda_dim=2)
        batches = [(waves[i : i + size], speakers[i : i + size]) for i in range(0, 12, size)]
        model.fit(batches, ubm_iterations=3, tv_iterations=2)
        models.append(model)
    for model in models[1:]:
        for name in BUFFERS:
            a = getattr(model, name)
            b = getattr(models[0], name)
            if name == "lda":  # eigenvectors are defined up to sign: align each column before comparing
                b = b * torch.sign((a * b).sum(0, keepdim=True))
            assert close(a, b), name


def test_ivector_system_reads_its_training_files_one_batch_at_a_time(tmp_path):
    write_corpus(tmp_path, n_speakers=8, videos=1, utts_per_video=3, seconds=(0.4, 0.9), n_trials=8, seed=1)
    dm = VoxCelebDataModule(root=str(tmp_path), batch_size=4)
    torch.manual_seed(0)
    model = IVectorSystem(IVector(n_components=4, rank=5, n_mfcc=8, lda_dim=2), 3, 2, em_batch_size=4)
    seen = []
    log_joint = model.victim._log_joint
    model.victim._log_joint = lambda x: seen.append(len(x)) or log_joint(x)
    quiet_trainer(max_epochs=1, limit_train_batches=1, enable_checkpointing=False).fit(model, dm)
    lengths = sorted(len(model.victim.frames(read_wave(dm.root / "wav" / f)[None])[0]) for f in dm.train_files)
    assert len(lengths) == 18 and max(seen) <= sum(lengths[-4:]) < sum(lengths)  # one batch of 4 at most
    torch.manual_seed(0)
    in_memory = IVector(n_components=4, rank=5, n_mfcc=8, lda_dim=2)
    index = {s: i for i, s in enumerate(dm.speakers)}
    waves = [read_wave(dm.root / "wav" / f) for f in dm.train_files]
    in_memory.fit([(waves, torch.tensor([index[f.split("/")[0]] for f in dm.train_files]))], 3, 2)
    for name in BUFFERS:
        assert close(getattr(model.victim, name), getattr(in_memory, name)), name
