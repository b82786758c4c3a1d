"""Loss terms and optimizer-step invariants of CycleGAN, CR-CycleGAN and ACCR."""

import lightning as L
import pytest
import torch
from conftest import quiet_trainer

from datamodules import UnpairedDigitsDataModule
from lightning_modules import ACCR, CRCycleGAN, CycleGAN
from nets import Identity, PatchDiscriminator, ResnetGenerator


def tiny(cls, **kwargs):
    nets = dict(
        g_ab=ResnetGenerator(width=8, n_blocks=1),
        g_ba=ResnetGenerator(width=8, n_blocks=1),
        d_a=PatchDiscriminator(width=8),
        d_b=PatchDiscriminator(width=8),
    )
    return cls(**nets, **kwargs)


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


@pytest.mark.parametrize("fake_source", ["pool", "current"])
def test_consistency_terms_zero_when_T_is_identity(fake_source):
    model = tiny(ACCR, augment=Identity(), fake_source=fake_source)
    a, b = images()
    _, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    cr = {k: v for k, v in d_terms.items() if k.startswith("cr_")}
    assert len(cr) == 6 and all(v.item() == 0 for v in cr.values())
    # and non-zero with a real augmentation, so the check above can fail
    model.augment = torch.nn.Sequential()
    model.augment.forward = lambda x: x.flip(-1)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    assert all(d_terms[k].item() > 0 for k in cr)


def test_switched_off_terms_are_absent():
    model = tiny(ACCR, lambda_real=0.0, lambda_rec=0.0)
    a, b = images()
    _, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    assert {k for k in d_terms if k.startswith("cr_")} == {"cr_fake_a", "cr_fake_b"}
    model = tiny(CycleGAN, lambda_idt=0.0)
    assert "idt_a" not in model.generator_loss(a, b)[0]


class StepWatcher(L.Callback):
    """Records which networks each optimizer step changed (hooks on the real optimizers)."""

    def __init__(self):
        self.changed = []

    def on_train_start(self, trainer, pl_module):
        for label, opt in zip(("G", "D"), trainer.optimizers):
            before = {}

            def pre(optimizer, args, kwargs, before=before):
                before.update({n: p.detach().clone() for n, p in pl_module.named_parameters()})

            def post(optimizer, args, kwargs, before=before, label=label):
                now = dict(pl_module.named_parameters())
                moved = {n.split(".")[0] for n, p in before.items() if not torch.equal(p, now[n])}
                self.changed.append((label, moved))

            opt.register_step_pre_hook(pre)
            opt.register_step_post_hook(post)


@pytest.mark.parametrize("cls", [CycleGAN, ACCR])
def test_each_step_changes_only_its_networks(cls, cache_dir):
    L.seed_everything(0)
    watcher = StepWatcher()
    dm = UnpairedDigitsDataModule("mnist", "mnist_m", cache_dir=cache_dir, batch_size=8, batches_per_epoch=2)
    quiet_trainer(max_epochs=1, callbacks=[watcher], limit_val_batches=0, enable_checkpointing=False).fit(tiny(cls), dm)
    assert watcher.changed == [("G", {"g_ab", "g_ba"}), ("D", {"d_a", "d_b"})] * 2


def test_lr_schedule_constant_then_linear():
    model = tiny(CycleGAN, lr_constant_epochs=2, lr_decay_epochs=2)
    factors = [model.lr_schedule(e) for e in range(5)]
    assert factors == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3, 0.0])


def test_wrong_channel_count_is_named():
    model = tiny(CycleGAN)
    with pytest.raises(ValueError, match=r"domain A images have shape \(2, 1, 32, 32\) \(1 channels\).*expects 3"):
        model.check_channels(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32))


def test_cross_network_term_off_by_default_and_finite_when_on():
    a, b = images()
    for weight, expected in ((0.0, set()), (1.0, {"cross_ab", "cross_ba"})):
        model = tiny(ACCR, lambda_cross=weight)
        _, imgs = model.generator_loss(a, b)
        d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
        assert {k for k in d_terms if k.startswith("cross")} == expected
        assert all(torch.isfinite(v) and v > 0 for k, v in d_terms.items() if k.startswith("cross"))


def test_generator_and_generator_discriminator_cross_terms():
    a, b = images()
    model = tiny(ACCR, lambda_cross_gg=1.0, lambda_cross_gd=1.0)
    g_terms, imgs = model.generator_loss(a, b)
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    assert {"cross_gg_a", "cross_gg_b"} <= set(g_terms) and {"cross_gd_ab", "cross_gd_ba"} <= set(d_terms)
    assert all(torch.isfinite(t) and t > 0 for t in (g_terms["cross_gg_a"], d_terms["cross_gd_ab"]))
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    first, second = model.paired_augment(x, x)
    assert torch.equal(first, second) and not torch.equal(first, x)  # one random draw, shared
    model.augment = Identity()  # with T = identity, D(G(T(a))) and D(T(G(a))) coincide
    d_terms = model.discriminator_loss(a, b, {k: v.detach() for k, v in imgs.items()})
    assert d_terms["cross_gd_ab"].item() == 0 and d_terms["cross_gd_ba"].item() == 0
    assert "cross_gg_a" not in tiny(ACCR).generator_loss(a, b)[0]  # off by default
