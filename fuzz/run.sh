#!/usr/bin/env bash
# Runs the cargo-fuzz targets for SECONDS each (default 60; all five unless some are named),
# with the committed corpus and dictionary, and prints each one's executions and whether it
# crashed:
#   bash fuzz/run.sh 3600
#   bash fuzz/run.sh 600 sdp rtp
# cargo-fuzz needs nightly features; the stable toolchain here takes them with
# RUSTC_BOOTSTRAP=1. A crash leaves its input in fuzz/artifacts/TARGET/: copy it into
# fuzz/corpus/TARGET/ (named crash-…) once fixed, and tests/fuzz_corpus.rs replays it on
# every test run.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
targets=(sip_message tcp_framing sdp digest rtp)
[ $# -gt 0 ] && targets=("$@")
status=0
summary=()
for t in "${targets[@]}"; do
  work=$(mktemp -d)
  cp corpus/"$t"/* "$work"/
  log=$(mktemp)
  # -fork would need more cores than these machines have; one process per target.
  cargo fuzz run --release "$t" "$work" -- \
    -max_total_time="$seconds" -dict=sip.dict -max_len=8192 -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  if [ $rc -eq 0 ]; then
    summary+=("$t: ${execs:-?} executions in ${seconds} s, no crash")
  else
    status=1
    summary+=("$t: CRASH after ${execs:-?} executions (exit $rc); see fuzz/artifacts/$t and $log")
    tail -n 40 "$log"
  fi
  rm -rf "$work"
done
printf '%s\n' "${summary[@]}"
exit $status
