"""VoxCeleb1-layout loading and the synthetic speech corpus."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import merged_files, quiet_trainer

from coadv.constants import speaker_files
from datamodules.audio import read_crop, read_wave
from datamodules.synth_speech import write_corpus
from datamodules.trials import read_trials
from datamodules.voxceleb import VoxCelebDataModule
from lightning_modules import SpeakerEmbedding
from nets.speaker import ECAPATDNN

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "speaker"


def tiny_tree(root, rate=16000, channels=1):
    """A VoxCeleb1-layout tree written with soundfile: 3 speakers x 2 utterances, and a trial list."""
    rng = np.random.default_rng(0)
    for spk in ("id10001", "id10002", "id10003"):
        for utt in (1, 2):
            path = root / "wav" / spk / "vidA" / f"{utt:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = rng.uniform(-0.5, 0.5, (rate // 2, channels)) if channels > 1 else rng.uniform(-0.5, 0.5, rate // 2)
            sf.write(path, data, rate)
    (root / "veri_test.txt").write_text(
        "1 id10003/vidA/00001.wav id10003/vidA/00002.wav\n0 id10003/vidA/00001.wav id10002/vidA/00001.wav\n"
    )
    return root


def test_loader_on_real_layout_files(tmp_path):
    dm = VoxCelebDataModule(root=str(tiny_tree(tmp_path)), crop_seconds=0.25, batch_size=2, eval_batch_size=2)
    dm.setup("fit")
    assert dm.speakers == ["id10001"]  # trial speakers (id10002, id10003) are held out of training
    waves, speakers = next(iter(dm.train_dataloader()))
    assert waves.shape == (2, 4000) and speakers.tolist() == [0, 0] and waves.abs().max() <= 1
    batch = next(iter(dm.val_dataloader()))
    assert batch["enrol"].shape == (2, 8000) and batch["label"].tolist() == [1, 0]


def test_synthetic_corpus_is_deterministic_and_in_voxceleb_layout(tmp_path):
    digests = []
    for name in ("one", "two"):
        trials = write_corpus(
            tmp_path / name, n_speakers=4, videos=1, utts_per_video=2, seconds=(0.5, 0.6), n_trials=6, seed=3
        )
        wav = tmp_path / name / "wav" / "id10004" / "vid00" / "00002.wav"
        digests.append((hashlib.sha256(wav.read_bytes()).hexdigest(), trials.read_text()))
    assert digests[0] == digests[1]
    parsed = read_trials(trials, tmp_path / "two" / "wav")
    assert len(parsed) == 6 and {t.label for t in parsed} == {0, 1}
    wave = read_wave(tmp_path / "two" / "wav" / "id10001" / "vid00" / "00001.wav")
    assert wave.dtype == torch.float32 and 0.4 < wave.abs().max() <= 0.51 and len(wave) >= 8000


def test_datamodule_synthesizes_when_asked(tmp_path):
    dm = VoxCelebDataModule(
        root=str(tmp_path / "vox"), synthesize=True, synth_speakers=8, crop_seconds=0.5, batch_size=4
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_speakers == 6 and len(dm.trials) == 400


def test_trial_offset_gives_a_disjoint_split(tmp_path):
    root = str(tmp_path / "vox")
    evaluation = VoxCelebDataModule(root=root, synthesize=True, synth_speakers=8, max_trials=40)
    evaluation.prepare_data()
    evaluation.setup("test")
    tuning = VoxCelebDataModule(root=root, max_trials=12, trial_offset=100)
    tuning.setup("test")
    everything = read_trials(tuning.trial_path, tuning.root / "wav")
    assert tuning.trials == everything[100:112] and evaluation.trials == everything[:40]
    assert not set(map(id, tuning.trials)) & set(map(id, evaluation.trials))
    with pytest.raises(ValueError, match="trial_offset=400: .* has only 400 trials"):
        VoxCelebDataModule(root=root, trial_offset=400).setup("test")
    with pytest.raises(ValueError, match="trial_offset=-1 must be >= 0"):
        VoxCelebDataModule(root=root, trial_offset=-1)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        ("1 id10003/vidA/00001.wav\n", ValueError, "line 1: expected 'label path1 path2'"),
        ("1 id10003/vidA/00001.wav id10003/vidA/00002.wav\n\n", ValueError, "line 2: empty trial line"),
        ("2 id10003/vidA/00001.wav id10003/vidA/00002.wav\n", ValueError, "line 1: expected"),
        (
            "1 id10003/vidA/00001.wav id10009/vidA/00001.wav\n",
            FileNotFoundError,
            r"line 1: .*id10009/vidA/00001.wav not found",
        ),
    ],
)
def test_bad_trial_lines_name_file_and_line(tmp_path, content, error, message):
    tiny_tree(tmp_path)
    (tmp_path / "veri_test.txt").write_text(content)
    with pytest.raises(error, match=message):
        read_trials(tmp_path / "veri_test.txt", tmp_path / "wav")


def test_missing_trial_files_skipped_only_when_asked(tmp_path):
    tiny_tree(tmp_path)
    (tmp_path / "veri_test.txt").write_text(
        "1 id10003/vidA/00001.wav id10003/vidA/00002.wav\n0 id10003/vidA/00001.wav id10009/vidA/00001.wav\n"
    )
    assert [t.line for t in read_trials(tmp_path / "veri_test.txt", tmp_path / "wav", skip_missing=True)] == [1]


def test_wrong_rate_and_stereo_are_named(tmp_path):
    tiny_tree(tmp_path / "a", rate=8000)
    with pytest.raises(ValueError, match=r"00001.wav: sample rate 8000 Hz, expected 16000"):
        read_wave(tmp_path / "a" / "wav" / "id10001" / "vidA" / "00001.wav")
    tiny_tree(tmp_path / "b", channels=2)
    with pytest.raises(ValueError, match=r"00001.wav: 2 channels, expected mono"):
        read_wave(tmp_path / "b" / "wav" / "id10001" / "vidA" / "00001.wav")
    with pytest.raises(ValueError, match="m4a .*FFmpeg"):
        read_wave(tmp_path / "x.m4a")


def test_missing_corpus_explains_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="wav does not exist.*synthesize=true"):
        VoxCelebDataModule(root=str(tmp_path)).setup("fit")


def test_identification_split_selects_training_files_without_trial_speakers(tmp_path):
    tiny_tree(tmp_path)  # trial speakers: id10002, id10003 (VoxCeleb1's iden_split covers the trial speakers too)
    (tmp_path / "iden_split.txt").write_text(
        "1 id10001/vidA/00001.wav\n3 id10001/vidA/00002.wav\n1 id10002/vidA/00002.wav\n1 id10003/vidA/00001.wav\n"
    )
    dm = VoxCelebDataModule(root=str(tmp_path), iden_split="iden_split.txt")
    dm.setup("fit")
    assert dm.train_files == ["id10001/vidA/00001.wav"] and dm.speakers == ["id10001"]
    assert not {f.split("/")[0] for f in dm.train_files} & dm.trial_speakers
    (tmp_path / "iden_split.txt").write_text("1 id10002/vidA/00002.wav\n3 id10001/vidA/00002.wav\n")
    with pytest.raises(
        FileNotFoundError, match=r"no training audio in subset 1 of iden_split.txt after excluding the 2"
    ):
        dm.setup("fit")
    (tmp_path / "iden_split.txt").write_text("1 id10001/vidA/00001.wav\nx\n")
    with pytest.raises(ValueError, match=r"iden_split.txt, line 2: expected 'set path'"):
        dm.setup("fit")


def count_frames_read(monkeypatch) -> list[int]:
    """Frames returned by every soundfile read from now on (SoundFile.read backs sf.read too)."""
    counts = []
    original = sf.SoundFile.read

    def counting(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        counts.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting)
    return counts


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_crop_reads_only_its_frames_and_matches_a_full_read(tmp_path, monkeypatch, fmt):
    ramp = (np.arange(160_000) % 20_000 - 10_000).astype(np.int16)  # 10 s; a 4,000-frame window fixes its start
    path = tmp_path / f"long.{fmt.lower()}"
    sf.write(path, ramp, 16000, format=fmt, subtype="PCM_16")
    full = read_wave(path)
    counts = count_frames_read(monkeypatch)
    for seed in range(5):
        torch.manual_seed(seed)
        crop = read_crop(path, 4000)
        start = int(round(float(crop[0]) * 32768)) + 10_000
        assert len(crop) == 4000 and torch.equal(crop, full[start : start + 4000])
    assert counts == [4000] * 5


def test_short_file_crop_is_the_file_repeated(tmp_path):
    sf.write(tmp_path / "short.wav", np.arange(1, 1001, dtype=np.int16), 16000, subtype="PCM_16")
    crop = read_crop(tmp_path / "short.wav", 2500)
    values = torch.round(crop * 32768).long()
    assert (
        len(crop) == 2500
        and torch.equal(values[1000:2000], values[:1000])
        and set(values.tolist()) <= set(range(1, 1001))
    )


def test_trial_index_lists_each_utterance_once(tmp_path):
    dm = VoxCelebDataModule(root=str(tiny_tree(tmp_path)), eval_batch_size=2)
    dm.setup("test")
    assert dm.eval_utterances == ["id10002/vidA/00001.wav", "id10003/vidA/00001.wav", "id10003/vidA/00002.wav"]
    assert dm.trial_pairs.tolist() == [[1, 2], [1, 0]] and dm.trial_labels.tolist() == [1, 0]
    batches = list(dm.utterance_dataloader())
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2]] and batches[0]["length"].tolist() == [8000, 8000]
    assert torch.equal(batches[1]["wave"][0], read_wave(tmp_path / "wav" / "id10003/vidA/00002.wav"))


def test_evaluation_stages_need_no_training_files(tmp_path):
    tiny_tree(tmp_path)
    shutil.rmtree(tmp_path / "wav" / "id10001")  # only the trial speakers' utterances are left
    dm = VoxCelebDataModule(root=str(tmp_path), eval_batch_size=2)
    for stage in ("validate", "test", "predict"):
        dm.setup(stage)
        assert len(next(iter(dm.test_dataloader()))["label"]) == 2
    with pytest.raises(
        FileNotFoundError, match=r"no training audio in .*wav/<speaker>/<session>/ after excluding the 2"
    ):
        dm.setup("fit")
    torch.manual_seed(0)
    model = SpeakerEmbedding(ECAPATDNN(channels=16, n_mels=20, embedding_dim=8, scale=2), num_speakers=2)
    metrics = quiet_trainer().test(model, dm, verbose=False)[0]
    # the two trials, scored by hand from the trial files alone: EER 0 when the target outscores the non-target
    model.eval()
    waves = {u: read_wave(tmp_path / "wav" / u)[None] for u in dm.eval_utterances}
    with torch.no_grad():
        scores = [
            float(model.victim.score(waves[dm.eval_utterances[a]], waves[dm.eval_utterances[b]])[0])
            for a, b in dm.trial_pairs.tolist()
        ]
    target, nontarget = (scores[i] for i in (dm.trial_labels.tolist().index(1), dm.trial_labels.tolist().index(0)))
    expected = 0.0 if target > nontarget else (0.5 if target == nontarget else 1.0)
    assert metrics["test/trials"] == 2 and metrics["test/eer"] == pytest.approx(expected)


def test_loaders_pass_workers_and_pinned_memory(tmp_path):
    dm = VoxCelebDataModule(root=str(tiny_tree(tmp_path)), num_workers=2, pin_memory=True, batch_size=1)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.utterance_dataloader()):
        assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (2, True, True)
    for config in ("ecapa_vox1", "seresnet34_vox1", "ivector_vox1"):
        data = merged_files(speaker_files(config))["data"]["init_args"]
        assert data["num_workers"] >= 4 and data["pin_memory"] is True, config
