#!/usr/bin/env bash
# Regenerate requirements.lock (exact pins of every runtime dependency) from a fresh venv.
# Run it whenever pyproject.toml's dependencies change; the container installs from the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install -q . 2>"$TMP/pip.log" || { tail -5 "$TMP/pip.log"; exit 1; }
{
  echo "# Exact pins of bids-deid's runtime dependencies (the container installs from this file)."
  echo "# Regenerate with scripts/update-lock.sh after changing pyproject.toml's dependencies."
  "$TMP/venv/bin/pip" freeze --exclude-editable | grep -v -i '^bids-deid'
} > requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) pins)"
