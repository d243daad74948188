#!/bin/bash
# lr / affine-init tuning for --adapt on church-at-auvers at 128 px (4x cheaper than 256 px), 30 constant-lr steps each
cd "$(dirname "$0")/.."  # run from a checkout; under flock /tmp/heavy.lock nice -n 5 on a shared machine
for spec in "1e-2 mean" "3e-2 mean" "1e-3 mean" "1e-2 base"; do
  set -- $spec
  instyle train --quiet --style church-at-auvers --adapt \
    --adapt-init $2 --lr $1 --iters 30 --decay 0 --size 128 --eval-every 10 --checkpoint-every 1000 \
    --precision fp32 -o runs/adapt/tune/lr$1-$2.safetensors
done
