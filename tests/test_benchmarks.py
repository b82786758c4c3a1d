"""The speed reference and the levers: the project's CycleGAN step equals a plain loop that follows the original
code's ``optimize_parameters`` (benchmarks/plain_cyclegan.py), through the Trainer and without it; the levers keep
the math (gradients equal to float rounding); the vectorized image pool keeps the per-image semantics."""

import lightning as L
import pytest
import torch
from helpers import quiet_trainer
from torch.utils.data import DataLoader

from benchmarks.plain_cyclegan import PlainCycleGAN
from benchmarks.translation_throughput import Trainerless, build, main, plain_loop
from lightning_modules import CycleGAN
from nets import ImagePool, PatchDiscriminator, ResnetGenerator, init_weights

ORIGINAL_NAMES = {"g_ab": "netG_A", "g_ba": "netG_B", "d_a": "netD_B", "d_b": "netD_A"}


def tiny_nets(norm="instance"):
    torch.manual_seed(0)
    nets = dict(
        g_ab=ResnetGenerator(width=8, n_blocks=1, norm=norm),
        g_ba=ResnetGenerator(width=8, n_blocks=1, norm=norm),
        d_a=PatchDiscriminator(width=8, norm=norm),
        d_b=PatchDiscriminator(width=8, norm=norm),
    )
    return {k: init_weights(v) for k, v in nets.items()}


def batches(n=3, size=4):
    gen = torch.Generator().manual_seed(1)
    return [{k: (torch.rand(size, 3, 32, 32, generator=gen) * 2 - 1, None) for k in "ab"} for _ in range(n)]


def assert_same_weights(module, plain: PlainCycleGAN, nets: dict) -> None:
    for name, start in nets.items():
        ours = getattr(module, name)
        theirs = getattr(plain, ORIGINAL_NAMES[name])
        for (key, p), q, p0 in zip(ours.named_parameters(), theirs.parameters(), start.parameters(), strict=True):
            assert torch.equal(p, q), f"{name}.{key}"
            assert not torch.equal(q, p0) or key.endswith("bias"), f"{name}.{key} never moved"


def test_project_step_equals_the_plain_loop_without_a_trainer():
    nets = tiny_nets()
    plain = plain_loop(nets, "cpu")
    harness = Trainerless(build(CycleGAN, nets, set()))
    for i, batch in enumerate(batches()):
        harness.step(batch, i)
        plain.optimize_parameters(batch["a"][0], batch["b"][0])
    assert_same_weights(harness.module, plain, nets)


def test_project_step_equals_the_plain_loop_through_the_trainer():
    nets = tiny_nets()
    data = batches()
    plain = plain_loop(nets, "cpu")
    for batch in data:
        plain.optimize_parameters(batch["a"][0], batch["b"][0])
    L.seed_everything(0)
    module = build(CycleGAN, nets, set())
    loader = DataLoader(data, batch_size=None, collate_fn=lambda b: b)
    quiet_trainer(max_epochs=1, limit_val_batches=0, enable_checkpointing=False).fit(module, loader)
    assert module.global_step == 6  # 3 batches, 2 optimizer steps each
    assert_same_weights(module, plain, nets)


def test_harness_freezes_the_discriminators_during_the_generator_update_as_lightning_does():
    harness = Trainerless(build(CycleGAN, tiny_nets(), set()))
    opt_g, opt_d = harness.opts
    seen = []
    opt_g.register_step_pre_hook(lambda *_: seen.append([p.grad for p in harness.module.d_a.parameters()]))
    harness.step(batches(1)[0])
    assert seen and all(g is None for g in seen[0])  # D got no gradient from the generator loss
    assert all(p.requires_grad for p in harness.module.parameters())  # and is unfrozen afterwards


def gradients_of_one_step(step, opts) -> list[list[torch.Tensor]]:
    grads = []
    for opt in opts:
        opt.register_step_pre_hook(
            lambda o, *_: grads.append([p.grad.clone() for g in o.param_groups for p in g["params"]])
        )
    step()
    return grads


def assert_same_gradients(ours: list[list[torch.Tensor]], theirs: list[list[torch.Tensor]]) -> None:
    """Equal up to float rounding, in norm per tensor: the L1 terms' gradient is the sign of ``rec - x``, so a
    rounding difference where ``rec = x`` flips a few signs (changes of ~lambda / numel in single entries)."""
    assert [len(g) for g in ours] == [len(g) for g in theirs]
    for ours_step, theirs_step in zip(ours, theirs):
        for a, b in zip(ours_step, theirs_step, strict=True):
            assert torch.linalg.vector_norm(a - b) <= 1e-2 * torch.linalg.vector_norm(b) + 1e-6


@pytest.mark.parametrize("levers", [{"batched"}, {"channels_last"}, {"batched", "channels_last"}])
def test_levers_keep_the_gradients(levers):
    # weights are not compared after several steps: the biases before instance norm have a gradient of exactly 0
    # in exact arithmetic, so Adam turns their rounding noise into full-size random steps
    nets = tiny_nets()
    batch = batches(1)[0]
    plain = plain_loop(nets, "cpu")
    harness = Trainerless(build(CycleGAN, nets, levers))
    theirs = gradients_of_one_step(
        lambda: plain.optimize_parameters(batch["a"][0], batch["b"][0]), [plain.optimizer_G, plain.optimizer_D]
    )
    ours = gradients_of_one_step(lambda: harness.step(batch), harness.opts)
    d_order = [*range(len(list(nets["d_b"].parameters())), len(theirs[1])), *range(len(list(nets["d_b"].parameters())))]
    theirs[1] = [theirs[1][i] for i in d_order]  # the original chains D_A (= d_b) first
    assert_same_gradients(ours, theirs)


def test_batched_passes_fall_back_to_separate_passes_for_batch_norm():
    nets = tiny_nets(norm="batch")
    plain = plain_loop(nets, "cpu")
    harness = Trainerless(build(CycleGAN, nets, {"batched"}))
    for i, batch in enumerate(batches()):
        harness.step(batch, i)
        plain.optimize_parameters(batch["a"][0], batch["b"][0])
    assert_same_weights(harness.module, plain, nets)  # exactly: batch statistics never mix a with b


def sequential_pool(size, stored, images, swap, where):
    """The original per-image loop on given draws (``swap[k]``, ``where[k]`` for the k-th image once full)."""
    stored, out, k = list(stored), [], 0
    for image in images:
        if len(stored) < size:
            stored.append(image)
            out.append(image)
            continue
        if swap[k]:
            out.append(stored[where[k]])
            stored[where[k]] = image
        else:
            out.append(image)
        k += 1
    return torch.stack(out), torch.stack(stored)


@pytest.mark.parametrize(("size", "queries"), [(5, (3, 4, 8)), (2, (6,)), (8, (8, 8))])
def test_vectorized_pool_follows_the_per_image_loop(size, queries):
    pool = ImagePool(size)
    stored = []
    label = 0
    for n in queries:
        images = torch.arange(label, label + n, dtype=torch.float32).view(n, 1, 1, 1)
        label += n
        m = max(0, n - max(0, size - len(stored)))
        torch.manual_seed(n)
        swap = (torch.rand(m) < 0.5).tolist()  # the pool's own draws
        where = torch.randint(size, (m,)).tolist()
        expected_out, expected_pool = sequential_pool(size, stored, list(images), swap, where)
        torch.manual_seed(n)
        out = pool.query(images)
        assert torch.equal(out, expected_out) and torch.equal(pool.images, expected_pool)
        stored = list(pool.images)


def test_benchmark_prints_both_tables(capsys):
    main(
        [
            "--batch",
            "2",
            "--width",
            "4",
            "--blocks",
            "1",
            "--d-width",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--levers",
            "batched",
            "--methods",
            "CycleGAN,ACCR",
            "--harness",
            "both",
        ]
    )
    out = capsys.readouterr().out
    assert "| plain loop (original optimize_parameters), fp32 |" in out and "| ACCR, batched, 32 |" in out
    assert "| CycleGAN through the Trainer, batched, 32 |" in out and "| CycleGAN, no levers, 32 |" in out


def test_presets_set_flags_that_explicit_flags_override():
    from benchmarks.translation_throughput import parse

    gpu = parse(["--preset", "gpu"])
    assert (gpu.device, gpu.precision, gpu.batch, gpu.harness) == ("cuda", "bf16-mixed", 256, "both")
    assert gpu.levers == {"batched", "channels_last", "compile", "fused"}
    assert parse(["--preset", "gpu", "--batch", "64", "--levers=batched"]).batch == 64
    assert parse(["--preset", "gpu", "--levers=batched"]).levers == {"batched"}
    with pytest.raises(SystemExit):
        parse(["--levers", "turbo"])
