#!/usr/bin/env bash
# Train, evaluate and package the pretrained models that mistnet ships (`make pretrained`):
#   mnist-hard-classifier   the demo preset mnist-hard-cpu (multi-instance classification)
#   mnist-hard-autoencoder  the preset mnist-hard-recon-cpu (the MIST auto-encoder)
# both on MNIST-hard scenes made of full MNIST digits. Each model's file records the commands
# below (as run) and its test metrics; `mist models` shows them.
#
# Full MNIST must be in the data cache first: `mist data download mnist`. The shipped models:
#   mnist-hard-classifier   2,000 steps on 1 thread (62 minutes beside other jobs)
#   mnist-hard-autoencoder  1,000 steps on 2 threads (23 minutes, mostly alone)
# Settings, as environment variables:
#   STEPS, THREADS (default: each model's as above; the thread count changes the last bits of
#   the arithmetic, so the shipped numbers need the same), WORK (pretrained-work: data and runs),
#   OUT (src/mistnet/weights: the package's registry), MIST (.venv/bin/mist),
#   MODELS (the names to make; default both).
set -euo pipefail

WORK=${WORK:-pretrained-work}
OUT=${OUT:-src/mistnet/weights}
MIST=${MIST:-.venv/bin/mist}
MODELS=${MODELS:-mnist-hard-classifier mnist-hard-autoencoder}

data="$WORK/mnist-hard"
make_data="mist data make mnist-hard --digits mnist --n-train 20000 --n-val 300 --n-test 2000 --seed 0 --out $data"

steps_of() {
    case "$1" in
        mnist-hard-autoencoder) echo "${STEPS:-1000}" ;;
        *) echo "${STEPS:-2000}" ;;
    esac
}

threads_of() {
    case "$1" in
        mnist-hard-autoencoder) echo "${THREADS:-2}" ;;
        *) echo "${THREADS:-1}" ;;
    esac
}

preset_of() {
    case "$1" in
        mnist-hard-classifier) echo mnist-hard-cpu ;;
        mnist-hard-autoencoder) echo mnist-hard-recon-cpu ;;
        *) echo "train_pretrained.sh: unknown model $1" >&2; exit 2 ;;
    esac
}

if [ ! -d "$data" ]; then
    # shellcheck disable=SC2086  # the command is recorded as one string and run as words
    "$MIST" ${make_data#mist }
fi

for name in $MODELS; do
    run="$WORK/$name"
    train="mist train --preset $(preset_of "$name") --data $data --set train.steps=$(steps_of "$name") --threads $(threads_of "$name") --out $run"
    evaluate="mist eval $run --split test"
    # shellcheck disable=SC2086
    "$MIST" ${train#mist } --no-progress
    # shellcheck disable=SC2086
    "$MIST" ${evaluate#mist }
    "$MIST" models package "$run" --name "$name" --out "$OUT" --overwrite \
        --command "mist data download mnist && $make_data && $train && $evaluate"
done
MISTNET_MODELS="$OUT" "$MIST" models
