#!/bin/bash
# Victim EERs over three training seeds on the embedded LibriSpeech trials, one thread per process.
# Run from the repository root with the venv's coadv on PATH: bash docs/attacks/victim_seeds.sh
# Seed s trains in runs/victim_seeds/s<s>/ (the configs write checkpoints/victims/ under the working folder).
set -e
export OMP_NUM_THREADS=1 WANDB_MODE=disabled
COADV=$(command -v coadv)
PYTHON=$(dirname "$COADV")/python
ROOT=$PWD/runs/victim_seeds
for seed in 0 1 2; do
  for victim in ivector ecapa seresnet34; do
    mkdir -p "$ROOT/s$seed" && cd "$ROOT/s$seed"
    # the composed configs/speaker files of <victim>_libri (coadv.constants.speaker_files)
    read -ra CONFIGS <<< "$("$PYTHON" -c "from coadv.constants import speaker_args; print(*speaker_args('${victim}_libri'))")"
    [ -f "checkpoints/victims/${victim}_libri.ckpt" ] || "$COADV" fit "${CONFIGS[@]}" \
      --seed_everything=$seed --trainer.enable_progress_bar=false > "fit_$victim.log" 2>&1
    eer=$("$COADV" validate "${CONFIGS[@]}" --ckpt_path "checkpoints/victims/${victim}_libri.ckpt" \
      --trainer.enable_progress_bar=false --trainer.logger=false 2>&1 | awk '/val\/eer/ {print $2}')
    echo "$victim seed=$seed eer=$eer"
  done
done
