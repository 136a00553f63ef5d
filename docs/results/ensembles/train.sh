#!/usr/bin/env bash
# Train the runs of docs/results/ensembles/ at equal training compute (15 epochs of the
# config's data each): five independent 3-epoch members, and one 15-epoch run with a snapshot
# ensemble (5 cycles), SWA (averaging the last 5 epochs) or EMA. From the project root:
#   bash docs/results/ensembles/train.sh runs/ensembles
set -euo pipefail
OUT=${1:-runs/ensembles}
TB=${TRICKBAG:-trickbag}
CFG=configs/fashion_mnist_ensemble.yaml
for s in 1 2 3 4 5; do
  $TB train --config $CFG train.seed=$s --out $OUT/member-$s
done
$TB train --config $CFG train.seed=1 train.epochs=15 schedule=null 'tricks=[{snapshot_ensemble: {cycles: 5}}]' --out $OUT/snapshot
$TB train --config $CFG train.seed=1 train.epochs=15 schedule=null 'tricks=[{swa: {start_epoch: 10, swa_lr: 0.01}}]' --out $OUT/swa
$TB train --config $CFG train.seed=1 train.epochs=15 'tricks=[{ema: {decay: 0.99}}]' --out $OUT/ema
