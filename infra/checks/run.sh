#!/usr/bin/env bash
# Infra checks for .ci/run: Bicep grammar, checkov policy scan, host.json/function.json schemas, and the self-tests
# proving each check fails on a broken input. Creates the two venvs on first use (pinned requirements).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
checks="$repo/infra/checks"
specs="${CMK_SPECS_DIR:-$repo/specs/schemastore}"

# venv_with DIR REQUIREMENTS: (re)install when the requirements file changed since the last install.
venv_with() {
  local venv="$1" requirements="$2"
  if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$requirements" "$venv/.requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/.requirements.txt"
  fi
}

venv_with "$repo/.venv-bicep" "$checks/requirements.txt"
venv_with "$repo/.venv-infra" "$checks/requirements-checkov.txt"

status=0
echo "== Bicep grammar (tree-sitter-bicep)"
"$repo/.venv-bicep/bin/python" "$checks/check_bicep_syntax.py" "$repo/infra" || status=1
echo "== checkov"
"$repo/.venv-bicep/bin/python" "$checks/check_checkov.py" "$repo/.venv-infra/bin/checkov" "$repo/infra" || status=1
echo "== host.json / function.json schemas"
"$repo/.venv-bicep/bin/python" "$checks/check_function_schemas.py" "$repo" "$specs" || status=1
echo "== self-tests (each check fails on a broken copy)"
CHECKOV="$repo/.venv-infra/bin/checkov" CMK_SPECS_DIR="$specs" \
  "$repo/.venv-bicep/bin/python" "$checks/test_checks.py" || status=1
exit "$status"
