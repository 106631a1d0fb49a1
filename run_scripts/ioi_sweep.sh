#!/usr/bin/env bash
# The original IOI sweep on GPT-2: 17 edge targets 0.94-1.1, node target 0.72, evaluated
# on the whole test split (see sweep.sh for the settings and variables):
#   MODEL=gpt2 bash run_scripts/ioi_sweep.sh
#   MODEL=/path/to/gpt2 EDGE_TARGETS="1.02" bash run_scripts/ioi_sweep.sh
# IOI-t1: DATASET=data/datasets/ioi-t1. 400 / 100K training examples: TRAIN_SPLIT=train_400 / train_100k.
exec bash "$(dirname "$0")/sweep.sh" ioi "$@"
