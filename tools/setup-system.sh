#!/usr/bin/env bash
# Install the Debian packages halab needs, when root; otherwise print the command.
# Quick when everything is there already: dpkg is asked first, apt only for what is missing.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "halab: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "halab: these Debian packages are missing: ${missing[*]}" >&2
  echo "halab: install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  echo "halab: tests that need them will be skipped with that reason." >&2
fi
