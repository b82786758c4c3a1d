"""VoxCeleb1 (standard layout) for speaker verification: training crops with speaker labels, and trials.

Layout: ``root/wav/<speaker>/<video>/<utt>.wav`` (16 kHz mono; ``.flac`` is read too), trial lists
``veri_test.txt`` / ``veri_test2.txt`` with lines ``label path1 path2`` (paths relative to ``root/wav``), the
identification split ``iden_split.txt`` (``set path``, 1 = train). Audio is read with soundfile (torchaudio.load needs
torchcodec + FFmpeg). VoxCeleb2 ships m4a (AAC): convert it to wav with FFmpeg first.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.audio import (
    PREPROCESS,
    SAMPLE_RATE,
    CropDataset,
    UtteranceDataset,
    open_audio,
    pad_trials,
    pad_utterances,
    read_wave,
)
from datamodules.sampling import ResumableLoader, global_batches, sharded_loader
from datamodules.trials import (
    InOrder,
    TrialDataset,
    index_trials,
    list_training_files,
    read_iden_split,
    read_trials,
    speaker_of,
)


class VoxCelebDataModule(L.LightningDataModule):
    """VoxCeleb1 for speaker verification (no I/O in ``__init__``).

    Training batches: ``(waves [B, crop], speaker [B])`` random crops from every speaker not in the trial list
    (the VoxCeleb1 protocol keeps test speakers out of training); only ``fit`` lists the training files, so
    validate / test / predict run on a folder holding nothing but the trial utterances. Validation/test batches:
    padded trials ``{"enrol", "enrol_len", "test", "test_len", "label", "index"}`` from ``trial_list``. After
    ``setup``, ``eval_utterances`` (distinct trial utterances), ``trial_pairs`` ``[N, 2]`` (indices into them) and
    ``trial_labels`` ``[N]`` describe the same trials, and ``utterance_dataloader()`` reads each utterance once.
    ``eval_batches`` (``"trials"``) is what validation / test / predict yield: a module that embeds each utterance
    once (``TrialScoring``) sets it to ``"utterances"`` for its run.

    Args:
        root: VoxCeleb1 folder holding ``wav/`` and the trial list.
        trial_list: trial list file name under ``root`` (``veri_test.txt``, ``veri_test2.txt``) or a path.
        crop_seconds: length of training crops.
        eval_max_seconds: cut trial utterances to this length; ``None`` keeps them whole.
        batch_size: training batch size.
        eval_batch_size: trials per evaluation batch.
        num_workers: DataLoader workers (kept alive between epochs when > 0).
        pin_memory: page-locked batches, for faster copies to a GPU.
        skip_missing_trials: drop trials whose files are missing instead of raising (off: nothing is skipped
            silently).
        max_trials: keep the first ``max_trials`` trials of the list (``None``: all).
        trial_offset: skip this many trials of the list first (0): ``trial_offset=1000, max_trials=12`` is a
            tuning split disjoint from the evaluation trials ``max_trials=40``.
        iden_split: train on subset 1 of this identification split file (e.g. ``iden_split.txt`` under ``root``)
            instead of every non-trial speaker's files; trial speakers are removed from it too (VoxCeleb1's split
            covers all 1,251 speakers).
        synthesize: when ``root/wav`` is absent, write the synthetic corpus there first (offline default data).
        synth_speakers: speakers of the synthetic corpus.
        synth_seed: seed of the synthetic corpus.
        sort_trials_by_length: yield trial batches in order of test-utterance length (after ``eval_max_seconds``;
            ties in list order), so that an attack finds many equal lengths per batch; reads each test file's
            header once per loader. ``trial_pairs`` / ``index`` keep list order.
        preprocess: clean-audio preprocessing applied to every trial utterance as it is read (before any attack):
            ``None`` or ``"resemblyzer"`` (``resemblyzer.preprocess_wav``: volume normalisation and VAD trimming,
            the GE2E victim's input pipeline; needs ``coadv[resemblyzer]``). Lengths change: batches by length
            follow the preprocessed audio.
        seed: seed of the training order and crops (>= 0): ``ShardedRandomSampler``, the same epoch on 1 or N
            processes (each runs 1/N of the files' whole batches), resumable mid-epoch.
    """

    def __init__(
        self,
        root: str = ".cache/coadv/synth_vox",
        trial_list: str = "veri_test.txt",
        crop_seconds: float = 2.0,
        eval_max_seconds: float | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 8,
        num_workers: int = 0,
        pin_memory: bool = False,
        skip_missing_trials: bool = False,
        max_trials: int | None = None,
        trial_offset: int = 0,
        iden_split: str | None = None,
        synthesize: bool = False,
        synth_speakers: int = 40,
        synth_seed: int = 0,
        sort_trials_by_length: bool = False,
        seed: int = 0,
        preprocess: str | None = None,
    ) -> None:
        super().__init__()
        if preprocess is not None and preprocess not in PREPROCESS:
            raise ValueError(f"preprocess={preprocess!r}: expected None or one of {sorted(PREPROCESS)}")
        self.preprocess = preprocess
        if seed < 0:
            raise ValueError(f"seed={seed} must be >= 0")
        self.seed = seed
        self.root = Path(root)
        self.trial_list = trial_list
        self.crop = int(crop_seconds * SAMPLE_RATE)
        self.eval_max = eval_max_seconds and int(eval_max_seconds * SAMPLE_RATE)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.skip_missing = skip_missing_trials
        self.synthesize = synthesize
        self.iden_split = iden_split
        self.synth_speakers = synth_speakers
        self.synth_seed = synth_seed
        self.sort_trials_by_length = sort_trials_by_length
        if max_trials is not None and max_trials < 1:
            raise ValueError(f"max_trials={max_trials} must be at least 1 (or None for every trial)")
        self.max_trials = max_trials
        if trial_offset < 0:
            raise ValueError(f"trial_offset={trial_offset} must be >= 0")
        self.trial_offset = trial_offset
        self._training: tuple[list[str], list[str]] | None = None  # (files, speakers), listed on first use
        self.eval_batches = "trials"

    @property
    def trial_path(self) -> Path:
        path = Path(self.trial_list)
        return path if path.is_absolute() or path.parent != Path(".") else self.root / path

    def prepare_data(self) -> None:
        if self.synthesize and not (self.root / "wav").is_dir():
            from datamodules.synth_speech import write_corpus

            write_corpus(self.root, n_speakers=self.synth_speakers, seed=self.synth_seed)

    def missing_data_message(self) -> str:
        """The paragraph raised when ``root/wav`` is absent: what, where, how to get it."""
        return (
            f"{self.root / 'wav'} does not exist. VoxCeleb1 needs root/wav/<speaker>/<video>/<utt>.wav and "
            f"{self.trial_list} (request access at robots.ox.ac.uk/~vgg/data/voxceleb); for the offline synthetic "
            "corpus set data.init_args.synthesize=true"
        )

    def setup(self, stage: str | None = None) -> None:
        wav = self.root / "wav"
        if not wav.is_dir():
            raise FileNotFoundError(self.missing_data_message())
        trials = read_trials(self.trial_path, wav, self.skip_missing)
        self.trial_speakers = {speaker_of(p) for t in trials for p in (t.enrol, t.test)}  # of the whole list
        end = None if self.max_trials is None else self.trial_offset + self.max_trials
        self.trials = trials[self.trial_offset : end]
        if not self.trials:
            raise ValueError(f"trial_offset={self.trial_offset}: {self.trial_path} has only {len(trials)} trials")
        self.eval_utterances, self.trial_pairs, self.trial_labels = index_trials(self.trials)
        self._training = None
        if stage in ("fit", None):
            self._load_training()  # fail at setup, not in the first epoch

    def _list_train_files(self) -> list[str]:
        wav = self.root / "wav"
        if self.iden_split is not None:
            split = Path(self.iden_split)
            files = read_iden_split(split if split.parent != Path(".") else self.root / split, wav)
            source = f"subset 1 of {split}"
        else:
            files = list_training_files(wav)
            source = f"{wav}/<speaker>/<session>/"
        files = [f for f in files if speaker_of(f) not in self.trial_speakers]
        if not files:
            raise FileNotFoundError(
                f"no training audio in {source} after excluding the {len(self.trial_speakers)} trial speakers of "
                f"{self.trial_path}: fit needs utterances of other speakers (validate / test / predict do not)"
            )
        return files

    def _load_training(self) -> tuple[list[str], list[str]]:
        if self._training is None:
            files = self._list_train_files()
            self._training = files, sorted({speaker_of(f) for f in files})
        return self._training

    @property
    def train_files(self) -> list[str]:
        """Training utterances (relative to ``root/wav``); listed at ``setup("fit")`` or on first use."""
        return self._load_training()[0]

    @property
    def speakers(self) -> list[str]:
        """Training speakers, sorted: label ``i`` of a training batch is ``speakers[i]``."""
        return self._load_training()[1]

    @property
    def num_speakers(self) -> int:
        return len(self.speakers)

    def _loader(self, ds: Dataset, batch_size: int, **kwargs) -> DataLoader:
        # own generator: an evaluation pass draws no number from the global RNG (exact resume)
        return DataLoader(
            ds,
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            generator=torch.Generator(),
            **kwargs,
        )

    def train_dataloader(self) -> ResumableLoader:
        index = {s: i for i, s in enumerate(self.speakers)}
        labels = [index[speaker_of(f)] for f in self.train_files]
        ds = CropDataset(self.root / "wav", self.train_files, labels, self.crop)
        world = self.trainer.world_size if self.trainer is not None else 1
        n = global_batches(None, len(ds), self.batch_size, world)
        return sharded_loader(
            ds,
            n,
            self.batch_size,
            self.seed,
            0,
            self.trainer,
            with_seeds=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        if self.eval_batches == "utterances":
            return self.utterance_dataloader(trial_order=True)
        ds = TrialDataset(self.root / "wav", self.trials, self.eval_max, self.preprocess)
        return self._loader(ds, self.eval_batch_size, collate_fn=pad_trials, sampler=self._trial_order())

    def _trial_order(self) -> InOrder | None:
        """Trial indices by test length (stable), when ``sort_trials_by_length``; ``None``: list order."""
        if not self.sort_trials_by_length:
            return None
        frames = {}
        for name in {t.test for t in self.trials}:
            if self.preprocess is not None:  # preprocessing changes the length: read it off the preprocessed audio
                frames[name] = len(read_wave(self.root / "wav" / name, self.eval_max, self.preprocess))
                continue
            with open_audio(self.root / "wav" / name) as f:
                frames[name] = f.frames if self.eval_max is None else min(f.frames, self.eval_max)
        return InOrder(sorted(range(len(self.trials)), key=lambda i: frames[self.trials[i].test]))

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def utterance_dataloader(self, trial_order: bool = False) -> DataLoader:
        """Each of ``eval_utterances`` once: ``{"wave", "length", "index"}`` batches; ``trial_order``: in order of
        first use in the trial list (not sorted), so that a shortened evaluation (``fast_dev_run``, the sanity
        check, ``limit_val_batches``) holds whole trials from the top of the list."""
        ds = UtteranceDataset(self.root / "wav", self.eval_utterances, self.eval_max, self.preprocess)
        order = InOrder(list(dict.fromkeys(self.trial_pairs.flatten().tolist()))) if trial_order else None
        return self._loader(ds, self.eval_batch_size, collate_fn=pad_utterances, sampler=order)
