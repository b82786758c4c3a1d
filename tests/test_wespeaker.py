"""WeSpeaker ResNet34 adapter: the published folder layout loads (training head ignored), the front-end is
WeSpeaker's (PCM16 scale, Kaldi fbank with a Hamming window, CMN), gradients reach the waveform, bad folders are
named; and, only where the ``wespeaker`` package imports (it is not on PyPI), equality with its own ResNet34."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi
import yaml

from nets.speaker.wespeaker import WeSpeakerResNet, WeSpeakerResNet34

SMALL = {"m_channels": 4, "feat_dim": 16, "embed_dim": 8}


def _config(**model_args) -> dict:
    """WeSpeaker's config.yaml of voxceleb_resnet34, the parts the adapter reads (sizes as given)."""
    return {
        "model": "ResNet34",
        "model_args": {"feat_dim": 80, "embed_dim": 256, "pooling_func": "TSTP", "two_emb_layer": False, **model_args},
        "dataset_args": {
            "fbank_args": {
                "num_mel_bins": model_args.get("feat_dim", 80),
                "frame_shift": 10,
                "frame_length": 25,
                "dither": 1.0,
            },
            "cmvn_args": {"norm_mean": True, "norm_var": False},
        },
    }


def _randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return net.eval()


def write_folder(folder: Path, net: torch.nn.Module, config: dict) -> Path:
    """``avg_model.pt`` (with the AAM ``projection.weight`` WeSpeaker keeps in it) and ``config.yaml``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {**net.state_dict(), "projection.weight": torch.randn(30, config["model_args"]["embed_dim"])}
    torch.save(state, folder / "avg_model.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture
def small(tmp_path) -> tuple[Path, WeSpeakerResNet]:
    torch.manual_seed(0)
    net = _randomise(WeSpeakerResNet((3, 4, 6, 3), **SMALL))
    return write_folder(tmp_path / "resnet34", net, _config(**SMALL)), net


def _pcm16(rows: int, samples: int, seed: int = 1) -> torch.Tensor:
    """Voiced-like PCM16: harmonics of a random pitch plus noise (tones make the window shape matter)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(samples) / 16000
    pitch = 100 + 100 * torch.rand(rows, 1, generator=g)
    tones = sum(torch.sin(2 * torch.pi * k * pitch * t) / k for k in range(1, 8))
    return (4000 * tones + 300 * torch.randn(rows, samples, generator=g)).round().clamp(-32768, 32767)


def test_embed_is_wespeakers_pipeline(small):
    folder, net = small
    adapter = WeSpeakerResNet34(str(folder))
    assert adapter.embedding_dim == 8 and not adapter.training
    for key, value in net.state_dict().items():  # every saved parameter arrived (the head was dropped)
        assert torch.equal(adapter.model.state_dict()[key], value), key
    pcm = _pcm16(2, 12345)

    def fbank(row: torch.Tensor, window: str) -> torch.Tensor:  # Speaker.compute_features: PCM16 values, CMN
        feat = kaldi.fbank(
            row[None], num_mel_bins=16, frame_length=25, frame_shift=10, sample_frequency=16000, window_type=window
        )
        return feat - feat.mean(0)

    expected = torch.stack([fbank(row, "hamming") for row in pcm])
    with torch.no_grad():
        feats = adapter.frontend(pcm / 32768)  # the waveform in [-1, 1], as soundfile reads PCM16
        assert feats.shape == expected.shape and (feats - expected).abs().max() < 1e-4
        # Kaldi's default (povey) window, which older WeSpeaker CLIs used, is told apart: the check can fail
        assert (feats[0] - fbank(pcm[0], "povey")).abs().max() > 1e-2
        assert (adapter.embed(pcm / 32768) - net(expected)).abs().max() < 1e-5


def test_gradients_reach_the_waveform(small):
    adapter = WeSpeakerResNet34(str(small[0]))
    enrol = _pcm16(1, 8000) / 32768
    test = (_pcm16(1, 9000, seed=2) / 32768).requires_grad_(True)
    adapter.score(enrol, test).sum().backward()
    assert test.grad is not None and torch.isfinite(test.grad).all() and test.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "ResNet50"}, r"model 'ResNet50' .* not supported"),
        ({"model_args": {**SMALL, "pooling_func": "ASTP"}}, r"pooling 'ASTP' .* not supported"),
        ({"model_args": {**SMALL, "embed_dim": 9}}, r"(?s)avg_model.pt: does not fit .*seg_1"),
        ({"dataset_args": {"fbank_args": {"num_mel_bins": 80}}}, r"num_mel_bins=80 differs from .*feat_dim=16"),
    ],
)
def test_bad_config_is_named(small, change, message):
    folder, _ = small
    config = {**_config(**SMALL), **change}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=message):
        WeSpeakerResNet34(str(folder))


def test_missing_and_unsafe_files_are_refused(small, tmp_path):
    with pytest.raises(FileNotFoundError, match="WeSpeaker model folder .* does not exist"):
        WeSpeakerResNet34(str(tmp_path / "nowhere"))
    folder, _ = small
    state = torch.load(folder / "avg_model.pt", weights_only=True)
    del state["seg_1.bias"]
    torch.save(state, folder / "avg_model.pt")
    with pytest.raises(ValueError, match=r"(?s)does not fit .*seg_1.bias"):
        WeSpeakerResNet34(str(folder))
    torch.save({**state, "code": print}, folder / "avg_model.pt")  # pickling a function: weights_only refuses
    with pytest.raises(ValueError, match="refused to load"):
        WeSpeakerResNet34(str(folder))


def test_equals_wespeaker_package(tmp_path):
    """Only where WeSpeaker is installed (from its repository; not on PyPI): its own ResNet34, full size."""
    resnet = pytest.importorskip("wespeaker.models.resnet")
    torch.manual_seed(0)
    reference = _randomise(resnet.ResNet34(feat_dim=80, embed_dim=256, pooling_func="TSTP", two_emb_layer=False))
    adapter = WeSpeakerResNet34(str(write_folder(tmp_path / "ws", reference, _config())))
    pcm = _pcm16(1, 16000)
    with torch.no_grad():
        feat = kaldi.fbank(
            pcm, num_mel_bins=80, frame_length=25, frame_shift=10, sample_frequency=16000, window_type="hamming"
        )
        expected = reference((feat - feat.mean(0))[None])[-1]
        assert (adapter.embed(pcm / 32768) - expected).abs().max() < 1e-5


def test_validate_config_scores_trials(small, tmp_path):
    """The shipped config, as the user runs it, with the random-weight folder and a tiny synthetic corpus."""
    from coadv.cli import cli_main

    config = Path(__file__).resolve().parents[1] / "configs" / "speaker" / "wespeaker_resnet34.yaml"
    cli = cli_main(
        [
            "validate",
            "-c",
            str(config),
            f"--model.init_args.victim.init_args.source={small[0]}",
            f"--trainer.default_root_dir={tmp_path}",
            f"--data.init_args.root={tmp_path}/vox",
            "--data.init_args.trial_list=veri_test.txt",
            "--data.init_args.synthesize=true",
            "--data.init_args.synth_speakers=6",
            "--data.init_args.max_trials=6",
        ]
    )
    assert isinstance(cli.model.victim, WeSpeakerResNet34) and cli.model.victim.embedding_dim == 8
    metrics = cli.trainer.callback_metrics
    assert 0 <= metrics["val/eer"] <= 1 and -1 <= metrics["val/threshold"] <= 1
    assert len(cli.model.last_scores[0]) == 6
