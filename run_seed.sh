#!/usr/bin/env bash
# Train one seed and run every analysis on it; a re-run skips what is up to date.
#   bash run_seed.sh 42                                  # paper preset (GPU)
#   bash run_seed.sh 42 --preset tiny                    # CPU, a few minutes
#   bash run_seed.sh 42 --preset tiny --device cpu -- --anchor 20
# Arguments before `--` go to train.py (any Config field); --device goes to the analyses too.
# Arguments after `--` go to every analysis (--device, --anchor, --partial).
# An analysis is rerun when its JSON was made by another commit (or a dirty tree), from another
# config of the run, or on a partial trajectory (python runs.py --fresh); --keep keeps every JSON
# that exists (analyse_run.py runs them all in one process).
# Python: $PYTHON if set, else the activated virtual environment's, else python3 on the PATH.
set -euo pipefail
cd "$(dirname "$0")"
usage="usage: bash run_seed.sh SEED [--keep] [train.py args] [-- analysis args]"
if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    PYTHON=$VIRTUAL_ENV/bin/python
  else
    PYTHON=$(command -v python3 || command -v python || echo python3)
  fi
fi
has_torch='import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)'
"$PYTHON" -c "$has_torch" 2>/dev/null || {
  echo "error: $PYTHON cannot import torch: activate the environment of requirements.txt or set" \
       "PYTHON=/path/to/its/python" >&2; exit 2; }
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
SEED=$1; shift
KEEP=(); TRAIN=(); ANALYSIS=()
while [ $# -gt 0 ]; do
  case $1 in
    --keep) KEEP=(--keep) ;;
    --) shift; ANALYSIS+=("$@"); break ;;
    --device) [ $# -ge 2 ] || { echo "error: --device needs a value" >&2; exit 2; }
              TRAIN+=("$1" "$2"); ANALYSIS+=("$1" "$2"); shift ;;
    --device=*) TRAIN+=("$1"); ANALYSIS+=("$1") ;;
    *) TRAIN+=("$1") ;;
  esac
  shift
done
TRAIN_ARGS=(--seed "$SEED" ${TRAIN[@]+"${TRAIN[@]}"})
RUN=$("$PYTHON" -c 'import sys, config; print(config.parse_config(sys.argv[1:]).run_dir)' \
      "${TRAIN_ARGS[@]}")

echo "== train ($RUN)"
"$PYTHON" train.py "${TRAIN_ARGS[@]}"

# the analyses that are not up to date, the optimizer null and the claims: one Python process
"$PYTHON" analyse_run.py --run "$RUN" ${KEEP[@]+"${KEEP[@]}"} -- ${ANALYSIS[@]+"${ANALYSIS[@]}"}
echo "== done: $RUN"
