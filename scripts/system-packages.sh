#!/usr/bin/env bash
# Installs Debian packages for commands that are missing: arguments are command:package pairs.
# Uses apt-get as root (or through sudo); where neither works it says what to install and goes on.
set -euo pipefail
missing=()
for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo -n"
echo "[bootstrap] installing ${missing[*]} (apt)"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null; }; then
    echo "[bootstrap] warning: could not install ${missing[*]}; install them with apt to run every test" >&2
fi
