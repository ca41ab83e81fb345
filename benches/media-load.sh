#!/usr/bin/env bash
# Media load test: CALLS concurrent calls, bridged and recorded, RTP both ways, on loopback.
#
#   bash benches/media-load.sh [CALLS] [SECONDS]
#
#   CALLS    concurrent calls, 1..5000 (default 1000); every 4th call's operator leg is
#            PCMA, so a quarter of the calls transcode
#   SECONDS  measured window after a 3 s warm-up, 1..120 (default 20)
#
# Runs `cargo bench --bench media_load -- CALLS SECONDS` (benches/media_load.rs): the bench
# re-executes itself as the server (the hotline's media runtime, 2 real-time threads, with CALLS media sessions,
# recording into a temporary directory) and acts as the generator (20 ms RTP both ways on
# every call). It prints the server's CPU per call, RSS, packet loss, added jitter and
# the recordings' check, and exits 0 when every target is met, 3 when one is missed.
#
# Environment: MEDIA_LOAD_DUMP=file.csv writes every timed packet (stream, send instant,
# latency, added jitter); MEDIA_LOAD_RT=0 runs the sender at normal priority instead of
# SCHED_FIFO (closed loop: a busy server then slows the generator down); MEDIA_LOAD_RECORD=0
# records nothing (diagnosis only); KEEP=1 keeps the recordings.
# The generator shares the machine's cores with the server; see benches/RESULTS.md.

set -euo pipefail

CALLS=${1:-1000}
DURATION=${2:-20}

die() { echo "media-load: $*" >&2; exit 2; }
[[ $CALLS =~ ^[1-9][0-9]*$ ]] && (( CALLS <= 5000 )) || die "CALLS must be 1..5000"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] && (( DURATION <= 120 )) || die "SECONDS must be 1..120"
command -v cargo >/dev/null || die "cargo not found"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
exec cargo bench --bench media_load -- "$CALLS" "$DURATION"
