#!/usr/bin/env bash
# Train, evaluate and package the pretrained models that mistnet ships (`make pretrained`):
#   mnist-hard-classifier   the demo preset mnist-hard-cpu (multi-instance classification)
#   mnist-hard-autoencoder  the preset mnist-hard-recon-cpu (the MIST auto-encoder)
# both on MNIST-hard scenes made of full MNIST digits, for STEPS steps each. Each model's file
# records the commands below (as run) and its test metrics; `mist models` shows them.
#
# Full MNIST must be in the data cache first: `mist data download mnist`. About an hour per
# model on 2 CPU cores at 2,000 steps. Settings, as environment variables:
#   STEPS (2000), THREADS (1: as the shipped models were trained; the thread count changes the
#   last bits of the arithmetic), WORK (pretrained-work: data and runs),
#   OUT (src/mistnet/weights: the package's registry), MIST (.venv/bin/mist),
#   MODELS (the names to make; default both).
set -euo pipefail

STEPS=${STEPS:-2000}
THREADS=${THREADS:-1}
WORK=${WORK:-pretrained-work}
OUT=${OUT:-src/mistnet/weights}
MIST=${MIST:-.venv/bin/mist}
MODELS=${MODELS:-mnist-hard-classifier mnist-hard-autoencoder}

data="$WORK/mnist-hard"
make_data="mist data make mnist-hard --digits mnist --n-train 20000 --n-val 300 --n-test 2000 --seed 0 --out $data"

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
    train="mist train --preset $(preset_of "$name") --data $data --set train.steps=$STEPS --threads $THREADS --out $run"
    evaluate="mist eval $run --split test"
    # shellcheck disable=SC2086
    "$MIST" ${train#mist } --no-progress
    # shellcheck disable=SC2086
    "$MIST" ${evaluate#mist }
    "$MIST" models package "$run" --name "$name" --out "$OUT" \
        --command "$make_data && $train && $evaluate"
done
MISTNET_MODELS="$OUT" "$MIST" models
