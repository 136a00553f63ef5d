#!/usr/bin/env bash
# The label-cleaning evaluation of docs/results/clean/: 10% and 20% symmetric label noise
# injected into 10,000 Fashion-MNIST training images; three model types, 3-fold out-of-sample
# probabilities; precision and recall of the flags (and cleanlab's on the same probabilities);
# test accuracy after retraining on the noisy, the cleaned and the clean labels (3 seeds).
set -euo pipefail
TB=${TRICKBAG:-trickbag}
# (the committed results ran the three commands at once, each in its own process)
for rate in 10 20; do
  $TB clean --config configs/fashion_mnist_clean.yaml data.label_noise.rate=0.$rate \
      --models small_cnn:width=16,mlp,resnet_cifar:depth=8,width=8 --retrain-seeds 3 --out docs/results/clean/noise-$rate
done
$TB clean --config configs/fashion_mnist_clean.yaml data.label_noise=null --rank-unlabeled --pool test \
    --models small_cnn:width=16,mlp,resnet_cifar:depth=8,width=8 --out docs/results/clean/rank-unlabeled
