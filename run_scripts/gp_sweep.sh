#!/usr/bin/env bash
# The original gendered-pronoun sweep on GPT-2: 19 edge targets 0.93-1.4, node target 0.69,
# evaluated on the whole test split (see sweep.sh for the settings and variables):
#   MODEL=gpt2 bash run_scripts/gp_sweep.sh
exec bash "$(dirname "$0")/sweep.sh" gp "$@"
