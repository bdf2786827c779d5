#!/usr/bin/env bash
# Train one seed and run every analysis on it; finished stages are skipped on a re-run.
#   bash run_seed.sh 42                  # paper preset (GPU)
#   bash run_seed.sh 42 --preset tiny    # CPU, a few minutes
# Extra arguments go to train.py (any Config field).
set -euo pipefail
cd "$(dirname "$0")"
[ $# -ge 1 ] || { echo "usage: bash run_seed.sh SEED [train.py args]" >&2; exit 2; }
SEED=$1; shift
RUN=$(python3 -c 'import sys, config; print(config.parse_config(sys.argv[1:]).run_dir)' --seed "$SEED" "$@")

echo "== train ($RUN)"
python3 train.py --seed "$SEED" "$@"

stage() {  # stage NAME: run NAME.py on the run unless its analysis JSON exists
  local name=$1; shift
  if [ -f "$RUN/analysis/$name.json" ]; then echo "== $name: done, skipped"; return; fi
  echo "== $name"
  python3 "$name.py" --run "$RUN" "$@"
}
for s in trajectory_pca_uncentered backbone_update_analysis backbone_gradient_analysis backbone_fisher_analysis; do
  stage "$s"
done
echo "== done: $RUN"
