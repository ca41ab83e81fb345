#!/usr/bin/env bash
# Makes the README's console screenshots (docs/screenshots/*.png) in headless Chromium from
# a seeded hotline: the ignored test `screenshots_for_the_readme` of tests/console.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test console screenshots_for_the_readme -- --ignored --exact
ls -l docs/screenshots
