"""A user's mistake ends in one clear line: each mistake, as typed on the command line, and the line it gets."""

from __future__ import annotations

import pytest
import torch

from coadv.cli import main
from coadv.compare import configs
from coadv.constants import translation_args
from coadv.errors import summarize_parse_error

ACCR = ["fit", *translation_args("accr", "m2mm"), "--trainer.logger=false"]
DOMAINS = "mnist, mnist_m, svhn, usps, syn_digits"
ATTACK = ["test", *configs.args("fmn", "ivector"), "--trainer.logger=false", "--data.init_args.max_trials=1"]


@pytest.fixture
def files(tmp_path, tiny_classifiers) -> dict[str, str]:
    """Bad files of every kind, and flags that point the translation config at the tiny judges."""
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint at all")
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, plain)
    return {
        "garbage": str(garbage),
        "plain": str(plain),
        "classifier": tiny_classifiers["mnist"],
        "missing": str(tmp_path / "missing.ckpt"),
        "judges": [
            f"--model.init_args.classifier_a={tiny_classifiers['mnist']}",
            f"--model.init_args.classifier_b={tiny_classifiers['mnist_m']}",
        ],
    }


# (what the user typed after `coadv`, the line they get); {name} is a file of the fixture above
MISTAKES = [
    ([*ACCR, "--data.init_args.domain_b=kmnist"], f"unknown digit domain 'kmnist'; valid domains: {DOMAINS}"),
    ([*ACCR, "--data.init_args.batch_size=0"], "data.batch_size must be >= 1, got 0"),
    ([*ACCR, "--model.init_args.lambda_rec=-5"], "lambda_rec must be >= 0, got -5.0"),
    ([*ACCR, "--trainer.max_epochs=abc"], "trainer.max_epochs: Expected a <class 'int'> (given: abc)"),
    ([*ACCR, "--model.init_args.lambda_recc=3"], "Option 'lambda_recc' is not accepted"),
    ([*ACCR, "--ckpt_path={missing}"], "checkpoint '{missing}' does not exist"),
    ([*ACCR, "--ckpt_path={garbage}"], "checkpoint '{garbage}' is not a readable PyTorch checkpoint: corrupt"),
    ([*ACCR, "--ckpt_path={plain}"], "checkpoint '{plain}' is not a Lightning checkpoint (no state_dict"),
    ([*ACCR, "--ckpt_path={classifier}"], "checkpoint '{classifier}' does not fit lightning_modules.ACCR"),
    # data missing at setup, inside `fit`: one line naming the folder and the setting
    (
        [*ACCR, "--data.init_args.domain_b=svhn", "--data.init_args.data_root={missing}"],
        "MNIST data not found under '{missing}'. Set data.download=true",
    ),
    ([*ACCR, "--data.init_args.domain_b=svhn"], "SVHN has no embedded copy: set data.data_root"),
    (
        [*ACCR, "--data.init_args.domain_b=usps", "--data.init_args.usps_root={missing}"],
        "USPS data not found under '{missing}'. Set data.init_args.usps_root",
    ),
    (["trian"], "coadv: unknown command 'trian'; valid commands: fit, validate, test, predict, study"),
    # a victim file named by an attack config is opened in setup, inside `test`: still one line
    ([*ATTACK, "--model.init_args.checkpoint={missing}"], "victim checkpoint {missing} does not exist"),
    ([*ATTACK, "--model.init_args.checkpoint={garbage}"], "{garbage}: not a coadv speaker checkpoint: unreadable"),
    ([*ATTACK, "--model.init_args.checkpoint={plain}"], "{plain}: not a coadv speaker checkpoint: no state_dict"),
]


@pytest.mark.parametrize(("argv", "expected"), MISTAKES, ids=[" ".join(m[0][3:]) or m[0][0] for m in MISTAKES])
def test_mistake_gets_one_clear_line(argv, expected, files, capsys):
    argv = [a.format(**files) for a in argv] + (files["judges"] if argv[0] == "fit" else [])
    expected = expected.format(**files)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    message = err[-1] if err else str(exit_info.value.code)
    assert expected in message
    assert exit_info.value.code != 0
    assert "Traceback" not in "\n".join(err) and "weights_only=False" not in message


def test_parse_error_summary_keeps_the_nested_reason():
    message = (
        'Parser key "model":\n  Does not validate against any of the Union subtypes\n  Errors:\n'
        "    - Problem with given class_path 'lightning_modules.ACCR':\n        Option 'x' is not accepted\n"
        "    - Expected a <class 'NoneType'>\n  Given value: NestedArg(key='x', val='3')"
    )
    assert summarize_parse_error(message) == (
        "model: Problem with given class_path 'lightning_modules.ACCR': Option 'x' is not accepted "
        "(given: NestedArg(key='x', val='3'))"
    )
