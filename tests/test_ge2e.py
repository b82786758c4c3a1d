"""The pretrained GE2E victim (Resemblyzer's d-vector): partial windows by hand, the contract on a weights file of
our own (no extra needed), and exactness against ``VoiceEncoder.embed_utterance`` where the extra is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import QUIET

from datamodules.audio import read_wave
from datamodules.librispeech import EMBEDDED
from nets.speaker import GE2EResemblyzer, SpeakerVictim
from nets.speaker import ge2e as ge2e_module
from nets.speaker.ge2e import partial_slices

HAVE_RESEMBLYZER = importlib.util.find_spec("resemblyzer") is not None
needs_extra = pytest.mark.skipif(not HAVE_RESEMBLYZER, reason="needs pip install 'coadv[resemblyzer]' (make test-all)")


def test_partial_windows_by_hand():
    # 1 s: ceil(16001 / 160) = 101 frames < 160: one window, kept whatever its coverage (0.625)
    assert partial_slices(16000, 1.3, 0.75) == [(0, 160)]
    # 2.5 s: 251 frames, step round(16000 / 1.3 / 160) = 77; starts 0, 77, 154; the last covers
    # (40000 - 154 * 160) / 25600 = 0.6 < 0.75 of its window: dropped
    assert partial_slices(40000, 1.3, 0.75) == [(0, 160), (77, 237)]
    assert partial_slices(40000, 1.3, 0.5) == [(0, 160), (77, 237), (154, 314)]


@pytest.fixture
def random_weights(tmp_path) -> Path:
    """A weights file in Resemblyzer's layout with random values (plus a key the victim ignores)."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
    linear = torch.nn.Linear(256, 256)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state.update({f"linear.{k}": v for k, v in linear.state_dict().items()})
    state["similarity_weight"] = torch.tensor([10.0])
    path = tmp_path / "encoder.pt"
    torch.save({"model_state": state, "step": 1}, path)
    return path


def test_contract_on_our_own_weights(random_weights):
    victim = GE2EResemblyzer(weights=str(random_weights))
    assert isinstance(victim, SpeakerVictim) and not victim.training
    torch.manual_seed(1)
    wave = (torch.rand(3, 30000) - 0.5) * 0.2
    emb = victim.embed(wave)
    assert emb.shape == (3, 256) and torch.allclose(emb.norm(dim=1), torch.ones(3))
    alone = torch.cat([victim.embed(w[None]) for w in wave])
    assert (emb - alone).abs().max() < 1e-6  # a batch gives each utterance its own embedding
    x = wave[:1].clone().requires_grad_(True)
    victim.score(wave[1:2], x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the waveform through the mel front-end
    assert victim.embed(wave[:, :8000]).shape == (3, 256)  # shorter than one window: zero-padded


def test_bad_weights_files_are_named(tmp_path, random_weights):
    with pytest.raises(FileNotFoundError, match="absent.pt does not exist"):
        GE2EResemblyzer(weights=str(tmp_path / "absent.pt"))
    torch.save({"state": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other.pt: expected Resemblyzer's \{'model_state'"):
        GE2EResemblyzer(weights=str(tmp_path / "other.pt"))
    torch.save({"model_state": {"lstm.weight_ih_l0": torch.zeros(3, 3)}}, tmp_path / "small.pt")
    with pytest.raises(ValueError, match="small.pt: does not fit the GE2E LSTM"):
        GE2EResemblyzer(weights=str(tmp_path / "small.pt"))
    with pytest.raises(ValueError, match="rate=0.5: expected partials per second"):
        GE2EResemblyzer(weights=str(random_weights), rate=0.5)


def test_missing_package_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(ge2e_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'coadv\[resemblyzer\]'"):
        GE2EResemblyzer()


@needs_extra
def test_embedding_equals_resemblyzer_embed_utterance():
    from resemblyzer import VoiceEncoder

    reference = VoiceEncoder("cpu", verbose=False)
    victim = GE2EResemblyzer()
    files = sorted((EMBEDDED / "wav").glob("*/*/*.flac"))
    waves = [read_wave(f, preprocess="resemblyzer") for f in files[-6:]]
    waves += [waves[0][:12000], waves[1][:40000]]  # one window (padded); a last window dropped by min_coverage
    for wave in waves:
        expected = torch.from_numpy(reference.embed_utterance(wave.numpy()))
        with torch.no_grad():
            got = victim.embed(wave[None])[0]
        assert (got - expected).abs().max() <= 1e-5, len(wave)


@needs_extra
def test_preprocessing_is_resemblyzers_and_stays_in_the_box():
    from resemblyzer import preprocess_wav

    path = sorted((EMBEDDED / "wav").glob("*/*/*.flac"))[-1]
    raw = read_wave(path)
    out = read_wave(path, preprocess="resemblyzer")
    expected = torch.from_numpy(preprocess_wav(raw.numpy())).clamp(-1, 1)
    assert torch.equal(out, expected) and len(out) < len(raw) and out.abs().max() <= 1


@needs_extra
@pytest.mark.slow
def test_validate_prints_the_eer_and_writes_the_victim(tmp_path, monkeypatch):
    from coadv.cli import cli_main
    from lightning_modules.attack import load_victim

    monkeypatch.chdir(tmp_path)  # the config writes checkpoints/victims/ge2e.ckpt under the working folder
    cli = cli_main(["validate", "-c", "configs/speaker/ge2e.yaml", *QUIET])
    eer = float(cli.trainer.callback_metrics["val/eer"])
    assert eer < 0.03  # a victim trained at scale: 0.39 % on the 1,770 embedded trials
    victim, threshold, _ = load_victim(tmp_path / "checkpoints" / "victims" / "ge2e.ckpt")
    assert isinstance(victim, GE2EResemblyzer)
    assert threshold == pytest.approx(float(cli.trainer.callback_metrics["val/threshold"]))


@needs_extra
def test_preprocessing_that_leaves_no_audio_names_the_file(tmp_path):
    import soundfile

    path = tmp_path / "silence.flac"
    soundfile.write(path, torch.zeros(16000).numpy(), 16000)
    with pytest.raises(ValueError, match=r"silence.flac: preprocess='resemblyzer' left no audio"):
        read_wave(path, preprocess="resemblyzer")
