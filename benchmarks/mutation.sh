#!/usr/bin/env bash
# Mutation testing of the pure cores against the fast tier (docs/testing.md has the last score and every
# survivor). Not part of .ci/run: about two hours on 2 cores (1 h 56 min shared with other work, 2026-12-06).
#
#   pip install -r requirements-mutation.txt    # mutmut, pinned
#   bash benchmarks/mutation.sh                 # from anywhere; MUTATION_CHILDREN=1 to use one core
#
# mutmut copies flow_steps/ and tests/ into mutants/ (git-ignored), rewrites the modules listed in
# pyproject.toml's [tool.mutmut] only_mutate, and runs, for each mutant, the fast-tier tests that reach
# the mutated function (settings in [tool.mutmut]). The scope below narrows three modules to their pure
# decisions; docs/testing.md says what is left out and why. Prints every survivor and the score.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD"  # this checkout's flow_steps, even when another one is pip-installed editable

SCOPE=(
    "flow_steps.data.ingest.*"
    "flow_steps.data.reading.*"
    "flow_steps.data.sessions.*"
    "flow_steps.data.tickers.*"
    "flow_steps.data.findings.*"
    "flow_steps.data.closes.*"
    "flow_steps.config.secrets.*"
    "flow_steps.config.errors.*"
    "flow_steps.model.features.*"
    "flow_steps.model.intervals.*"
    "flow_steps.model.request_checks.*"
    "flow_steps.model.adaptive.*"
    "flow_steps.training.evaluation.x_[!s]*"  # all but statistical_peer_forecasts (statsforecast fits)
    "flow_steps.training.evaluation.x_s[!t]*"
    "flow_steps.deployment.degradation.*"
    "flow_steps.deployment.scoring.x_holdout_days*"  # not score(): it loads a model with TensorFlow
    "flow_steps.deployment.scoring.xǁHoldoutDaysǁ*"
    "flow_steps.deployment.scoring.xǁDailyLossesǁ*"
    "flow_steps.deployment.scoring.x_daily_losses*"
    "flow_steps.deployment.scoring.x_naive_losses*"
    "flow_steps.deployment.scoring.x_same_test_days*"
    "flow_steps.deployment.scoring.x_losses_from_predictions*"
    "flow_steps.deployment.scoring.x_score_from_training*"
    "flow_steps.deployment.scoring.x_model_score*"
    "flow_steps.deployment.scoring.x_day_text*"
    "flow_steps.deployment.promotion.*"  # the decisions; the registry's part is registration.py's
    "flow_steps.deployment.evidence.*"
    "flow_steps.deployment.versions.x_model_description*"
    "flow_steps.runtime.outages.x_[!t]*"  # all but tried_briefly (MLflow calls, the slow tier's)
    "flow_steps.config.spec.*"
)

rm -rf mutants
mutmut run --max-children "${MUTATION_CHILDREN:-2}" "${SCOPE[@]}" > mutants.log 2>&1 || {
    tail -n 40 mutants.log
    exit 1
}
mutmut results --all true > mutants/results.txt
python - "${SCOPE[@]}" <<'PYTHON'
import fnmatch
import sys
from collections import Counter

scope = sys.argv[1:]
status = {}
for line in open("mutants/results.txt"):
    name, _, verdict = line.strip().rpartition(": ")
    if name and any(fnmatch.fnmatchcase(name, pattern) for pattern in scope):
        status[name] = verdict
counts = Counter(status.values())
killed = counts["killed"] + counts["timeout"]
print("Survivors (and mutants no fast test reaches):")
for name, verdict in sorted(status.items()):
    if verdict not in ("killed", "timeout"):
        print(f"  {verdict}: {name}")
print(f"Score: {killed} / {len(status)} = {killed / len(status):.1%} killed ({dict(counts)})")
print("See one: mutmut show NAME")
PYTHON
