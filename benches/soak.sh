#!/usr/bin/env bash
# Soak: SIPp calls with RTP at a steady rate for MINUTES, on loopback only.
#
#   bash benches/soak.sh [MINUTES] [RATE]      (defaults: 30 minutes, 50 calls/s)
#
# Every call (tests/sipp/soak-call.xml): INVITE, 200, ACK, about 8 s of SIPp's g711a.pcap as
# the caller's voice, BYE. The hotline runs the sample config (loopback trusted, no
# operators: each caller hears the greeting and waits in the queue, and is recorded) with
# its data in a temporary directory. Every 10 s the script samples the hotline's RSS, open
# file descriptors and threads (/proc) and the journal's row count; at the end it prints
# the first, middle and last samples, the RSS change after the warm-up (the first 20 % of
# the run), SQLite's own memory (/metrics) and RSS without it, and SIPp's successful and
# failed calls. Exits non-zero if a call failed, the hotline died, RSS after the warm-up spread more than 10 % (±5 %), or the fds did not
# come back.
# Targets (issue 17): 30 minutes at 50 calls/s, 0 failed, RSS flat within ±5 %, fds flat.
# Disk: each call's recording is about 260 KB (23 GB for the full 30 minutes at 50/s).
# Environment: KEEP=1 keeps the temporary directory; RUST_LOG (default "warn").
set -euo pipefail

MINUTES=${1:-30}
RATE=${2:-50}
die() { echo "soak: $*" >&2; exit 2; }
[[ $MINUTES =~ ^[1-9][0-9]*$ && $RATE =~ ^[1-9][0-9]*$ ]] || die "MINUTES and RATE must be positive integers"
for tool in cargo sipp curl python3 timeout sqlite3; do
    command -v "$tool" >/dev/null || die "$tool not found (sqlite3: apt-get install sqlite3)"
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

free_port() {
    python3 -c '
import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try: t.bind(("127.0.0.1", p))
    except OSError: continue
    finally: t.close(); u.close()
    print(p); break'
}
PORT=$(free_port); HTTP_PORT=$(free_port); SIPP_PORT=$(free_port)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hotline-soak.XXXXXX")
SERVER_PID=""
SAMPLER_PID=""
cleanup() {
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null || true
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then echo "soak: files kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (cargo build --release)" >&2
cargo build --release --quiet
BIN="$ROOT/target/release/hotline"
cp /usr/share/sip-tester/g711a.pcap "$WORK/" 2>/dev/null || die "no /usr/share/sip-tester/g711a.pcap (Debian sip-tester)"
cp tests/sipp/soak-call.xml "$WORK/"

NO_COLOR=1 RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --config sip-config/hotline.toml \
    --sip-listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
    --data-dir "$WORK/data" >"$WORK/hotline.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 150); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$HTTP_PORT/healthz" || true) == 200 ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/hotline.log" >&2; die "hotline exited at start-up"; }
    sleep 0.1
done

sample() {
    local t=$1
    local rss anon sqlite fds threads rows
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
    anon=$(awk '/^RssAnon/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
    fds=$(ls "/proc/$SERVER_PID/fd" 2>/dev/null | wc -l)
    threads=$(awk '/^Threads/ { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
    rows=$(sqlite3 -readonly "$WORK/data/hotline.db" 'SELECT COUNT(*) FROM journal_entries' 2>/dev/null || echo "?")
    sqlite=$(curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" \
        | awk '/^hotline_sqlite_memory_bytes / { print int($2 / 1024) }')
    echo "$t $rss $fds $threads $rows $anon ${sqlite:-0}"
}
(
    start=$SECONDS
    while true; do sample $((SECONDS - start)) >>"$WORK/samples.txt"; sleep 10; done
) &
SAMPLER_PID=$!

CALLS=$((RATE * MINUTES * 60))
echo "== sipp soak-call.xml: $RATE calls/s for $MINUTES min ($CALLS calls)" >&2
SIPP_RC=0
(
    cd "$WORK"
    timeout -k 5 $((MINUTES * 60 + 120)) sipp -sf soak-call.xml -s 8800 \
        -i 127.0.0.1 -p "$SIPP_PORT" -mi 127.0.0.1 -bind_local \
        -r "$RATE" -m "$CALLS" -l $((RATE * 30)) \
        -trace_stat -stf "$WORK/stat.csv" -fd 10 -nostdin \
        127.0.0.1:"$PORT" >"$WORK/sipp.out" 2>"$WORK/sipp.err"
) || SIPP_RC=$?
sleep 15 # calls end, files close
sample end >>"$WORK/samples.txt"
kill "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
ALIVE=1
kill -0 "$SERVER_PID" 2>/dev/null || ALIVE=0

python3 - "$WORK/samples.txt" "$WORK/stat.csv" "$SIPP_RC" "$ALIVE" <<'PY'
import csv, sys
samples_path, stat_path, sipp_rc, alive = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
rows = [l.split() for l in open(samples_path) if l.strip()]
timed = [r for r in rows if r[0] != "end"]
end = [r for r in rows if r[0] == "end"]
def show(label, r):
    print(f"{label:>6}: t={r[0]:>5} s  RSS {int(r[1]) / 1024:7.1f} MiB  fds {r[2]:>5}  threads {r[3]:>3}  journal {r[4]}")
print("== samples (every 10 s)")
show("first", timed[0]); show("middle", timed[len(timed) // 2]); show("last", timed[-1])
if end: show("after", end[0])
# The trajectory, to tell a leak (still rising at the end) from a slow warm-up (a plateau).
tenths = [timed[min(len(timed) - 1, i * len(timed) // 10)] for i in range(11)]
print("RSS at each tenth of the run (MiB): " + " ".join(f"{int(r[1]) / 1024:.1f}" for r in tenths))
# Anonymous memory is the heap (and SQLite's page caches); the rest is the mapped binary.
print("of which anonymous (MiB):           " + " ".join(f"{int(r[5]) / 1024:.1f}" for r in tenths))
warm = timed[max(1, len(timed) // 5):]
rss = [int(r[1]) for r in warm]
drift = (max(rss) - min(rss)) / min(rss) * 100 if rss else 0.0
print(f"RSS after the warm-up: {min(rss) / 1024:.1f}-{max(rss) / 1024:.1f} MiB (spread {drift:.1f} %)")
# SQLite's own memory (its page caches grow with the database up to their cap) apart from
# the rest, which is what the calls cost and must not grow.
print("SQLite's own memory (MiB):          " + " ".join(f"{int(r[6]) / 1024:.1f}" for r in tenths))
rest = [int(r[1]) - int(r[6]) for r in warm]
rest_drift = (max(rest) - min(rest)) / min(rest) * 100 if rest else 0.0
print(f"RSS less SQLite after the warm-up: {min(rest) / 1024:.1f}-{max(rest) / 1024:.1f} MiB (spread {rest_drift:.1f} %)")
with open(stat_path, newline="") as f:
    st = [r for r in csv.reader(f, delimiter=";") if r]
col = {n: i for i, n in enumerate(st[0])}
last = st[-1]
ok, failed = int(last[col["SuccessfulCall(C)"]]), int(last[col["FailedCall(C)"]])
print(f"calls: {ok} successful, {failed} failed (SIPp exit {sipp_rc}); hotline alive: {alive}")
fds_first, fds_end = int(timed[0][2]), int(end[0][2]) if end else -1
print(f"fds: {fds_first} at the start, {fds_end} after the calls ended")
bad = failed > 0 or not alive or drift > 10.0 or (end and fds_end > fds_first + 8)
sys.exit(1 if bad else 0)
PY
