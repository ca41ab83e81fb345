#!/usr/bin/env bash
# SIP load test of the hotline with SIPp's built-in `uac` scenario, on loopback only.
#
#   bash benches/sipp-load.sh [RATE] [DURATION] [PORT]
#
#   RATE      calls per second SIPp places (default 2000)
#   DURATION  seconds of load; SIPp places RATE*DURATION calls (default 60)
#   PORT      SIP port of the hotline on 127.0.0.1 (default: a free port)
#
# NODES=N (issue 22) puts N hotline nodes behind Kamailio (sip-config/kamailio/kamailio.cfg)
# on one PostgreSQL (DATABASE_URL, default the local test server, in a schema of its own that
# is dropped afterwards): SIPp calls Kamailio on PORT, and the CPU of the nodes and of
# Kamailio is reported apart. Needs kamailio and psql.
#
# Environment: LIMIT (SIPp -l, concurrent calls, default 2*RATE), SIPP_BUFF (SIPp -buff_size,
# its socket buffers in bytes; default 1048576, as SIPp's own 65535 drops bursts of more than
# ~100 responses; the kernel caps it at net.core.rmem_max), HTTP_PORT, RUST_LOG (default
# "warn"), KEEP=1 keeps the temporary directory (config, logs, SIPp CSVs).
#
# Builds `cargo build --release`, starts `hotline serve` with a temporary copy of
# sip-config/hotline.toml (loopback trusted, so the per-source rate limit does not apply;
# max_calls raised, peak_call_rate = RATE), waits for /healthz, runs SIPp (every call: INVITE -> 100 -> 200, ACK,
# BYE -> 200), and prints the achieved rate, successes, failures, retransmissions and the
# INVITE->200 response time (SIPp's rtd 1) percentiles. Exits non-zero if any call failed.
# Needs: cargo, sipp (Debian package sip-tester, tested with 3.6.1), curl, python3, timeout.

set -euo pipefail

RATE=${1:-2000}
DURATION=${2:-60}
PORT=${3:-}
LIMIT=${LIMIT:-$((RATE * 2))}
SIPP_BUFF=${SIPP_BUFF:-1048576}
NODES=${NODES:-0}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}

die() { echo "sipp-load: $*" >&2; exit 2; }
for n in "$RATE" "$DURATION" "$LIMIT" "$SIPP_BUFF"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "RATE, DURATION, LIMIT and SIPP_BUFF must be positive integers"
done
[[ -z $PORT || $PORT =~ ^[1-9][0-9]*$ ]] || die "PORT must be a port number"
[[ $NODES =~ ^[0-9]$ ]] || die "NODES must be 0..9"
for tool in cargo sipp curl python3 timeout; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
if ((NODES > 0)); then
    for tool in kamailio psql; do
        command -v "$tool" >/dev/null || die "$tool not found (NODES=$NODES)"
    done
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CALLS=$((RATE * DURATION))

# A free loopback port (UDP and TCP both free: the hotline binds both on the SIP port).
free_port() {
    python3 - <<'EOF'
import socket
for _ in range(50):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        t.close()
        u.close()
    print(port)
    break
EOF
}
PORT=${PORT:-$(free_port)}
HTTP_PORT=${HTTP_PORT:-$(free_port)}
SIPP_PORT=$(free_port)
[[ -n $PORT && -n $HTTP_PORT && -n $SIPP_PORT ]] || die "no free port found"
[[ $PORT != "$HTTP_PORT" ]] || die "SIP and HTTP ports must differ"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hotline-sipp.XXXXXX")
# The hotline processes (one, or the NODES nodes), and Kamailio's when NODES > 0.
SERVER_PIDS=()
EDGE_PID=""
SCHEMA=""
stop_pid() {
    kill -0 "$1" 2>/dev/null || return 0
    # SIGINT: a cluster's node drains on SIGTERM; here it should stop at once.
    kill -INT "$1" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    for pid in "${SERVER_PIDS[@]}" $EDGE_PID; do
        stop_pid "$pid"
    done
    if [[ -n $SCHEMA ]]; then
        psql -q "$DATABASE_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "sipp-load: files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== building (cargo build --release)" >&2
cargo build --release --quiet
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/release/hotline"
[[ -x $BIN ]] || die "$BIN not built"

# The sample config with [limits] adjusted for the test. Everything else stays as shipped.
MAX_CALLS=$((LIMIT * 4 > 4000 ? LIMIT * 4 : 4000))
awk -v max_calls="$MAX_CALLS" -v rate="$((RATE > 200 ? RATE : 200))" '
    /^[[:space:]]*\[/ {
        section = $0
        gsub(/[[:space:]]/, "", section)
        print
        if (section == "[limits]") {
            seen = 1
            print "max_calls = " max_calls
            print "peak_call_rate = " rate
            print "trusted_sources = [\"127.0.0.0/8\"]"
        }
        next
    }
    section == "[limits]" && /^[[:space:]]*(max_calls|peak_call_rate|trusted_sources)[[:space:]]*=/ { next }
    { print }
    END {
        if (!seen) {
            print "\n[limits]"
            print "max_calls = " max_calls
            print "peak_call_rate = " rate
            print "trusted_sources = [\"127.0.0.0/8\"]"
        }
    }
' sip-config/hotline.toml >"$WORK/hotline.toml"
"$BIN" check-config --config "$WORK/hotline.toml" >/dev/null ||
    die "temporary config rejected: $("$BIN" check-config --config "$WORK/hotline.toml" 2>&1)"

# Starts a hotline (log $1, SIP port $2, HTTP port $3, more arguments after) and waits for
# its /healthz.
start_hotline() {
    local log=$1 sip=$2 http=$3
    shift 3
    NO_COLOR=1 RUST_LOG=${RUST_LOG:-warn} "$BIN" serve --config "$WORK/hotline.toml" \
        --sip-listen "127.0.0.1:$sip" --http-listen "127.0.0.1:$http" "$@" >"$log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            die "hotline exited during start-up"
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            "http://127.0.0.1:$http/healthz" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    cat "$log" >&2
    die "/healthz not 200 within 15 s"
}

if ((NODES == 0)); then
    echo "== starting hotline: SIP 127.0.0.1:$PORT, HTTP 127.0.0.1:$HTTP_PORT" >&2
    start_hotline "$WORK/hotline.log" "$PORT" "$HTTP_PORT" --data-dir "$WORK/data"
else
    SCHEMA="sipp_load_$$"
    psql -q "$DATABASE_URL" -c "CREATE SCHEMA $SCHEMA" >/dev/null || die "cannot reach $DATABASE_URL"
    sep='?'
    [[ $DATABASE_URL == *'?'* ]] && sep='&'
    NODE_DB="${DATABASE_URL}${sep}options=-c%20search_path%3D$SCHEMA"
    : >"$WORK/dispatcher.list"
    for k in $(seq 1 "$NODES"); do
        sip=$(free_port)
        http=$(free_port)
        echo "1 sip:127.0.0.1:$sip" >>"$WORK/dispatcher.list"
        echo "== starting node-$k: SIP 127.0.0.1:$sip, HTTP 127.0.0.1:$http" >&2
        start_hotline "$WORK/node-$k.log" "$sip" "$http" --data-dir "$WORK/node-$k" \
            --database-url "$NODE_DB" --node-id "node-$k"
    done
    echo "== starting Kamailio on 127.0.0.1:$PORT in front of them" >&2
    kamailio -DD -E -m 512 -M 16 -f sip-config/kamailio/kamailio.cfg -l "udp:127.0.0.1:$PORT" \
        -A "DSLIST=\"$WORK/dispatcher.list\"" -A PROBE_S=1 -w "$WORK" -Y "$WORK" \
        -P "$WORK/kamailio.pid" >"$WORK/kamailio.log" 2>&1 &
    EDGE_PID=$!
    # Its first probes mark the nodes up.
    sleep 3
    kill -0 "$EDGE_PID" 2>/dev/null || { cat "$WORK/kamailio.log" >&2; die "Kamailio exited"; }
fi

# The INVITE is retransmitted for up to ~32 s (T1 doubling, 5 retransmissions) before a call
# fails, so allow DURATION plus that plus slack before SIPp is stopped.
BOUND=$((DURATION * 2 + 60))
# SIPp writes the rtt file every -rtt_freq calls and drops the remainder at exit: use a
# divisor of the number of calls.
RTT_FREQ=1000
while ((CALLS % RTT_FREQ != 0)); do RTT_FREQ=$((RTT_FREQ - 1)); done
# Datagrams the kernel dropped for a full receive buffer: system-wide (Udp RcvbufErrors)…
udp_rcvbuf_errors() {
    awk '/^Udp:/ { if (!n++) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i }
                   else print $c }' /proc/net/snmp 2>/dev/null || echo 0
}
# …and on the hotline's socket (the last column of /proc/net/udp).
socket_drops() {
    awk -v port="$(printf '%04X' "$1")" '$2 ~ (":" port "$") { print $NF; exit }' \
        /proc/net/udp 2>/dev/null || echo 0
}
cpu_seconds() { # user+system CPU seconds of processes, from /proc
    local hz total=0
    hz=$(getconf CLK_TCK)
    for pid in "$@"; do
        total=$(awk -v hz="$hz" -v t="$total" '{ printf "%.2f", t + ($14 + $15) / hz }' \
            "/proc/$pid/stat" 2>/dev/null || echo "$total")
    done
    echo "$total"
}
# Kamailio's processes: the one started and the workers it forked.
edge_pids() {
    [[ -n $EDGE_PID ]] || return 0
    echo "$EDGE_PID"
    pgrep -P "$EDGE_PID" || true
}
# Through Kamailio the ACK and BYE must follow its Record-Route, which SIPp's built-in uac
# does not do.
SCENARIO=(-sn uac)
((NODES == 0)) || SCENARIO=(-sf "$ROOT/benches/support/uac-record-route.xml")
echo "== sipp ${SCENARIO[*]}: $RATE calls/s for $DURATION s ($CALLS calls, at most $LIMIT at once)" >&2
SERVER_CPU0=$(cpu_seconds "${SERVER_PIDS[@]}")
EDGE_CPU0=$(cpu_seconds $(edge_pids))
DROPS0=$(udp_rcvbuf_errors)
SOCK_DROPS0=$(socket_drops "$PORT")
SIPP_RC=0
TIMEFORMAT='%R %U %S'
{
    time (
        cd "$WORK"
        timeout -k 5 "$BOUND" sipp "${SCENARIO[@]}" -s 8800 \
            -i 127.0.0.1 -p "$SIPP_PORT" -bind_local \
            -r "$RATE" -m "$CALLS" -l "$LIMIT" -buff_size "$SIPP_BUFF" \
            -trace_stat -stf "$WORK/stat.csv" -fd 1 \
            -trace_rtt -rtt_freq "$RTT_FREQ" \
            -timeout "$((BOUND - 5))s" \
            -nostdin 127.0.0.1:"$PORT" >"$WORK/sipp.out" 2>"$WORK/sipp.err"
    ) || SIPP_RC=$?
} 2>"$WORK/sipp.time"
SERVER_CPU1=$(cpu_seconds "${SERVER_PIDS[@]}")
EDGE_CPU1=$(cpu_seconds $(edge_pids))
DROPS1=$(udp_rcvbuf_errors)
SOCK_DROPS1=$(socket_drops "$PORT")
read -r SIPP_WALL SIPP_USER SIPP_SYS <"$WORK/sipp.time" || true

for pid in "${SERVER_PIDS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "sipp-load: a hotline died during the test; the logs are in $WORK (KEEP=1)" >&2
    fi
done
[[ -s $WORK/stat.csv ]] || {
    tail -n 20 "$WORK/sipp.err" "$WORK/sipp.out" >&2 || true
    die "SIPp wrote no statistics (exit status $SIPP_RC)"
}
LOGGED=$(cat "$WORK"/hotline.log "$WORK"/node-*.log 2>/dev/null | grep -i "warn\|error" |
    grep -v "environment variable" || true)
if [[ -n $LOGGED ]]; then
    echo "== hotline warnings ($(wc -l <<<"$LOGGED") lines, last 5):" >&2
    tail -n 5 <<<"$LOGGED" >&2
fi

RTT=$(ls "$WORK"/*_rtt.csv 2>/dev/null | head -n 1 || true)
python3 - "$WORK/stat.csv" "${RTT:-}" "$RATE" "$DURATION" "$SIPP_RC" \
    "$SERVER_CPU0" "$SERVER_CPU1" "${SIPP_WALL:-0}" "${SIPP_USER:-0}" "${SIPP_SYS:-0}" \
    "$((DROPS1 - DROPS0))" "$((SOCK_DROPS1 - SOCK_DROPS0))" "$NODES" "$EDGE_CPU0" "$EDGE_CPU1" <<'EOF'
import csv, math, sys

stat_path, rtt_path, rate, duration, sipp_rc = sys.argv[1:6]
srv0, srv1, sipp_wall, sipp_user, sipp_sys = (float(x) for x in sys.argv[6:11])
drops_all, drops_server = (int(x) for x in sys.argv[11:13])
nodes = int(sys.argv[13])
edge0, edge1 = (float(x) for x in sys.argv[14:16])

with open(stat_path, newline="") as f:
    rows = [r for r in csv.reader(f, delimiter=";") if r]
header, last = rows[0], rows[-1]
col = {name: i for i, name in enumerate(header)}

def get(name, default="0"):
    i = col.get(name)
    return last[i] if i is not None and i < len(last) else default

def num(name):
    try:
        return int(float(get(name)))
    except ValueError:
        return 0

def epoch(name):
    # "2026-11-22<TAB>00:10:17.583845<TAB>1795306217.583845": the last field is Unix time.
    try:
        return float(get(name, "").split("\t")[-1])
    except ValueError:
        return 0.0

elapsed = epoch("CurrentTime") - epoch("StartTime")
ok, failed, created = num("SuccessfulCall(C)"), num("FailedCall(C)"), num("TotalCallCreated")
retrans = num("Retransmissions(C)")

rtts = []
if rtt_path:
    with open(rtt_path) as f:
        for line in f:
            p = line.strip().split(";")
            # date_ms;response_time_ms;rtd_no — rtd 1 is INVITE -> 200 in the uac scenario
            if len(p) >= 3 and p[2].strip() in ("1", "rtd1"):
                try:
                    rtts.append(float(p[1]))
                except ValueError:
                    pass
rtts.sort()

def pct(q):  # nearest-rank percentile
    if not rtts:
        return float("nan")
    return rtts[max(0, math.ceil(q / 100 * len(rtts)) - 1)]

# SIPp timestamps with CLOCK_MONOTONIC_COARSE: response times come in whole jiffies
# (4 ms with HZ=250), so p50/p99 of 0 mean "below one tick".
resolution = 0
for v in rtts:
    if v > 0:
        resolution = math.gcd(resolution, int(v))

print(f"target rate        {rate} calls/s for {duration} s ({int(rate) * int(duration)} calls)")
print(f"achieved           {ok / elapsed if elapsed else 0:.1f} calls/s "
      f"({ok} successful of {created} created in {elapsed:.2f} s)")
print(f"successful calls   {ok}")
print(f"failed calls       {failed}")
for n in header:
    if n.startswith("Failed") and n.endswith("(C)") and n != "FailedCall(C)" and num(n):
        print(f"  {n[:-3]:<26} {num(n)}")
print(f"retransmissions    {retrans}")
print(f"out-of-call msgs   {num('OutOfCallMsgs(C)')}")
where = "Kamailio's" if nodes else "the hotline's"
print(f"UDP buffer drops   {drops_all} in the kernel, {drops_server} of them on {where} socket")
if rtts:
    # SIPp stamps with CLOCK_MONOTONIC_COARSE: 0 means "within the same clock tick".
    zero = sum(1 for v in rtts if v == 0) / len(rtts)
    res = (f", SIPp clock resolution {resolution} ms; {zero:.2%} answered within one tick"
           if resolution > 1 else "")
    print(f"INVITE->200 (ms)   p50 {pct(50):g}  p90 {pct(90):g}  p99 {pct(99):g}  "
          f"max {rtts[-1]:g}  (n={len(rtts)}{res})")
else:
    print("INVITE->200        no response times recorded")
if sipp_wall > 0:
    who = f"{nodes} hotline nodes" if nodes else "hotline"
    print(f"CPU during load    {who} {srv1 - srv0:.1f} s ({100 * (srv1 - srv0) / sipp_wall:.0f}% of a core), "
          f"SIPp {sipp_user + sipp_sys:.1f} s ({100 * (sipp_user + sipp_sys) / sipp_wall:.0f}%), "
          f"over {sipp_wall:.1f} s")
    if nodes:
        print(f"                   Kamailio {edge1 - edge0:.1f} s ({100 * (edge1 - edge0) / sipp_wall:.0f}% of a core)")
print(f"SIPp exit status   {sipp_rc}")
sys.exit(1 if failed or ok == 0 or ok < int(rate) * int(duration) else 0)
EOF
