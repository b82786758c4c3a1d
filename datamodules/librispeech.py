"""Real read speech (LibriSpeech, CC BY 4.0) for speaker verification, in the project's speaker layout.

The DataModule reads ``root/wav/<speaker>/<chapter>/<spk>-<chap>-<utt>.flac`` with ``root/veri_test.txt`` (the
VoxCeleb1 layout, chapters standing in for videos), so training, trials and the i-vector EM work as on VoxCeleb1.
With no ``root`` it reads the copy embedded in the project (``datamodules/embedded/librispeech``, see the README
there), rebuilt from ``../shared/data/librispeech_mini`` by::

    python -c "from datamodules.librispeech import build_embedded; build_embedded('../shared/data/librispeech_mini')"

A full LibriSpeech download (``<subset>/<speaker>/<chapter>/*.flac``) or the mini's flat layout is converted once by
``convert_librispeech`` (whole files are symlinked, not copied), which the DataModule runs in ``prepare_data`` when
``source`` is set.
"""

from __future__ import annotations

import os
import re
import shutil
from itertools import combinations
from pathlib import Path

import soundfile as sf

from datamodules.audio import SAMPLE_RATE
from datamodules.voxceleb import VoxCelebDataModule

EMBEDDED = Path(__file__).parent / "embedded" / "librispeech"
FILE_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)\.flac$")
BUILD_COMMAND = "python -c \"from datamodules.librispeech import build_embedded; build_embedded('<librispeech_mini>')\""


def find_utterances(folder: Path) -> dict[str, list[Path]]:
    """Speaker -> sorted ``<spk>-<chap>-<utt>.flac`` files anywhere under ``folder`` (full or flat layout)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist: expected a LibriSpeech subset folder of .flac files")
    by_speaker: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.flac")):
        match = FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: not a LibriSpeech file name '<speaker>-<chapter>-<utterance>.flac'")
        by_speaker.setdefault(match.group(1), []).append(path)
    if not by_speaker:
        raise FileNotFoundError(f"no .flac files under {folder}")
    return by_speaker


def layout_path(path: Path) -> str:
    """``<spk>-<chap>-<utt>.flac`` -> ``<spk>/<chap>/<spk>-<chap>-<utt>.flac`` (relative to ``wav/``)."""
    speaker, chapter, _ = path.name.split("-", 2)
    return f"{speaker}/{chapter}/{path.name}"


def all_pairs_trials(utterances: list[str]) -> list[str]:
    """``label path1 path2`` for every unordered pair of ``utterances`` (label 1: same speaker). Pairs follow the
    sorted paths; targets and non-targets are then merged evenly (the k-th of n trials of a class at (k + 1/2) / n),
    so every prefix of the list (``max_trials``, one evaluation batch) holds both in the list's proportion."""
    pairs = [(int(a.split("/")[0] == b.split("/")[0]), a, b) for a, b in combinations(sorted(utterances), 2)]
    classes = [[p for p in pairs if p[0] == label] for label in (1, 0)]
    keyed = [((k + 0.5) / len(c), 1 - c[0][0], p) for c in classes if c for k, p in enumerate(c)]
    return [f"{label} {a} {b}" for _, _, (label, a, b) in sorted(keyed)]


def _place(src: Path, dst: Path, seconds: float | None, link: bool) -> tuple[int, int]:
    """Write ``src`` to ``dst``: its first ``seconds`` re-encoded as FLAC, else the whole file linked or copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    total = sf.info(str(src)).frames
    if seconds is not None and total > int(seconds * SAMPLE_RATE):
        data, rate = sf.read(str(src), frames=int(seconds * SAMPLE_RATE), dtype="int16")  # int16: samples unchanged
        sf.write(str(dst), data, rate, format="FLAC", subtype="PCM_16")
        return total, len(data)
    if link:
        os.symlink(src.resolve(), dst)
    else:
        shutil.copyfile(src, dst)
    return total, total


def convert_librispeech(
    source: str | Path,
    dest: str | Path,
    train_subsets: tuple[str, ...] = ("train-clean-100",),
    test_subset: str = "test-other",
    train_seconds: float | None = None,
    test_per_speaker: int | None = None,
    link: bool = True,
) -> Path:
    """Put LibriSpeech ``source`` into ``dest/wav/<spk>/<chap>/`` with ``dest/veri_test.txt`` (all pairs of the test
    subset's utterances, the first ``test_per_speaker`` of each speaker) and ``dest/CROPS.tsv`` (what was kept of
    each file: ``file``, ``source_frames``, ``kept_frames``, always from frame 0). Training files longer than
    ``train_seconds`` keep their first ``train_seconds``; all others are linked (``link``) or copied whole."""
    source, dest = Path(source), Path(dest)
    if (dest / "wav").exists():
        raise FileExistsError(f"{dest / 'wav'} already exists: remove it to convert {source} again")
    staging = dest / "wav.partial"  # renamed to wav/ at the end: an interrupted conversion is never read
    if staging.exists():
        shutil.rmtree(staging)
    rows = []
    test = []
    for subset in (*train_subsets, test_subset):
        is_test = subset == test_subset
        for files in find_utterances(source / subset).values():
            for path in files[:test_per_speaker] if is_test else files:
                relative = layout_path(path)
                kept = _place(path, staging / relative, None if is_test else train_seconds, link)
                rows.append((relative, *kept))
                if is_test:
                    test.append(relative)
    trials = dest / "veri_test.txt"
    trials.write_text("\n".join(all_pairs_trials(test)) + "\n")
    lines = ["file\tsource_frames\tkept_frames"] + ["\t".join(map(str, row)) for row in sorted(rows)]
    (dest / "CROPS.tsv").write_text("\n".join(lines) + "\n")
    staging.rename(dest / "wav")
    return trials


def build_embedded(source: str | Path, dest: str | Path = EMBEDDED, train_seconds: float = 4.5) -> Path:
    """Rebuild the embedded copy from ``librispeech_mini``: training utterances cut to their first ``train_seconds``
    (FLAC), the 60 test-other utterances copied unchanged, 1,770 trials, LICENSE.TXT and SPEAKERS.TXT copied.
    The hand-written README.md next to them is left as it is."""
    source, dest = Path(source), Path(dest)
    for name in ("wav", "veri_test.txt", "CROPS.tsv"):
        target = dest / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    trials = convert_librispeech(source, dest, train_seconds=train_seconds, link=False)
    for name in ("LICENSE.TXT", "SPEAKERS.TXT"):
        shutil.copyfile(source / name, dest / name)
    return trials


class LibriSpeechDataModule(VoxCelebDataModule):
    """LibriSpeech speakers for verification: AAM-softmax training crops from the training subsets' speakers,
    trials over every pair of the test subset's utterances (no I/O in ``__init__``). Batches and attributes are
    those of ``VoxCelebDataModule``.

    The default (no ``root``) is the embedded copy: one utterance (its first 4.5 s) from each of 251 train-clean-100
    speakers, ten whole utterances from each of 6 test-other speakers, 1,770 trials (270 target).

    Args:
        root: folder in the speaker layout (``wav/<speaker>/<chapter>/*.flac`` + ``veri_test.txt``); ``None``: the
            embedded copy (read-only).
        source: a LibriSpeech folder (``<subset>/<speaker>/<chapter>/<spk>-<chap>-<utt>.flac``, or the mini's flat
            layout) converted into ``root`` by ``prepare_data`` when ``root/wav`` is absent (files are symlinked).
        train_subsets: subsets of ``source`` whose speakers train the victim.
        test_subset: subset of ``source`` whose utterances make the trials (disjoint speakers).
        test_utterances_per_speaker: trial utterances kept per test speaker (the first, sorted); ``None``: all
            (test-other's 2,939 utterances would give 4.3 million pairs).
        **kwargs: the other arguments of ``VoxCelebDataModule`` (``crop_seconds``, ``batch_size``,
            ``eval_batch_size``, ``num_workers``, ``pin_memory``, ``max_trials``, ...).
    """

    def __init__(
        self,
        root: str | None = None,
        source: str | None = None,
        train_subsets: tuple[str, ...] = ("train-clean-100",),
        test_subset: str = "test-other",
        test_utterances_per_speaker: int | None = 10,
        **kwargs,
    ) -> None:
        if source is not None and root is None:
            raise ValueError(f"source={source!r} needs a writable root to convert into (the embedded copy is not one)")
        if test_utterances_per_speaker is not None and test_utterances_per_speaker < 2:
            raise ValueError(f"test_utterances_per_speaker={test_utterances_per_speaker}: target trials need >= 2")
        super().__init__(root=str(EMBEDDED if root is None else root), trial_list="veri_test.txt", **kwargs)
        self.source = source
        self.train_subsets = tuple(train_subsets)
        self.test_subset = test_subset
        self.test_per_speaker = test_utterances_per_speaker

    def prepare_data(self) -> None:
        if self.source is not None and not (self.root / "wav").is_dir():
            convert_librispeech(
                self.source, self.root, self.train_subsets, self.test_subset, test_per_speaker=self.test_per_speaker
            )

    def missing_data_message(self) -> str:
        return (
            f"{self.root / 'wav'} does not exist. LibriSpeechDataModule reads root/wav/<speaker>/<chapter>/"
            f"<spk>-<chap>-<utt>.flac with root/veri_test.txt. Leave data.init_args.root unset for the copy embedded "
            f"in the project ({EMBEDDED}; if it is missing, rebuild it from the shared librispeech_mini folder with "
            f"{BUILD_COMMAND}), or set data.init_args.source to a LibriSpeech folder (<subset>/<speaker>/<chapter>/"
            "*.flac, CC BY 4.0, openslr.org/12) and data.init_args.root to a writable folder: prepare_data links it "
            "into that layout once."
        )
