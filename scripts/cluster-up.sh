#!/usr/bin/env bash
# A cluster lab on loopback: Kamailio on 127.0.0.1:5060 (sip-config/kamailio/kamailio.cfg)
# in front of N hotline nodes on one PostgreSQL database.
#
#   bash scripts/cluster-up.sh [N] [DATABASE_URL]
#
#   N             nodes, 1..9 (default 2): node-K has SIP on 127.0.0.1:507K, HTTP on
#                 127.0.0.1:808K, its data under the lab directory
#   DATABASE_URL  the shared database (default postgres://postgres@127.0.0.1:5432/test)
#
# Each node runs the sample configuration (sip-config/hotline.toml) with --node-id node-K,
# so SIGTERM drains it: `kill -TERM <pid>` (printed below) is a rolling upgrade's first step.
# Logs and data are in the lab directory printed at the start. Ctrl-C stops everything.
set -euo pipefail
N=${1:-2}
DB=${2:-postgres://postgres@127.0.0.1:5432/test}
die() { echo "cluster-up: $*" >&2; exit 2; }
[[ $N =~ ^[1-9]$ ]] || die "N must be 1..9"
command -v kamailio >/dev/null || die "kamailio is missing (apt-get install kamailio)"
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
cargo build --release --bin hotline
lab=$(mktemp -d /tmp/hotline-cluster.XXXXXX)
echo "cluster-up: lab directory $lab"
pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait || true
  echo "cluster-up: stopped; logs in $lab"
}
trap stop EXIT INT TERM
: >"$lab/dispatcher.list"
for k in $(seq 1 "$N"); do
  sip=127.0.0.1:$((5070 + k))
  http=127.0.0.1:$((8080 + k))
  echo "1 sip:$sip" >>"$lab/dispatcher.list"
  mkdir -p "$lab/node-$k"
  target/release/hotline serve --sip-listen "$sip" --http-listen "$http" \
    --data-dir "$lab/node-$k" --database-url "$DB" --node-id "node-$k" \
    >"$lab/node-$k.log" 2>&1 &
  pids+=($!)
  echo "cluster-up: node-$k (pid $!) SIP $sip, console http://$http/"
done
kamailio -DD -E -m 512 -M 16 -f sip-config/kamailio/kamailio.cfg -l udp:127.0.0.1:5060 \
  -A "DSLIST=\"$lab/dispatcher.list\"" -A PROBE_S=1 -w "$lab" -Y "$lab" -P "$lab/kamailio.pid" \
  >"$lab/kamailio.log" 2>&1 &
pids+=($!)
echo "cluster-up: Kamailio (pid $!) on udp 127.0.0.1:5060; phones and callers use it"
wait -n || true
echo "cluster-up: a process exited; see the logs"
