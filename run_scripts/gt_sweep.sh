#!/usr/bin/env bash
# The paper's greater-than sweep on GPT-2 (see sweep.sh for the settings and variables):
#   MODEL=gpt2 bash run_scripts/gt_sweep.sh
exec bash "$(dirname "$0")/sweep.sh" gt "$@"
