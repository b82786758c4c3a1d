"""Speaker-verification victims: the differentiable contract, AAM-softmax, EM, thresholds, argument ranges.
Metrics: test_verification_metrics.py; checkpoints that rebuild their module: test_speaker_checkpoints.py."""

import lightning as L
import pytest
import torch
from helpers import quiet_trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from datamodules import VoxCelebDataModule
from lightning_modules import IVectorSystem, SpeakerEmbedding
from nets.speaker import ECAPATDNN, AAMSoftmax, FeatureDomainVictim, IVector, SEResNet34, SpeakerVictim


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    dm = VoxCelebDataModule(
        root=str(tmp_path_factory.mktemp("vox")),
        synthesize=True,
        synth_speakers=20,
        crop_seconds=1.0,
        batch_size=8,
        eval_batch_size=8,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


VICTIMS = {
    "ivector": lambda: IVector(n_components=8, rank=10, n_mfcc=13),
    "seresnet34": lambda: SEResNet34(width=4, embedding_dim=32),
    "ecapa": lambda: ECAPATDNN(channels=32, embedding_dim=32, scale=4),
}


@pytest.mark.parametrize("name", VICTIMS)
def test_score_gradient_reaches_the_test_waveform(name):
    torch.manual_seed(0)
    victim = VICTIMS[name]().eval()
    enrol = torch.rand(2, 16000) - 0.5
    test = (torch.rand(2, 16000) - 0.5).requires_grad_()
    score = victim.score(enrol, test)
    assert score.shape == (2,) and score.abs().max() <= 1 + 1e-5
    (grad,) = torch.autograd.grad(score.sum(), test)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert victim.embed(test).shape == (2, victim.embedding_dim)
    assert isinstance(victim, SpeakerVictim)
    assert isinstance(victim, FeatureDomainVictim) == (name == "ivector")  # only i-vectors expose MFCC frames


def test_aam_margin_penalises_the_true_class():
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.2, scale=30)
    plain = AAMSoftmax(8, 5, margin=0.0, scale=30)
    plain.weight.data.copy_(head.weight.data)
    emb = torch.randn(16, 8)
    labels = torch.randint(0, 5, (16,))
    (loss, logits) = head(emb, labels)
    (plain_loss, plain_logits) = plain(emb, labels)
    assert loss > plain_loss
    true = logits.gather(1, labels[:, None]) < plain_logits.gather(1, labels[:, None])
    assert true.all()


def test_ubm_em_increases_likelihood(corpus):
    from datamodules.audio import read_wave

    model = IVector(n_components=8, rank=10, n_mfcc=13)
    frames = torch.cat([model.frames(read_wave(corpus.root / "wav" / f)[None])[0] for f in corpus.train_files[:20]])
    history = model.fit_ubm(frames, iterations=6, generator=torch.Generator().manual_seed(0))
    assert all(b >= a - 1e-3 for a, b in zip(history, history[1:])) and history[-1] > history[0]


def test_ivector_system_learns_and_checkpoints_threshold(corpus, tmp_path):
    L.seed_everything(0)
    model = IVectorSystem(IVector(n_components=16, rank=20, n_mfcc=20), ubm_iterations=5, tv_iterations=3)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="iv")
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, callbacks=[checkpoint])
    trainer.fit(model, corpus)
    eer = float(trainer.callback_metrics["val/eer"])
    assert eer < 0.25  # chance is 0.5
    saved = torch.load(tmp_path / "iv.ckpt", weights_only=False)["verification"]["threshold"]
    assert saved == pytest.approx(float(trainer.callback_metrics["val/threshold"]))


@pytest.mark.parametrize("name", ["ecapa", pytest.param("seresnet34", marks=pytest.mark.slow)])  # 30 s on 2 cores
def test_neural_victim_learns_on_synthetic_corpus(corpus, name):
    """CI-sized: 8 epochs of AAM-softmax on 15 training speakers; EER on 400 trials of 5 unseen speakers."""
    L.seed_everything(0)
    victim = (
        ECAPATDNN(channels=32, embedding_dim=32, scale=4) if name == "ecapa" else SEResNet34(width=4, embedding_dim=32)
    )
    model = SpeakerEmbedding(victim)
    trainer = quiet_trainer(max_epochs=8, check_val_every_n_epoch=8, enable_checkpointing=False)
    trainer.fit(model, corpus)
    assert model.head.weight.shape == (corpus.num_speakers, 32)
    eer = float(trainer.callback_metrics["val/eer"])
    print(f"{name}: EER {eer:.3f}")
    assert eer < 0.25 and torch.isfinite(model.threshold)  # chance is 0.5; measured 0.12 (ECAPA), 0.11 (SE-ResNet)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: SEResNet34(width=0), r"width=0: expected >= 1"),
        (lambda: SEResNet34(n_mels=81), r"n_mels=81: expected a positive multiple of 8"),
        (lambda: ECAPATDNN(channels=30, scale=4), r"channels=30: expected a positive multiple of scale=4"),
        (lambda: ECAPATDNN(scale=1), r"scale=1: expected >= 2"),
        (lambda: IVector(rank=10, lda_dim=20), r"lda_dim=20: expected None or 1 to rank=10"),
        (lambda: IVector(n_mfcc=41), r"n_mfcc=41: expected 1 to n_mels=40"),
        (lambda: AAMSoftmax(8, 1), r"n_classes=1: expected >= 2 speakers"),
        (lambda: AAMSoftmax(8, 5, margin=2.0), r"margin=2.0: expected in \[0, pi/2\)"),
        (
            lambda: SpeakerEmbedding(ECAPATDNN(channels=16, scale=2), p_target=1.0),
            r"p_target=1.0: expected in \(0, 1\)",
        ),
        (lambda: SpeakerEmbedding(ECAPATDNN(channels=16, scale=2), scale=0.0), r"scale=0.0: expected > 0"),
        (
            lambda: SpeakerEmbedding(ECAPATDNN(channels=16, scale=2), num_speakers=1),
            r"num_speakers=1: expected None or >= 2",
        ),
        (lambda: IVectorSystem(IVector(n_components=4, rank=3), ubm_iterations=0), r"ubm_iterations=0: expected >= 1"),
    ],
)
def test_out_of_range_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_nets_record_their_arguments_for_checkpoints():
    from nets.speaker.contract import config

    spec = config(SEResNet34(width=4, embedding_dim=16))
    assert spec == {
        "class_path": "nets.speaker.encoders.SEResNet34",
        "init_args": {"width": 4, "n_mels": 80, "embedding_dim": 16, "layers": (3, 4, 6, 3)},
    }
    with pytest.raises(TypeError, match="Linear records no init_args"):
        config(torch.nn.Linear(2, 2))
