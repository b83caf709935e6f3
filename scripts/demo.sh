#!/usr/bin/env bash
# Sets everything up on a fresh Debian or Ubuntu machine with Node.js 20+,
# then runs the main job through the HTTP service (scripts/demo.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsx scripts/demo.ts "$@"
