#!/usr/bin/env bash
# Builds the anchors' own virtual env for bench/causal.py: DoWhy and EconML at their defaults.
# They cap scipy (< 1.16) and scikit-learn (< 1.9) below what Keel uses, so they cannot share
# Keel's .venv; bench/causal.py runs bench/causal_anchors.py with this env's python instead.
#   bash bench/causal_anchors_env.sh          # creates bench/.anchors-venv (gitignored), ~1-2 min
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.anchors-venv"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "dowhy==0.14" econml pandas
"$venv/bin/python" - <<'PY'
import dowhy, econml, scipy, sklearn
print(f"anchors env ready: dowhy {dowhy.__version__}, econml {econml.__version__}, "
      f"scipy {scipy.__version__}, scikit-learn {sklearn.__version__}")
PY
