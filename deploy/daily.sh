#!/usr/bin/env bash
# The daily schedule of docs/deployment.md, for one ticker, after the close: forecast the next sessions,
# score the logged forecasts (monitor), and retrain (main) only when the champion has degraded.
#
#   deploy/daily.sh TICKER [DATA_SOURCE] [AS_OF] [MAIN OPTIONS...]
#
# DATA_SOURCE defaults to tiingo (TIINGO_API_KEY in the environment), AS_OF to now: a past date replays
# that day as it was. MLFLOW_TRACKING_URI says where the runs go. Exits as the last command did.
set -uo pipefail
cd "$(dirname "$0")/.."
ticker=$1
source=${2:-tiingo}
as_of=${3:-now}
shift $(( $# < 3 ? $# : 3 ))
common=(--company-abbreviation "$ticker" --data-source "$source" --as-of "$as_of")

python -m flow_steps.forecast "${common[@]}" --horizon 5 || exit $?
python -m flow_steps.monitor "${common[@]}" --fail-on-degradation true
status=$?
if [ "$status" -eq 2 ]; then  # degraded: retrain; promotion decides whether the new model serves
    python main.py "${common[@]}" "$@"
    exit $?
fi
exit "$status"
