#!/usr/bin/env bash
# Installs the system packages and npm dependencies, then builds the native
# addon. Needs root (or sudo) for apt-get on Debian or Ubuntu with Node.js 20+.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenblas-dev liblapacke-dev redis-server python3 make g++ docker-compose)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# node-gyp must build against the installed Node headers, never download them.
if [[ -d /usr/include/node ]]; then
  export npm_config_nodedir=/usr
fi
npm ci

# npm does not link a package's own bin into node_modules/.bin, so without
# this `npx pifa` would download and install a copy of the repository.
ln -sf ../../bin/pifa.js node_modules/.bin/pifa
