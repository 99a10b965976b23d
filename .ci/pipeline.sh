#!/usr/bin/env bash
# The CI-size pipeline and the benchmark regression check.
#
#   .ci/pipeline.sh                   # run it in a temporary copy, compare with .ci/baseline.json
#   .ci/pipeline.sh --write-baseline  # deliberately accept this run's figures as the new baseline
#
# The copy holds the project's files as a commit would (tracked + untracked, not ignored) with
# .ci/params-ci.yaml merged into params.yaml, in a fresh git repo, so the workspace is untouched.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH" MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
git ls-files -z --cached --others --exclude-standard | grep -zv '^dvc.lock$' | xargs -0 cp --parents -t "$work"
cd "$work"
python - <<'PY'
import yaml

def merge(base, over):
    for key, value in over.items():
        if isinstance(value, dict):
            merge(base[key], value)
        else:
            base[key] = value

params = yaml.safe_load(open("params.yaml"))
merge(params, yaml.safe_load(open(".ci/params-ci.yaml")))
yaml.safe_dump(params, open("params.yaml", "w"), sort_keys=False)
PY
git init -q -b main && git add -A && git -c user.name=ci -c user.email=ci@localhost commit -qm ci
started=$SECONDS
dvc repro --quiet
echo "CI-size pipeline: $((SECONDS - started)) s"
python -m pipeline.regression --baseline "$root/.ci/baseline.json" \
  --metrics reports/metrics.json --summary reports/train_summary.json "$@"
