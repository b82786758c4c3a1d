"""Verification at scale: each trial utterance embedded once (equal lengths batched, never padded), trials scored
from the cache exactly as one at a time; DDP scores every trial once; the AAM head only for fit; i-vector EM
streamed from sufficient statistics equals full-batch EM."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import QUIET, quiet_trainer

from coadv.cli import cli_main
from coadv.constants import speaker_args
from datamodules import VoxCelebDataModule
from datamodules.audio import read_wave
from datamodules.synth_speech import write_corpus
from lightning_modules import IVectorSystem, SpeakerEmbedding
from nets.speaker import ECAPATDNN, IVector, SEResNet34

ROOT = Path(__file__).resolve().parents[1]
ECAPA = speaker_args("ecapa_synth")
# samples per utterance: three share 5,600 and two share 8,000 (batched), the others stand alone
LENGTHS = {
    "id10001/v0/00001.wav": 5600,
    "id10001/v0/00002.wav": 8000,
    "id10001/v1/00003.wav": 4321,
    "id10002/v0/00001.wav": 5600,
    "id10002/v0/00002.wav": 6400,
    "id10002/v1/00003.wav": 8000,
    "id10003/v0/00001.wav": 5600,
    "id10003/v0/00002.wav": 7123,
    "id10003/v1/00003.wav": 4800,
}
TRIALS = [
    (1, "id10001/v0/00001.wav", "id10001/v0/00002.wav"),
    (0, "id10001/v0/00001.wav", "id10002/v0/00001.wav"),
    (1, "id10002/v0/00002.wav", "id10002/v1/00003.wav"),
    (0, "id10003/v0/00002.wav", "id10001/v1/00003.wav"),
    (1, "id10003/v0/00001.wav", "id10003/v1/00003.wav"),
    (0, "id10002/v0/00001.wav", "id10001/v0/00001.wav"),
    (1, "id10001/v0/00002.wav", "id10001/v0/00002.wav"),
    (0, "id10003/v1/00003.wav", "id10002/v0/00002.wav"),
    (1, "id10001/v1/00003.wav", "id10001/v0/00001.wav"),
    (0, "id10002/v1/00003.wav", "id10003/v0/00001.wav"),
    (1, "id10002/v0/00001.wav", "id10002/v0/00002.wav"),
]  # a reversed pair, a self pair


def write_tree(root: Path, lengths: dict[str, int] = LENGTHS, trials=TRIALS) -> Path:
    """Speaker-coloured noise at the given lengths and a trial list over them."""
    rng = np.random.default_rng(0)
    for path, n in lengths.items():
        (root / "wav" / path).parent.mkdir(parents=True, exist_ok=True)
        pitch = 100 + 60 * int(path[6])
        wave = 0.3 * np.sin(2 * np.pi * pitch * np.arange(n) / 16000) + 0.05 * rng.standard_normal(n)
        sf.write(root / "wav" / path, wave.astype(np.float32), 16000, "PCM_16")
    (root / "veri_test.txt").write_text("".join(f"{label} {a} {b}\n" for label, a, b in trials))
    return root


def random_ivector() -> IVector:
    torch.manual_seed(0)
    victim = IVector(n_components=4, rank=6, n_mfcc=8, lda_dim=3)
    victim.means.normal_(0, 3)
    victim.variances.uniform_(5, 20)
    victim.log_weights.copy_(torch.rand(4).softmax(0).log())
    victim.T.normal_(0, 0.3)
    victim.center.normal_(0, 0.1)
    victim.lda.normal_()
    return victim


VICTIMS = {
    "ecapa": lambda: SpeakerEmbedding(ECAPATDNN(channels=16, n_mels=20, embedding_dim=8, scale=2)),
    "seresnet34": lambda: SpeakerEmbedding(SEResNet34(width=2, n_mels=16, embedding_dim=8, layers=(1, 1, 1, 1))),
    "ivector": lambda: IVectorSystem(random_ivector()),
}


@pytest.mark.parametrize("name", VICTIMS)
def test_cached_scores_equal_one_at_a_time_scores(name, tmp_path):
    torch.manual_seed(0)
    model = VICTIMS[name]()
    calls = []
    embed = model.victim.embed
    model.victim.embed = lambda wave: calls.append(tuple(wave.shape)) or embed(wave)
    dm = VoxCelebDataModule(root=str(write_tree(tmp_path)), eval_batch_size=4)
    metrics = quiet_trainer().validate(model, dm, verbose=False)[0]
    # each of the 9 utterances once, at its true length; equal lengths inside a batch of 4 share a forward pass
    assert sorted(n for b, n in calls for _ in range(b)) == sorted(LENGTHS.values())
    assert len(calls) < len(LENGTHS) and max(b for b, _ in calls) >= 2
    scores, labels = model.last_scores
    model.eval()  # as validate had it
    with torch.no_grad():
        wave = {p: read_wave(tmp_path / "wav" / p)[None] for p in LENGTHS}
        expected = torch.cat([model.victim.score(wave[a], wave[b]) for _, a, b in TRIALS])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
    assert labels.tolist() == [t[0] for t in TRIALS] and metrics["val/trials"] == len(TRIALS)
    assert scores[6] == pytest.approx(1.0, abs=1e-5) and scores[1] == pytest.approx(float(scores[5]), abs=1e-5)
    assert dm.eval_batches == "trials"  # handed back: the same DataModule can feed an attack next


@pytest.mark.parametrize("batch, trials, labels", [(4, 5, [1, 0, 0, 1, 1]), (1, 0, [])])
def test_shortened_evaluation_scores_the_whole_trials_it_embedded(batch, trials, labels, tmp_path):
    """Utterances come in order of first use: one batch of 4 holds id10001 00001, 00002 and id10002 00001, 00002,
    the utterances of trials 0, 1, 5, 6 and 10 (and of no other trial); one of 1 completes no trial."""
    model = VICTIMS["ecapa"]()
    dm = VoxCelebDataModule(root=str(write_tree(tmp_path)), eval_batch_size=batch)
    metrics = quiet_trainer(limit_val_batches=1).validate(model, dm, verbose=False)[0]
    assert metrics["val/trials"] == trials and model.last_scores[1].tolist() == labels
    assert math.isnan(metrics["val/eer"]) == (trials == 0)


def test_scores_come_from_the_cache_in_chunks_and_gaps_are_named():
    model = VICTIMS["ecapa"]()
    embeddings = torch.randn(5, 8)  # utterance index[i] has embeddings[i]
    index = torch.tensor([4, 0, 2, 1, 3])
    pairs = torch.tensor([[0, 1], [4, 4], [3, 0], [2, 1], [1, 3]])
    of = {u: embeddings[i] for i, u in enumerate(index.tolist())}
    expected = torch.stack([torch.cosine_similarity(of[a], of[b], dim=0) for a, b in pairs.tolist()])
    torch.testing.assert_close(model.score_trials(index, embeddings, pairs, chunk=2), expected)
    with pytest.raises(ValueError, match="2 trials name utterances without an embedding"):
        model.score_trials(index[:4], embeddings[:4], pairs)


def test_evaluation_needs_the_trial_datamodule(tmp_path):
    loader = torch.utils.data.DataLoader(torch.zeros(4, 100), batch_size=2)
    with pytest.raises(TypeError, match="through a DataModule with eval_utterances.*got NoneType"):
        quiet_trainer().validate(VICTIMS["ecapa"](), dataloaders=loader)


def run_validate(tmp_path: Path, corpus: Path, devices: int) -> tuple[dict[str, float], str]:
    """``coadv validate`` in a subprocess; the metrics as Lightning prints them (``val/eer  0.26...``)."""
    args = [
        sys.executable,
        "-m",
        "coadv",
        "validate",
        *ECAPA,
        f"--data.init_args.root={corpus}",
        "--data.init_args.eval_batch_size=2",
        "--model.init_args.victim.init_args.channels=16",
        f"--trainer.default_root_dir={tmp_path}",
        *QUIET,
        "--trainer.accelerator=cpu",
        f"--trainer.devices={devices}",
        f"--trainer.strategy={'ddp' if devices > 1 else 'auto'}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = re.findall(r"^\s*(val/\w+)\s+(\S+)\s*$", done.stdout, flags=re.MULTILINE)
    return {key: float(value) for key, value in found}, done.stdout + done.stderr


@pytest.mark.slow  # two CLI launches, one with two processes: ~40 s on 2 cores
def test_two_processes_score_every_trial_once(tmp_path):
    corpus = write_tree(tmp_path / "corpus")  # 9 utterances: the sampler repeats one to give each rank 5
    one, _ = run_validate(tmp_path / "one", corpus, 1)
    two, log = run_validate(tmp_path / "two", corpus, 2)
    assert "MEMBER: 2/2" in log  # really two processes
    assert one["val/trials"] == two["val/trials"] == len(TRIALS)
    assert one.keys() == two.keys() >= {"val/eer", "val/threshold", "val/min_dcf"}
    for key in one:
        assert two[key] == pytest.approx(one[key], abs=1e-6), key


def test_checkpoint_validates_on_a_corpus_of_trial_utterances_only(tmp_path):
    train = tmp_path / "train"
    write_corpus(train, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.6), n_trials=6, seed=3)
    common = [
        *ECAPA,
        "--model.init_args.victim.init_args.channels=16",
        "--data.init_args.batch_size=4",
        f"--trainer.default_root_dir={tmp_path}",
        *QUIET,
    ]
    fit = cli_main(["fit", *common, f"--data.init_args.root={train}", "--trainer.fast_dev_run=true"])
    path = tmp_path / "victim.ckpt"
    fit.trainer.save_checkpoint(path)
    assert fit.model.head.weight.shape == (6, 192)  # 6 training speakers
    other = write_tree(tmp_path / "other")  # 3 speakers, every one in a trial: no training files at all
    validate = cli_main(["validate", *common, f"--data.init_args.root={other}", f"--ckpt_path={path}"])
    assert validate.trainer.callback_metrics["val/trials"] == len(TRIALS)
    assert validate.model.head.weight.shape == (6, 192)  # sized from the checkpoint, not from the DataModule
    for key, value in fit.model.victim.state_dict().items():
        assert torch.equal(validate.model.victim.state_dict()[key], value), key
    rebuilt = SpeakerEmbedding.load_from_checkpoint(path)
    quiet_trainer().validate(rebuilt, VoxCelebDataModule(root=str(other)), verbose=False)
    torch.testing.assert_close(rebuilt.last_scores[0], validate.model.last_scores[0])
    fresh = SpeakerEmbedding(ECAPATDNN(channels=16))
    quiet_trainer().validate(fresh, VoxCelebDataModule(root=str(other)), verbose=False)
    assert fresh.head is None  # no checkpoint, no fit: no head


def test_head_smaller_than_the_training_speakers_is_refused(tmp_path):
    write_corpus(tmp_path, n_speakers=8, videos=1, utts_per_video=2, seconds=(0.5, 0.6), n_trials=6, seed=3)
    model = SpeakerEmbedding(ECAPATDNN(channels=16, n_mels=20, embedding_dim=8, scale=2), num_speakers=3)
    with pytest.raises(ValueError, match="num_speakers=3, but the DataModule has 6 training speakers"):
        quiet_trainer(max_steps=1).fit(model, VoxCelebDataModule(root=str(tmp_path), batch_size=4))
