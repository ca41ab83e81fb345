#!/usr/bin/env bash
# Runs the hotline on its embedded defaults (SQLite under ./data, sip-config/,
# ivr-prompts/), installing the build tools a fresh machine lacks first. Arguments go to
# `hotline serve` (e.g. --sip-listen 127.0.0.1:5060).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
exec cargo run --release -- serve "$@"
