"""The package as a user installs it: a wheel built offline, installed into a fresh venv, run from another folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("coadv", "attacks", "callbacks", "configs", "datamodules", "lightning_modules", "nets")
# every package of the source tree, subpackages too (a subpackage missing from pyproject's list is absent from the wheel)
PACKAGES = sorted({f.parent.relative_to(ROOT).as_posix() for top in TOP for f in (ROOT / top).rglob("__init__.py")})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the source tree, so no build/ folder is left in (or reused from) the checkout."""
    source = tmp_path_factory.mktemp("source") / "coadv"
    out = tmp_path_factory.mktemp("wheel")
    junk = shutil.ignore_patterns(
        ".git",
        ".venv",
        "build",
        "runs",
        ".cache",
        "checkpoints",
        "wandb",
        "*.egg-info",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
    )
    shutil.copytree(ROOT, source, ignore=junk)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (path,) = out.glob("coadv-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; the pinned dependencies come from this interpreter's site-packages."""
    env = tmp_path_factory.mktemp("venv")
    venv.create(env, with_pip=False)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(env / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    site = next((env / "lib").glob("python3*/site-packages"))
    # a plain path line: the editable install's own .pth finder in the dev venv is not processed from here
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def test_wheel_holds_every_package_and_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names, package
    assert {"configs/translation/method/accr.yaml", "configs/translation/direction/m2mm.yaml"} <= set(names)
    assert "configs/defaults.yaml" in names
    assert "configs/weights/accr_m2mm.pt" in names  # the demo's start weights
    assert any(n.startswith("datamodules/embedded/mnist/") and n.endswith(".gz") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "coadv = coadv.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(installed / "bin" / "coadv"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled", "HOME": str(cwd)},
    )


@pytest.mark.slow  # about 40 s on 2 cores: the help of every subcommand and a fit from another folder
def test_installed_command_runs_from_another_folder(installed, tmp_path):
    help_text = run(installed, tmp_path, "--help")
    assert help_text.returncode == 0, help_text.stderr
    for command in ("fit", "test", "study", "sweep", "compare-attacks", "tune-attacks", "demo", "corpus"):
        assert f"  {command}" in help_text.stdout
    for tool in ("study", "compare-attacks", "tune-attacks"):  # their modules live in subpackages
        done = run(installed, tmp_path, tool, "--help")
        assert done.returncode == 0, done.stderr
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import coadv, configs; print(coadv.__file__);print(configs.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert str(installed) in where.stdout and str(ROOT) not in where.stdout  # the wheel, not the checkout
    translation = ["-c", "configs/translation/method/accr.yaml", "-c", "configs/translation/direction/m2mm.yaml"]
    printed = run(installed, tmp_path, "fit", "--print_config", *translation)
    assert printed.returncode == 0, printed.stderr
    assert "class_path: lightning_modules.ACCR" in printed.stdout
    assert "class_path: nets.ResnetGenerator" in printed.stdout
    # a real run from the installed package: embedded digits found as package data, files written here
    fit = run(
        installed,
        tmp_path,
        "fit",
        "-c",
        "configs/classifier/base.yaml",
        "-c",
        "configs/classifier/mnist.yaml",
        "--trainer.fast_dev_run=true",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert "`fast_dev_run` mode" in fit.stdout + fit.stderr


def test_unknown_command_is_one_line(installed, tmp_path):
    done = run(installed, tmp_path, "trian")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "coadv: unknown command 'trian'; valid commands: fit, validate, test, predict, study, sweep, compare-attacks, "
        "tune-attacks, demo, corpus"
    ]
