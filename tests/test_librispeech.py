"""Real speech: the embedded LibriSpeech subset, its trial list and attribution; converting a LibriSpeech folder."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from helpers import merged_files

from coadv.cli import cli_main
from coadv.constants import speaker_files
from datamodules import LibriSpeechDataModule
from datamodules.librispeech import EMBEDDED, all_pairs_trials, build_embedded, convert_librispeech, find_utterances

TEST_SPEAKERS = {"1688", "1998", "2033", "2414", "3080", "3331"}  # test-other speakers of librispeech_mini


@pytest.fixture(scope="module")
def embedded():
    dm = LibriSpeechDataModule(batch_size=8, eval_batch_size=4)
    dm.setup("fit")
    return dm


def test_embedded_counts(embedded):
    assert embedded.num_speakers == 251 and len(embedded.train_files) == 251
    assert embedded.trial_speakers == TEST_SPEAKERS and not TEST_SPEAKERS & set(embedded.speakers)
    assert len(embedded.eval_utterances) == 60 and len(embedded.trials) == 1770
    assert int(embedded.trial_labels.sum()) == 270  # 6 speakers x C(10, 2) = 6 x 45
    pairs = embedded.trial_pairs
    labels = embedded.trial_labels
    same = [embedded.eval_utterances[a][:4] == embedded.eval_utterances[b][:4] for a, b in pairs.tolist()]
    assert torch.equal(torch.tensor(same), labels.bool()) and bool((pairs[:, 0] < pairs[:, 1]).all())


def test_embedded_trial_list_is_every_pair_in_sorted_order(embedded):
    listed = (EMBEDDED / "veri_test.txt").read_text().splitlines()
    assert listed == all_pairs_trials(embedded.eval_utterances)
    assert listed[0] == "0 1688/142285/1688-142285-0000.flac 1998/15444/1998-15444-0000.flac"
    assert listed[3] == "1 1688/142285/1688-142285-0000.flac 1688/142285/1688-142285-0001.flac"  # 0.5 / 270
    assert listed[-1] == "0 3080/5032/3080-5032-0009.flac 3331/159605/3331-159605-0009.flac"
    first = [int(line[0]) for line in listed[:177]]  # a tenth of the list holds a tenth of the targets
    assert sum(first) == 27


def test_all_pairs_by_hand():
    # target key 1/2; non-target keys 1/4, 3/4
    assert all_pairs_trials(["b/1/b-1-1.flac", "a/1/a-1-2.flac", "a/1/a-1-1.flac"]) == [
        "0 a/1/a-1-1.flac b/1/b-1-1.flac",
        "1 a/1/a-1-1.flac a/1/a-1-2.flac",
        "0 a/1/a-1-2.flac b/1/b-1-1.flac",
    ]
    assert all_pairs_trials(["x/1/x-1-1.flac", "x/1/x-1-2.flac"]) == ["1 x/1/x-1-1.flac x/1/x-1-2.flac"]


def test_embedded_attribution_and_crops_recorded():
    readme = (EMBEDDED / "README.md").read_text()
    assert "CC BY 4.0" in readme and "LibriSpeech (c) 2014 by Vassil Panayotov" in readme
    assert "Creative Commons Attribution 4.0" in (EMBEDDED / "LICENSE.TXT").read_text()
    rows = [line.split("\t") for line in (EMBEDDED / "CROPS.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 311
    for name, source, kept in rows:
        frames = sf.info(str(EMBEDDED / "wav" / name)).frames
        test = name.split("/")[0] in TEST_SPEAKERS
        assert frames == int(kept) == (int(source) if test else min(int(source), 72_000)), name
    size = sum(p.stat().st_size for p in EMBEDDED.rglob("*") if p.is_file())
    assert size < 32e6  # the repository budget: at most 40 MB added


def test_embedded_batches(embedded):
    waves, speakers = next(iter(embedded.train_dataloader()))
    assert waves.shape == (8, 32000) and 0 < waves.abs().max() <= 1 and speakers.max() < 251
    batch = next(iter(embedded.test_dataloader()))
    assert batch["label"].tolist() == [0, 0, 0, 1] and batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["enrol_len"].tolist() == [sf.info(str(EMBEDDED / "wav" / embedded.trials[0].enrol)).frames] * 4


def fake_librispeech(root, flat: bool = False):
    """train-clean-100 (speakers 11, 12: 1 s each) and test-other (21, 22: three 0.5 s utterances each)."""
    rng = np.random.default_rng(0)
    files = [("train-clean-100", "11-100-0000", 16000), ("train-clean-100", "12-200-0000", 16000)]
    files += [("test-other", f"{s}-{c}-{u:04d}", 8000) for s, c in (("21", "300"), ("22", "400")) for u in range(3)]
    for subset, name, frames in files:
        speaker, chapter, _ = name.split("-")
        folder = root / subset if flat and subset.startswith("train") else root / subset / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{name}.flac", rng.uniform(-0.5, 0.5, frames), 16000, subtype="PCM_16")
    return root


@pytest.mark.parametrize("flat", [False, True])
def test_datamodule_converts_a_librispeech_folder(tmp_path, flat):
    source = fake_librispeech(tmp_path / "LibriSpeech", flat)
    dm = LibriSpeechDataModule(root=str(tmp_path / "out"), source=str(source), crop_seconds=0.25, batch_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.speakers == ["11", "12"] and dm.train_files == ["11/100/11-100-0000.flac", "12/200/12-200-0000.flac"]
    assert len(dm.trials) == 15 and int(dm.trial_labels.sum()) == 6  # C(6, 2); 2 x C(3, 2) target
    assert (tmp_path / "out" / "wav" / "21" / "300" / "21-300-0002.flac").is_symlink()  # linked, not copied
    waves, speakers = next(iter(dm.train_dataloader()))
    assert waves.shape == (2, 4000) and sorted(speakers.tolist()) == [0, 1]


def test_conversion_keeps_the_first_seconds_and_limits_test_utterances(tmp_path):
    source = fake_librispeech(tmp_path / "LibriSpeech")
    trials = convert_librispeech(source, tmp_path / "out", train_seconds=0.5, test_per_speaker=2, link=False)
    assert trials.read_text().splitlines() == all_pairs_trials(
        ["21/300/21-300-0000.flac", "21/300/21-300-0001.flac", "22/400/22-400-0000.flac", "22/400/22-400-0001.flac"]
    )
    kept = sf.read(tmp_path / "out" / "wav" / "11" / "100" / "11-100-0000.flac", dtype="int16")[0]
    original = sf.read(source / "train-clean-100" / "11" / "100" / "11-100-0000.flac", dtype="int16")[0]
    assert np.array_equal(kept, original[:8000])
    assert "11/100/11-100-0000.flac\t16000\t8000" in (tmp_path / "out" / "CROPS.tsv").read_text()
    with pytest.raises(FileExistsError, match="out/wav already exists"):
        convert_librispeech(source, tmp_path / "out")


def test_bad_names_and_missing_data_are_explained(tmp_path):
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "speech.flac", np.zeros(100), 16000)
    with pytest.raises(ValueError, match=r"sub/speech.flac: not a LibriSpeech file name"):
        find_utterances(tmp_path / "sub")
    with pytest.raises(FileNotFoundError, match=r"nowhere/wav does not exist.*build_embedded.*openslr.org/12"):
        LibriSpeechDataModule(root=str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(ValueError, match="needs a writable root"):
        LibriSpeechDataModule(source=str(tmp_path))
    with pytest.raises(ValueError, match="test_utterances_per_speaker=1: target trials need >= 2"):
        LibriSpeechDataModule(root=str(tmp_path), source=str(tmp_path), test_utterances_per_speaker=1)


def test_fit_and_test_commands_of_the_libri_config(tmp_path):
    """``coadv fit`` of the composed ecapa_libri configs then ``coadv test ... --ckpt_path``, shrunk: tiny net, two
    steps, 24 trials (4 target), checkpoint in a temporary folder."""
    cfg = merged_files(speaker_files("ecapa_libri"))
    cfg["trainer"]["callbacks"][1]["init_args"]["dirpath"] = str(tmp_path)
    cfg["trainer"].update(
        default_root_dir=str(tmp_path),
        max_epochs=1,
        check_val_every_n_epoch=1,
        limit_train_batches=2,
        limit_val_batches=3,
        limit_test_batches=3,
    )
    cfg["model"]["init_args"]["victim"]["init_args"].update(channels=16, n_mels=20, embedding_dim=8)
    cfg["data"]["init_args"].update(batch_size=4, crop_seconds=0.5)
    config = tmp_path / "ecapa_libri.yaml"
    config.write_text(yaml.safe_dump(cfg))
    fit = cli_main(["fit", "-c", str(config)])
    assert fit.trainer.global_step == 2 and fit.datamodule.num_speakers == 251
    test = cli_main(["test", "-c", str(config), "--ckpt_path", str(tmp_path / "ecapa_libri.ckpt")])
    assert test.trainer.callback_metrics["test/eer"] == fit.trainer.callback_metrics["val/eer"]


MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech_mini"


@pytest.mark.skipif(not MINI.is_dir(), reason=f"{MINI} (the source of the embedded copy) is absent")
def test_build_embedded_reproduces_the_shipped_copy(tmp_path):
    build_embedded(MINI, tmp_path)
    shipped = sorted(p.relative_to(EMBEDDED) for p in EMBEDDED.rglob("*") if p.is_file() and p.name != "README.md")
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all((EMBEDDED / p).read_bytes() == (tmp_path / p).read_bytes() for p in shipped)
