"""The study's verdict tables on hand-made cells: against no translation, the ablation table, the metric flags,
the probe's informativeness and the curves' validation floor."""

import torch

from coadv.study import stability
from coadv.study import tables as results
from lightning_modules.translation_metrics import probe_informative


def cell(method, seed, tot, variant="base", real=0.5):
    return {
        "variant": variant,
        "method": method,
        "pair": "m2mm",
        "seed": seed,
        "tot_a2b": tot,
        "tot_b2a": tot,
        "judge_a2b": tot,
        "judge_b2a": tot,
        "joint_a2b": tot,
        "joint_b2a": tot,
        "real_a2b": real,
        "real_b2a": real,
        "kid_a2b": 1.0,
        "kid_b2a": 1.0,
        "fid_a2b": 1.0,
        "fid_b2a": 1.0,
    }


REFERENCE = {
    "pair": "m2mm",
    "tot_src_a2b": 0.5,
    "tot_src_b2a": 0.9,
    "judge_src_a2b": 0.5,
    "judge_src_b2a": 0.5,
    "tot_informative_a2b": 1.0,
    "tot_informative_b2a": 0.0,
    "informative_a2b": 1.0,
    "informative_b2a": 1.0,
    "real_own_a2b": 1.0,
    "real_own_b2a": 0.9,
}


def test_probe_informativeness_is_the_judges_rule_on_source_only_against_the_oracle():
    # 0.025 below the oracle on 1,000 images: 2.8 standard errors; 0.004 below: 0.3
    assert probe_informative(0.947, 0.972, 1000) and not probe_informative(0.960, 0.964, 1000)
    assert not probe_informative(0.947, 0.972, 100)  # the same gap on 100 images is within noise


def test_against_no_translation_differences_each_method_from_the_fixed_reference():
    records = [cell("cyclegan", 0, 0.6), cell("cyclegan", 1, 0.7), cell("accr", 0, 0.4), cell("accr", 1, 0.45)]
    text = results.no_translation_table(records, REFERENCE, "m2mm", "svhn")
    lines = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in text.splitlines()[2:]}
    # CycleGAN: 0.6 - 0.5, 0.7 - 0.5 -> +0.15, t(1) interval 0.15 +- 12.706 * 0.0707 / sqrt 2
    assert (
        "+0.1500 [-0.4853, +0.7853], n = 2: inconclusive" in lines["| CycleGAN | train on translated → real target ↑"]
    )
    # ACCR: -0.1, -0.05 on M→MM; on MM→M 0.4 - 0.9 and 0.45 - 0.9, where the probe is flagged uninformative
    row = lines["| ACCR | train on translated → real target ↑"]
    assert "-0.0750 [-0.3927, +0.2427], n = 2: inconclusive |" in row and "(probe uninformative here)" in row
    records += [cell("accr", 2, 0.42)]  # three seeds, all below: -0.08, -0.05, -0.1 ... interval below 0
    row = results.no_translation_table(records, REFERENCE, "m2mm", "svhn").splitlines()
    assert any(r.startswith("| ACCR | train on") and "does not hold" in r for r in row)
    assert "joint judge" not in text and "KID" not in text  # beating untranslated images there is trivial


def test_ablation_table_differences_each_variant_from_its_base_on_shared_seeds():
    records = [cell("accr", s, 0.6) for s in (0, 1, 2)] + [cell("accr", s, 0.5 + 0.01 * s, "idt_0") for s in (0, 1)]
    records += [cell("accr", 0, 0.9, results.SEARCHED)]  # the searched copies are not an ablation row
    text = results.ablation_table(records, "m2mm", "svhn")
    rows = text.splitlines()[2:]
    assert len(rows) == 1 and rows[0].startswith("| idt_0 | ACCR |")
    assert rows[0].count("-0.095 [-0.159, -0.031] n=2: does not hold") == 4  # -0.1, -0.09 in every column


def test_read_as_target_is_flagged_when_every_arm_sits_at_the_targets_own_level():
    records = [cell(m, s, 0.6, real=1.0) for m in ("cyclegan", "accr") for s in (0, 1)]
    assert "saturated" in results.flag(records, REFERENCE, "m2mm", "real", "a2b")  # own level 1.0
    records[0]["real_a2b"] = 0.8  # one arm below it: the metric can tell them apart
    assert results.flag(records, REFERENCE, "m2mm", "real", "a2b") == ""
    assert " (judge uninformative here)" == results.flag(records, {"informative_a2b": 0.0}, "m2mm", "judge", "a2b")


def test_collapses_are_counted_against_the_validation_floor_only():
    curve = [[0, 0.0], [50, 0.5], [100, 0.1]]  # rose, then fell to 0.1
    records = [
        {"variant": "base", "method": "cyclegan", "pair": "m2mm", "seed": 0, "curve_a2b": curve, "curve_b2a": curve}
    ]
    text = stability.stability_tables(records, {"joint_src_val_a2b": 0.1, "joint_src_val_b2a": 0.0}, "m2mm", "svhn")
    a2b, b2a = text.split("**MM→M**")
    assert "no translation reads 0.100" in a2b and "| 1 of 1 |" in a2b  # at the floor after rising: a collapse
    assert "| 0 of 1 |" in b2a  # above a floor of 0
    test_floor_only = stability.stability_tables(records, {"joint_src_a2b": 0.5}, "m2mm", "svhn")
    assert "collapses not counted" in test_floor_only and "| — of 1 |" in test_floor_only


def test_validation_rates_read_untranslated_images_for_a_missing_net():
    from callbacks.stability import validation_rates

    class Data(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x = x
            self.labels = y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i], self.labels[i]

    class Judge(torch.nn.Module):  # class = 10 * (mean > 0) + digit in the first pixel
        def forward(self, x):
            cls = (x.mean((1, 2, 3)) > 0).long() * 10 + x[:, 0, 0, 0].abs().round().long().clamp(max=9)
            return torch.nn.functional.one_hot(cls, 20).float()

    x = torch.zeros(4, 1, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    dm = type(
        "DM", (), {"val_a": Data(x - 5, torch.tensor([1, 2, 3, 9])), "val_b": Data(x, torch.tensor([1, 2, 0, 4]))}
    )
    # a2b: source A images (mean < 0) read as domain A: never (target, digit); b2a: B images read as B: never either
    assert validation_rates(Judge(), None, None, dm, 10) == {"a2b": 0.0, "b2a": 0.0}
    shift = torch.nn.Identity()
    shift.forward = lambda t: t + 5  # A -> B: first pixel back to 1..4, mean > 0: class 10 + digit
    assert validation_rates(Judge(), shift, None, dm, 3) == {"a2b": 1.0, "b2a": 0.0}  # first 3 match 1, 2, 3


def test_paired_line_by_hand_and_none_without_common_seeds():
    from coadv.study.stability import paired_line

    line = paired_line("accr", "cyclegan", "what", {0: 0.5, 1: 0.7, 5: 9.0}, {0: 0.4, 1: 0.4, 7: -9.0})
    # differences 0.1, 0.3 on the common seeds: mean 0.2, se 0.1, t(0.975, 1) = 12.706
    assert len(line) == 1 and "what: +0.2000 [-1.0706, +1.4706], n = 2: " in line[0]
    assert paired_line("accr", "cyclegan", "what", {0: 0.5}, {1: 0.4}) == []
