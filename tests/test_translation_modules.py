"""Loss terms, optimizer-step invariants and argument checks of CycleGAN, CR-CycleGAN and ACCR."""

import re

import lightning as L
import pytest
import torch
from helpers import quiet_trainer, tiny
from torch import nn

from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR, CRCycleGAN, CrossNetworkConsistency, CycleGAN
from lightning_modules.accr import paired_augment
from lightning_modules.cyclegan import ConfiguredLambdaLR, LinearDecay
from nets import Identity, PatchDiscriminator, ResnetGenerator, Translate
from nets.translation import NORMS


def images(n=4):
    torch.manual_seed(0)
    return torch.rand(n, 3, 32, 32) * 2 - 1, torch.rand(n, 3, 32, 32) * 2 - 1


@pytest.mark.parametrize("cls", [CycleGAN, CRCycleGAN, ACCR])
@pytest.mark.parametrize("fake_source", ["pool", "current"])
def test_every_loss_term_finite(cls, fake_source):
    kwargs = {"fake_source": fake_source} if cls is ACCR else {}
    model = tiny(cls, **kwargs)
    a, b = images()
    g_terms, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    expected_g = {"g_adv_ab", "g_adv_ba", "cycle_a", "cycle_b", "idt_a", "idt_b"}
    expected_d = {"d_a", "d_b"} | {
        CycleGAN: set(),
        CRCycleGAN: {"cr_real_a", "cr_real_b"},
        ACCR: {"cr_real_a", "cr_real_b", "cr_fake_a", "cr_fake_b", "cr_rec_a", "cr_rec_b"},
    }[cls]
    assert set(g_terms) == expected_g and set(d_terms) == expected_d
    for value in (*g_terms.values(), *d_terms.values()):
        assert torch.isfinite(value) and value.ndim == 0


def with_norm(cls, norm, **kwargs):
    """A tiny translation module whose discriminators use ``norm``."""
    nets = dict(
        g_ab=ResnetGenerator(width=8, n_blocks=1),
        g_ba=ResnetGenerator(width=8, n_blocks=1),
        d_a=PatchDiscriminator(width=8, norm=norm),
        d_b=PatchDiscriminator(width=8, norm=norm),
    )
    return cls(**nets, **kwargs)


def cr_terms(model, a, b):
    _, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    return {k: v for k, v in d_terms.items() if k.startswith("cr_")}


CR_MODULES = [(CRCycleGAN, {}), (ACCR, {"fake_source": "pool"}), (ACCR, {"fake_source": "current"})]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize(("cls", "kwargs"), CR_MODULES, ids=["CRCycleGAN", "ACCR-pool", "ACCR-current"])
def test_consistency_terms_zero_when_T_is_identity(norm, cls, kwargs):
    model = with_norm(cls, norm, augment=Identity(), **kwargs)
    a, b = images()
    cr = cr_terms(model, a, b)
    assert len(cr) == (2 if cls is CRCycleGAN else 6) and all(v.item() == 0 for v in cr.values())
    # and non-zero with a real augmentation, so the check above can fail
    model.augment = Translate()
    assert all(v.item() > 0 for v in cr_terms(model, a, b).values())


def test_one_batched_forward_would_give_batch_norm_a_spurious_term(monkeypatch):
    # the CR inputs forwarded together (as before): D(T(x)) is computed with the statistics of a batch that mixes
    # real, fake and reconstructed images, D(x) of real and pooled fakes with those of x alone (the D loss's)
    monkeypatch.setattr("nets.translation.mixes_batch", lambda d: False)
    a, b = images()
    cr = cr_terms(with_norm(ACCR, "batch", augment=Identity()), a, b)
    assert all(cr[f"cr_{kind}_{side}"].item() > 0 for kind in ("real", "fake") for side in "ab")
    assert all(v.item() == 0 for v in cr_terms(with_norm(ACCR, "instance", augment=Identity()), a, b).values())


class FirstChannel(nn.Module):
    """A discriminator whose patch map is the image's first channel."""

    def forward(self, x):
        return x[:, :1]


class RollColumns(nn.Module):
    """T: every row moved one column right, cyclically (the image mean is unchanged)."""

    def forward(self, x):
        return x.roll(1, dims=-1)


@pytest.mark.parametrize(("cr_reduce", "expected"), [("elementwise", (0.5, 0.25)), ("mean", (0.0, 0.0))])
def test_cr_reduce_by_hand(cr_reduce, expected):
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    a[:, 0, :, 1::2] = 1  # columns 0 1 0 1: rolled, every patch score flips (|diff|^2 = 1 each)
    b[:, 0, :, 0] = 1  # one 1 per row: rolled, 2 of 4 patch scores change (mean 0.5)
    model = CRCycleGAN(
        g_ab=Affine(1.0),
        g_ba=Affine(1.0),
        d_a=FirstChannel(),
        d_b=FirstChannel(),
        augment=RollColumns(),
        pool_size=0,
        init_std=None,
        lambda_real=1.0,
        cr_reduce=cr_reduce,
    )
    cr = cr_terms(model, a, b)
    # 0.5 lambda d (the D loss's 0.5); "mean": one score per image, unchanged by the roll
    assert (cr["cr_real_a"].item(), cr["cr_real_b"].item()) == expected


def test_default_T_shifts_by_whole_pixels_up_to_2_px_and_cr_takes_one_score_per_image():
    for cls in (CRCycleGAN, ACCR):
        model = tiny(cls)
        augment = model.augment
        assert isinstance(augment, Translate) and augment.integer and augment.max_fraction == 1 / 16
        assert model.cr_reduce == "mean"
    x = torch.arange(32.0).expand(1, 1, 32, 32)
    shifts = {int((augment(x) - x).mean().round()) for _ in range(200)}
    assert shifts == {-2, -1, 0, 1, 2}  # columns move by whole pixels, at most 2 of 32


def test_switched_off_terms_are_absent():
    model = tiny(ACCR, lambda_real=0.0, lambda_rec=0.0)
    a, b = images()
    _, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    assert {k for k in d_terms if k.startswith("cr_")} == {"cr_fake_a", "cr_fake_b"}
    model = tiny(CycleGAN, lambda_idt=0.0)
    assert "idt_a" not in model.generator_loss(a, b)[0]


class Affine(nn.Module):
    """x -> scale * x + shift: a generator or an augmentation whose every output is known by hand."""

    def __init__(self, scale, shift=0.0):
        super().__init__()
        self.scale = scale
        self.shift = shift

    def forward(self, x):
        return self.scale * x + self.shift


class MeanD(nn.Module):
    """A discriminator whose 2x2 patch map is each image's mean pixel."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, 2, 2)


# a = 0.5 and b = -0.25 everywhere; G(x) = x/2 + 1/4, F(x) = -x, T(x) = -x, D(x) = mean(x), pool off, so
# G(a) = 0.5, F(G(a)) = -0.5, F(b) = 0.25, G(F(b)) = 0.375, G(b) = 0.125, F(a) = -0.5 and D(x) - D(T(x)) = 2 D(x).
BY_HAND = {
    "g_adv_ab": (0.5 - 1) ** 2,  # (D_Y(G(a)) - 1)^2
    "g_adv_ba": (0.25 - 1) ** 2,  # (D_X(F(b)) - 1)^2
    "cycle_a": 10 * 1.0,  # 10 |F(G(a)) - a| = 10 |-0.5 - 0.5|
    "cycle_b": 10 * 0.625,  # 10 |G(F(b)) - b| = 10 |0.375 + 0.25|
    "idt_a": 5 * 0.375,  # 10 * 0.5 |G(b) - b| = 5 |0.125 + 0.25|
    "idt_b": 5 * 1.0,  # 5 |F(a) - a|
    "d_a": 0.5 * ((0.5 - 1) ** 2 + 0.25**2),  # 0.5 [(D_X(a) - 1)^2 + D_X(F(b))^2]
    "d_b": 0.5 * ((-0.25 - 1) ** 2 + 0.5**2),  # 0.5 [(D_Y(b) - 1)^2 + D_Y(G(a))^2]
    "cr_real_a": 0.5 * 1 * (2 * 0.5) ** 2,  # 0.5 lambda_real |D(a) - D(T(a))|^2, lambda_real = 1
    "cr_real_b": 0.5 * 1 * (2 * -0.25) ** 2,
    "cr_fake_a": 0.5 * 2 * (2 * 0.25) ** 2,  # lambda_fake = 2, fake_a = F(b) = 0.25
    "cr_fake_b": 0.5 * 2 * (2 * 0.5) ** 2,  # fake_b = G(a) = 0.5
    "cr_rec_a": 0.5 * 3 * (2 * -0.5) ** 2,  # lambda_rec = 3, rec_a = -0.5
    "cr_rec_b": 0.5 * 3 * (2 * 0.375) ** 2,  # rec_b = 0.375
    "cross_dd_ab": 0.5 * (0.5 - 0.5) ** 2,  # |D_Y(G(a)) - D_X(a)|^2
    "cross_dd_ba": 0.5 * (0.25 - -0.25) ** 2,  # |D_X(F(b)) - D_Y(b)|^2
    "cross_gg_a": abs(0.5 - -0.5),  # |F(T(G(a))) - T(a)| = |F(-0.5) + 0.5|
    "cross_gg_b": abs(0.125 - 0.25),  # |G(T(F(b))) - T(b)| = |G(-0.25) - 0.25|
    "cross_gd_ab": 0.5 * (0.0 - -0.5) ** 2,  # |D_Y(G(T(a))) - D_Y(T(G(a)))|^2 = |G(-0.5) - (-0.5)|^2
    "cross_gd_ba": 0.5 * (-0.25 - -0.25) ** 2,  # |D_X(F(T(b))) - D_X(T(F(b)))|^2 = |F(0.25) - (-0.25)|^2
}


@pytest.mark.parametrize("fake_source", ["pool", "current"])
def test_every_loss_term_equals_its_value_by_hand(fake_source):
    cross = CrossNetworkConsistency(lambda_dd=1.0, lambda_gg=1.0, lambda_gd=1.0)
    model = ACCR(
        g_ab=Affine(0.5, 0.25),
        g_ba=Affine(-1.0),
        d_a=MeanD(),
        d_b=MeanD(),
        augment=Affine(-1.0),
        pool_size=0,
        init_std=None,
        lambda_real=1.0,
        lambda_fake=2.0,
        lambda_rec=3.0,
        fake_source=fake_source,
        cross=cross,
    )
    a = torch.full((2, 3, 4, 4), 0.5)
    b = torch.full((2, 3, 4, 4), -0.25)
    g_terms, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    got = {k: v.item() for k, v in {**g_terms, **d_terms}.items()}
    assert got == pytest.approx(BY_HAND, abs=1e-6)


class StepWatcher(L.Callback):
    """Records, for each optimizer step, which networks' gradients the backward before it touched and which
    networks' parameters the step changed (hooks on the real optimizers)."""

    def __init__(self):
        self.steps = []

    def on_train_start(self, trainer, pl_module):
        def snapshot(what):
            return {n: None if what(p) is None else what(p).detach().clone() for n, p in pl_module.named_parameters()}

        def nets_changed(before, after):
            def same(x, y):
                return (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))

            return {n.split(".")[0] for n in before if not same(before[n], after[n])}

        grads = snapshot(lambda p: p.grad)  # gradients as the previous step left them
        for label, opt in zip(("G", "D"), trainer.optimizers):
            params = {}

            def pre(optimizer, args, kwargs, params=params, label=label):
                now = snapshot(lambda p: p.grad)
                self.steps.append({"step": label, "grads": nets_changed(grads, now)})
                params.update(snapshot(lambda p: p))

            def post(optimizer, args, kwargs, params=params):
                self.steps[-1]["params"] = nets_changed(params, snapshot(lambda p: p))
                grads.update(snapshot(lambda p: p.grad))

            opt.register_step_pre_hook(pre)
            opt.register_step_post_hook(post)


def watched_fit(model, cache_dir):
    L.seed_everything(0)
    watcher = StepWatcher()
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=8, batches_per_epoch=2)
    quiet_trainer(max_epochs=1, callbacks=[watcher], limit_val_batches=0, enable_checkpointing=False).fit(model, dm)
    return watcher.steps


G_NETS = {"g_ab", "g_ba"}
D_NETS = {"d_a", "d_b"}
EXPECTED_STEPS = [{"step": "G", "grads": G_NETS, "params": G_NETS}, {"step": "D", "grads": D_NETS, "params": D_NETS}]


@pytest.mark.parametrize("cls", [CycleGAN, ACCR])
def test_each_backward_and_step_touch_only_its_networks(cls, cache_dir):
    # the G backward must leave D's gradients alone (toggle_optimizer freezes D), and the reverse
    assert watched_fit(tiny(cls), cache_dir) == EXPECTED_STEPS * 2


def test_step_watcher_sees_missing_toggles(cache_dir, monkeypatch):
    # without toggling, the adversarial G loss puts gradients on D: the test above must fail then
    monkeypatch.setattr(CycleGAN, "toggle_optimizer", lambda self, opt: None)
    monkeypatch.setattr(CycleGAN, "untoggle_optimizer", lambda self, opt: None)
    steps = watched_fit(tiny(CycleGAN), cache_dir)
    assert steps[0] == {"step": "G", "grads": G_NETS | D_NETS, "params": G_NETS}


def test_lr_schedule_constant_then_linear_then_zero():
    model = tiny(CycleGAN, lr_constant_epochs=2, lr_decay_epochs=2)
    factors = [model.lr_schedule(e) for e in range(8)]
    # 1 - (e + 1 - 2) / 3 from epoch 2 on; epochs 5-7 would be -1/3, -2/3, -1 without the clamp
    assert factors == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 0.0, 0.0, 0.0, 0.0])
    assert min(factors) == 0.0


@pytest.mark.parametrize("max_epochs", [-1, 1, 5, 6])
def test_run_as_long_as_the_schedule_or_shorter_is_accepted(max_epochs):
    model = tiny(CycleGAN, lr_constant_epochs=2, lr_decay_epochs=4)
    model.trainer = quiet_trainer(max_epochs=max_epochs)
    model.setup("fit")  # -1: epochs unbounded (ends on max_steps), 1 and 5: shorter, 6: the whole schedule


def test_run_longer_than_the_schedule_is_refused_naming_the_three_values(cache_dir):
    model = tiny(CycleGAN, lr_constant_epochs=2, lr_decay_epochs=4)
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=4, batches_per_epoch=1)
    message = (
        r"^trainer.max_epochs=7 is longer than the LR schedule: model.lr_constant_epochs=2 \+ "
        r"model.lr_decay_epochs=4 = 6 epochs .*set trainer.max_epochs <= 6"
    )
    with pytest.raises(ValueError, match=message):
        quiet_trainer(max_epochs=7, limit_val_batches=0, enable_checkpointing=False).fit(model, dm)
    assert model.g_ab.model[1].weight.grad is None  # refused before any step


def _sgd_with_schedule(constant, decay):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    return opt, ConfiguredLambdaLR(opt, LinearDecay(constant, decay))


def test_resume_follows_the_configured_schedule_not_the_checkpoints():
    opt, sched = _sgd_with_schedule(1, 3)
    for _ in range(2):  # two epochs: the next one has factor 1 - (2 + 1 - 1) / 4 = 1/2
        opt.step()
        sched.step()
    opt_state = opt.state_dict()
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"constant": 1, "decay": 3}]  # what plain LambdaLR would restore

    same_opt, same = _sgd_with_schedule(1, 3)  # unchanged config: the uninterrupted LR, exactly
    same_opt.load_state_dict(opt_state)
    same.load_state_dict(state)
    assert same_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.1 * 0.5

    new_opt, new = _sgd_with_schedule(2, 6)
    new_opt.load_state_dict(opt_state)
    with pytest.warns(
        UserWarning,
        match=r"LinearDecay\(constant=1, decay=3\) differs from the configured "
        r"LinearDecay\(constant=2, decay=6\).*applies from epoch 2 on",
    ):
        new.load_state_dict(state)
    assert vars(new.lr_lambdas[0]) == {"constant": 2, "decay": 6} and new.last_epoch == 2
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 1 / 7))  # 1 - (2 + 1 - 2) / 7
    new.step()
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.1 * (1 - 2 / 7))

    plain_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # the behaviour this replaces
    plain = torch.optim.lr_scheduler.LambdaLR(plain_opt, LinearDecay(2, 6))
    plain.load_state_dict(state)
    assert vars(plain.lr_lambdas[0]) == {"constant": 1, "decay": 3}


def test_translation_modules_schedule_with_the_configured_scheduler():
    model = tiny(CycleGAN, lr_constant_epochs=2, lr_decay_epochs=4)
    _, schedulers = model.configure_optimizers()
    assert [type(s) for s in schedulers] == [ConfiguredLambdaLR] * 2
    assert all(s.lr_lambdas[0] is model.lr_schedule for s in schedulers)


def test_wrong_channel_count_is_named():
    model = tiny(CycleGAN)
    with pytest.raises(ValueError, match=r"domain A images have shape \(2, 1, 32, 32\) \(1 channels\).*expects 3"):
        model.check_channels(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32))


def test_cross_terms_off_by_default_and_only_the_weighted_ones_on():
    a, b = images()
    for kwargs, expected in (
        ({}, set()),
        ({"lambda_dd": 1.0}, {"cross_dd_ab", "cross_dd_ba"}),
        ({"lambda_gg": 1.0}, {"cross_gg_a", "cross_gg_b"}),
        ({"lambda_gd": 1.0}, {"cross_gd_ab", "cross_gd_ba"}),
    ):
        model = tiny(ACCR, cross=CrossNetworkConsistency(**kwargs))
        g_terms, imgs = model.generator_loss(a, b)
        d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
        assert {k for k in {**g_terms, **d_terms} if k.startswith("cross")} == expected
        assert all(v > 0 for k, v in {**g_terms, **d_terms}.items() if k.startswith("cross"))
    assert not any(k.startswith("cross") for k in tiny(ACCR).generator_loss(a, b)[0])


def test_paired_augment_shares_one_draw():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    first, second = paired_augment(tiny(ACCR).augment, x, x)
    assert torch.equal(first, second) and not torch.equal(first, x)
    third, fourth = paired_augment(tiny(ACCR).augment, x, x)  # the next call draws anew
    assert torch.equal(third, fourth) and not torch.equal(third, first)


BAD_ARGUMENTS = [
    (CycleGAN, {"lambda_cyc": -1.0}, "lambda_cyc must be >= 0, got -1.0"),
    (CycleGAN, {"lambda_idt": -0.5}, "lambda_idt must be >= 0, got -0.5"),
    (CycleGAN, {"pool_size": -1}, "pool_size must be >= 0, got -1"),
    (CycleGAN, {"lr_constant_epochs": -1}, "lr_constant_epochs must be >= 0, got -1"),
    (CycleGAN, {"lr_decay_epochs": -2}, "lr_decay_epochs must be >= 0, got -2"),
    (CycleGAN, {"init_std": 0.0}, "init_std must be > 0, got 0.0"),
    (CycleGAN, {"cycle_loss": "huber"}, "cycle_loss='huber' is not one of 'l1', 'l2', 'feature'"),
    (CycleGAN, {"classifier_a": "a.ckpt"}, "classifier_a and classifier_b are set together or not at all"),
    (CycleGAN, {"lambda_cyc": float("nan")}, "lambda_cyc must be >= 0, got nan"),
    (CRCycleGAN, {"lambda_real": -10.0}, "lambda_real must be >= 0, got -10.0"),
    (CRCycleGAN, {"cr_reduce": "sum"}, "cr_reduce='sum' is not one of 'elementwise', 'mean'"),
    (ACCR, {"lambda_fake": -1.0}, "lambda_fake must be >= 0, got -1.0"),
    (ACCR, {"lambda_rec": -5.0}, "lambda_rec must be >= 0, got -5.0"),
    (ACCR, {"fake_source": "history"}, "fake_source='history' is not one of 'pool', 'current'"),
    (ACCR, {"lambda_real": -1.0}, "lambda_real must be >= 0, got -1.0"),
    (CrossNetworkConsistency, {"lambda_dd": -1.0}, "lambda_dd must be >= 0, got -1.0"),
    (CrossNetworkConsistency, {"lambda_gg": -1.0}, "lambda_gg must be >= 0, got -1.0"),
    (CrossNetworkConsistency, {"lambda_gd": -0.1}, "lambda_gd must be >= 0, got -0.1"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_ARGUMENTS, ids=lambda v: getattr(v, "__name__", None))
def test_bad_argument_is_named_with_its_value(cls, kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        tiny(cls, **kwargs) if issubclass(cls, CycleGAN) else cls(**kwargs)


def test_boundary_values_are_accepted():
    zeros = dict(lambda_cyc=0.0, lambda_idt=0.0, pool_size=0, lr_constant_epochs=0, lr_decay_epochs=0)
    model = tiny(ACCR, **zeros, lambda_real=0.0, lambda_fake=0.0, lambda_rec=0.0, cross=CrossNetworkConsistency())
    assert model.lambda_rec == 0.0 and model.pool_a.size == 0 and model.lr_schedule(0) == 0.0
