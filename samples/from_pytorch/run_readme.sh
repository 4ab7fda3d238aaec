#!/usr/bin/env bash
# Runs the README's "Bring a PyTorch model" commands, as written, in a copy of this folder:
#   run_readme.sh README.md KILN_PREFIX WORKDIR
# python3 is Debian's (with torch), kiln_export comes from the repository's python/, KILN_PREFIX is an installed Kiln.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
readme="$1"
export KILN_PREFIX="$2"
work="$3"
rm -rf "$work" && mkdir -p "$work/bin"
cp "$here/model.py" "$here/main.cpp" "$here/CMakeLists.txt" "$work/"
ln -s /usr/bin/python3 "$work/bin/python3"
export PATH="$work/bin:$PATH" PYTHONPATH="$here/../../python"
block="$(awk '/^## Bring a PyTorch model/ {on = 1} on && /^```sh$/ {inside = 1; next} inside && /^```$/ {exit}
              inside {print}' "$readme")"
[ -n "$block" ] || { echo "no sh block under \"## Bring a PyTorch model\" in $readme"; exit 1; }
printf '%s\n' "$block"
cd "$work" && bash -euo pipefail -c "$block"
