#!/usr/bin/env bash
# Make .venv with a Python >= 3.12 (ArviZ 1.x needs it) and install mlemap with its test
# extras. Finds the interpreter by itself: python3.13/python3.12 on PATH, then pyenv's.
# Usage: bash scripts/bootstrap.sh            (PYTHON=/path/to/python3.12 to choose)
set -euo pipefail
cd "$(dirname "$0")/.."

is_new_enough() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidates=()
    [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
    candidates+=(python3.13 python3.12 python3 python)
    local root="${PYENV_ROOT:-$HOME/.pyenv}"
    for v in "$root"/versions/3.13* "$root"/versions/3.12*; do
        [ -x "$v/bin/python" ] && candidates+=("$v/bin/python")
    done
    for c in "${candidates[@]}"; do
        if command -v "$c" >/dev/null 2>&1 && is_new_enough "$c"; then
            command -v "$c"; return 0
        fi
    done
    echo "bootstrap: no Python >= 3.12 found (tried: ${candidates[*]})." >&2
    echo "Install one (e.g. 'pyenv install 3.12') or set PYTHON=/path/to/python3.12." >&2
    return 1
}

started=$(date +%s)
step() {  # step "what" command...: say what is being done, do it, say how long it took
    local what=$1 t0
    shift
    t0=$(date +%s)
    echo "bootstrap: $what ..."
    "$@"
    echo "bootstrap:   done in $(( $(date +%s) - t0 )) s"
}

if [ ! -x .venv/bin/python ] || ! is_new_enough .venv/bin/python; then
    python=$(find_python)
    rm -rf .venv
    step "creating .venv with $python ($("$python" --version))" "$python" -m venv .venv
fi
step "upgrading pip" .venv/bin/python -m pip install --quiet --upgrade pip
# experiments: scikit-learn and statsmodels (experiments/run.py's references); test: pytest,
# playwright and the same references (the tests check mlemap against them).
step "installing mlemap (editable) with its dependencies and the experiments and test extras \
(jax, numpyro, optax, arviz, scikit-learn, statsmodels, matplotlib, pytest, playwright; the \
first time this downloads a few hundred MB)" \
    .venv/bin/python -m pip install --quiet -e ".[experiments,test]"
echo "bootstrap: .venv ready ($(.venv/bin/python --version)) in $(( $(date +%s) - started )) s"
