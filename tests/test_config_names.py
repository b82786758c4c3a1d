"""The composed configs' run names: the ``direction`` and ``speaker_run`` resolvers, by hand and through the CLI."""

from __future__ import annotations

import pytest

from coadv.cli import cli_main
from coadv.constants import direction, speaker_args, speaker_run, translation_args


def test_direction_names_the_known_pairs_and_spells_out_the_rest():
    assert direction("mnist", "mnist_m") == "m2mm" and direction("usps", "mnist") == "u2m"
    assert direction("mnist_m", "usps") == "mnist_m2usps"


def victim(cls: str) -> dict:
    return {"init_args": {"victim": {"class_path": f"nets.speaker.{cls}"}}}


def test_speaker_run_follows_the_victim_class_and_the_corpus():
    libri = {"class_path": "datamodules.LibriSpeechDataModule", "init_args": {"synthesize": True}}
    synth = {"class_path": "datamodules.VoxCelebDataModule", "init_args": {"synthesize": True}}
    vox1 = {"class_path": "datamodules.VoxCelebDataModule", "init_args": {"synthesize": False}}
    assert speaker_run(victim("ECAPATDNN"), libri) == "ecapa_libri"  # LibriSpeech wins over synthesize
    assert speaker_run(victim("SEResNet34"), synth) == "seresnet34_synth"
    assert speaker_run(victim("IVector"), vox1) == "ivector_vox1"
    with pytest.raises(ValueError, match=r"model.init_args.victim='GE2E'.*set trainer.default_root_dir"):
        speaker_run(victim("GE2E"), vox1)


@pytest.mark.parametrize("run", ["ecapa_libri", "seresnet34_vox1", "ecapa_synth"])
def test_composed_speaker_configs_resolve_to_their_run_folder_and_checkpoint(run):
    cli = cli_main([*speaker_args(run), "--trainer.logger=false"], run=False)
    assert str(cli.trainer.default_root_dir).endswith(f"runs/{run}")
    saved = [c for c in cli.trainer.callbacks if type(c).__name__ == "ModelCheckpoint"]
    assert [c.filename for c in saved] == [run] and saved[0].dirpath.endswith("checkpoints/victims")


def test_composed_translation_config_resolves_its_run_folder():
    cli = cli_main([*translation_args("accr", "u2m"), "--trainer.logger=false"], run=False)
    assert str(cli.trainer.default_root_dir).endswith("runs/accr_u2m")
    assert (cli.datamodule.domain_a, cli.datamodule.domain_b) == ("usps", "mnist")
