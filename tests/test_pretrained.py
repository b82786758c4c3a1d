"""Pretrained public victims: SpeechBrain's ECAPA-TDNN adapter equals SpeechBrain's own inference path (random
weights saved in the published layout, loaded offline), gradients reach the waveform, and nothing in a model
folder can run code (pickles refused by weights_only, HyperPyYAML tags never executed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from nets.speaker.pretrained import SpeechBrainECAPA, load_weights

ROOT = Path(__file__).resolve().parents[1]
# The published speechbrain/spkrec-ecapa-voxceleb hyperparams.yaml with small channels, n_mels and classes (the
# real one: n_mels 80, channels [1024, 1024, 1024, 1024, 3072], attention 128, lin_neurons 192, 7205 speakers).
HYPERPARAMS = """\
# Model: ECAPA big for Speaker verification (random-weight stand-in, small sizes)
n_mels: 24
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
out_n_neurons: 5

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [32, 32, 32, 32, 96]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    se_channels: 16
    lin_neurons: 12

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 12
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def _randomise_batch_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine terms, so that eval-mode normalisation matters."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=generator))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=generator))


def write_speechbrain_folder(folder: Path, seed: int = 0) -> Path:
    """SpeechBrain's own modules with random weights, saved as the published folder (what SpeechBrain saves)."""
    from speechbrain.dataio.encoder import CategoricalEncoder
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
    from speechbrain.processing.features import InputNormalization

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ECAPA_TDNN(24, channels=[32, 32, 32, 32, 96], attention_channels=16, se_channels=16, lin_neurons=12)
    _randomise_batch_norms(model, generator)
    torch.save(model.state_dict(), folder / "embedding_model.ckpt")
    torch.save(Classifier(12, out_neurons=5).state_dict(), folder / "classifier.ckpt")
    norm = InputNormalization(norm_type="global", std_norm=False)
    norm.glob_mean = torch.randn(12, generator=generator)
    norm.glob_std = torch.ones(12)
    norm.count = 100
    norm._save(folder / "mean_var_norm_emb.ckpt")
    encoder = CategoricalEncoder()
    encoder.update_from_iterable([f"id1000{i}" for i in range(5)])
    encoder.save(folder / "label_encoder.txt")
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS)
    return folder


@pytest.fixture(scope="module")
def sb_folder(tmp_path_factory) -> Path:
    pytest.importorskip("speechbrain")
    return write_speechbrain_folder(tmp_path_factory.mktemp("spkrec-ecapa-voxceleb"))


def _speechbrain_inference(folder: Path, savedir: Path, monkeypatch):
    """SpeechBrain's own inference class, loaded offline from the local folder."""
    from speechbrain.inference.speaker import SpeakerRecognition

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any attempt to reach the Hub fails instead of downloading
    # the published yaml names the Hub repo in pretrained_path: point it at the folder, as offline users must
    return SpeakerRecognition.from_hparams(
        source=str(folder), savedir=str(savedir), overrides={"pretrained_path": str(folder)}, run_opts={"device": "cpu"}
    )


def _waves(lengths: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return [(0.3 * torch.randn(n, generator=g)).clamp(-1, 1) for n in lengths]


@pytest.mark.parametrize("normalize", [False, True])
def test_embed_equals_speechbrain_encode_batch(sb_folder, tmp_path, monkeypatch, normalize):
    reference = _speechbrain_inference(sb_folder, tmp_path / "sb", monkeypatch)
    adapter = SpeechBrainECAPA(str(sb_folder), normalize=normalize)
    assert adapter.embedding_dim == 12 and not adapter.training
    batch = torch.stack(_waves((16000, 16000, 16000)))
    odd = _waves((12345,), seed=2)[0][None]  # not a multiple of the hop, a single row
    with torch.no_grad():
        for wave in (batch, odd):
            expected = reference.encode_batch(wave, normalize=normalize)[:, 0]
            got = adapter.embed(wave)
            assert got.shape == expected.shape == (len(wave), 12)
            diff = (got - expected).abs().max().item()
            print(f"max |adapter - SpeechBrain| (normalize={normalize}, T={wave.shape[1]}): {diff:.3e}")
            assert diff < 1e-5
        if not normalize:  # verify_batch scores un-normalised embeddings
            expected_score, _ = reference.verify_batch(batch[:2], batch[1:])
            assert torch.allclose(adapter.score(batch[:2], batch[1:]), expected_score[:, 0], atol=1e-6)
    if normalize:  # the embedding mean of mean_var_norm_emb.ckpt really was applied
        plain = SpeechBrainECAPA(str(sb_folder)).embed(batch).detach()
        assert (plain - adapter.embed(batch).detach()).abs().max() > 0.1


def test_gradients_reach_the_waveform(sb_folder):
    adapter = SpeechBrainECAPA(str(sb_folder))
    enrol, test = (w[None] for w in _waves((8000, 9000)))
    test.requires_grad_(True)
    adapter.score(enrol, test).sum().backward()
    assert test.grad is not None and torch.isfinite(test.grad).all()
    assert test.grad.abs().sum() > 0
    # the gradient is the true derivative of the score: a small step along it raises the score as predicted
    step = 1e-3 * test.grad / test.grad.norm()
    with torch.no_grad():
        before = adapter.score(enrol, test)
        after = adapter.score(enrol, test + step)
    predicted = (test.grad * step).sum()
    assert after - before == pytest.approx(predicted.item(), rel=0.2)


def test_missing_speechbrain_names_the_extra(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m.split(".")[0] == "speechbrain"] + ["speechbrain"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing speechbrain (or any part) now raises ImportError
    with pytest.raises(ImportError, match=r"coadv\[speechbrain\]"):
        SpeechBrainECAPA(str(tmp_path))


class _WritesMarker:
    """A pickle payload: unpickling it calls ``exec``, which writes a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_checkpoint_that_would_run_code_is_refused(sb_folder, tmp_path):
    folder = tmp_path / "evil"
    marker = tmp_path / "pwned"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS)
    state = torch.load(sb_folder / "embedding_model.ckpt", weights_only=True)
    torch.save({**state, "payload": _WritesMarker(marker)}, folder / "embedding_model.ckpt")
    with pytest.raises(ValueError, match="refused to load"):
        SpeechBrainECAPA(str(folder))
    with pytest.raises(ValueError, match="embedding_model.ckpt"):
        load_weights(folder / "embedding_model.ckpt")
    assert not marker.exists()
    torch.load(folder / "embedding_model.ckpt", weights_only=False)  # the file really is malicious: unsafe load
    assert marker.exists()


def test_hyperparams_tags_are_never_executed(sb_folder, tmp_path):
    folder = tmp_path / "evil_yaml"
    marker = tmp_path / "pwned"
    folder.mkdir()
    for name in ("embedding_model.ckpt", "mean_var_norm_emb.ckpt"):
        (folder / name).write_bytes((sb_folder / name).read_bytes())
    payload = f"evil: !apply:pathlib.Path.touch [!new:pathlib.Path [{str(marker)!r}]]\n"
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS + payload)
    SpeechBrainECAPA(str(folder))  # the unused tagged key is read as inert data
    assert not marker.exists()
    # a model key built from anything but the allow-listed SpeechBrain class is refused, naming file and key
    bad = HYPERPARAMS.replace("!new:speechbrain.lobes.features.Fbank", "!new:os.system")
    (folder / "hyperparams.yaml").write_text(bad)
    with pytest.raises(ValueError, match=r"hyperparams.yaml: key 'compute_features' must be"):
        SpeechBrainECAPA(str(folder))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lin_neurons: 12", "lin_neurons: 13", r"(?s)embedding_model.ckpt: does not fit .*size mismatch"),
        ("attention_channels: 16", "attention_chanels: 16", r"embedding_model: .*attention_chanels"),
        ("input_size: !ref <n_mels>", "input_size: !ref <n_mel>", r"!ref <n_mel> names a key"),
        ("norm_type: sentence", "norm_type: global", r"norm_type must be 'sentence'"),
    ],
)
def test_bad_hyperparams_are_named(sb_folder, tmp_path, old, new, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "embedding_model.ckpt").write_bytes((sb_folder / "embedding_model.ckpt").read_bytes())
    assert old in HYPERPARAMS
    (folder / "hyperparams.yaml").write_text(HYPERPARAMS.replace(old, new, 1))
    with pytest.raises(ValueError, match=message):
        SpeechBrainECAPA(str(folder))


def test_missing_folder_and_files_are_named(sb_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: download speechbrain/spkrec-ecapa-voxceleb"):
        SpeechBrainECAPA(str(tmp_path / "nowhere"))
    (tmp_path / "hyperparams.yaml").write_text(HYPERPARAMS)
    with pytest.raises(FileNotFoundError, match="embedding_model.ckpt does not exist"):
        SpeechBrainECAPA(str(tmp_path))


def test_validate_config_scores_trials(sb_folder, tmp_path):
    """The shipped config, as the user runs it, with the random-weight folder and a tiny synthetic corpus."""
    from coadv.cli import cli_main
    from datamodules.audio import read_wave

    config = ROOT / "configs" / "speaker" / "speechbrain_ecapa.yaml"
    cli = cli_main(
        [
            "validate",
            "-c",
            str(config),
            f"--model.init_args.victim.init_args.source={sb_folder}",
            f"--trainer.default_root_dir={tmp_path}",
            f"--data.init_args.root={tmp_path}/vox",
            "--data.init_args.trial_list=veri_test.txt",
            "--data.init_args.synthesize=true",
            "--data.init_args.synth_speakers=6",
            "--data.init_args.max_trials=6",
        ]
    )
    assert isinstance(cli.model.victim, SpeechBrainECAPA)
    assert cli.model.victim.embedding_dim == 12
    metrics = cli.trainer.callback_metrics
    assert 0 <= metrics["val/eer"] <= 1 and -1 <= metrics["val/threshold"] <= 1
    scores, labels = cli.model.last_scores
    assert len(scores) == 6 and set(labels.tolist()) <= {0, 1}
    # the logged scores are the adapter's own cosine scores of the first trial
    dm = cli.datamodule
    first = dm.trials[0]
    enrol, test = (read_wave(dm.root / "wav" / p)[None] for p in (first.enrol, first.test))
    with torch.no_grad():
        expected = SpeechBrainECAPA(str(sb_folder)).score(enrol, test)
    assert scores[0].item() == pytest.approx(expected.item(), abs=1e-5)
