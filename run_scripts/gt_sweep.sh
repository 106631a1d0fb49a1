#!/usr/bin/env bash
# The original greater-than sweep on GPT-2: 15 edge targets 0.95-1.1, node target 0.68,
# evaluated on the whole test split (see sweep.sh for the settings and variables):
#   MODEL=gpt2 bash run_scripts/gt_sweep.sh
exec bash "$(dirname "$0")/sweep.sh" gt "$@"
