#!/usr/bin/env bash
# What a running `switchyard capture` costs the dataplane, end to end: TCP throughput
# (iperf3, offloads on, so mostly 64 KiB super-frames) and a ping flood between two
# endpoints of one network, with no capture and with a capture of both ports written
# to /dev/null, the runs interleaved. Prints each run and the medians.
#
#   sudo benches/capture-cost.sh [RUNS] [BINARY...]
#
# RUNS defaults to 5; BINARY defaults to target/release/switchyard. With several
# binaries (say, one built without the capture code), each is measured the same way
# without a capture, and the first also with one. Needs root, iperf3, ping and python3;
# everything it makes lives in namespaces of its own prefix and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
shift || true
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(target/release/switchyard)
secs=${SECS:-4}
pings=${PINGS:-20000}

prefix="cc$$-"
dir=$(mktemp -d)
cat >"$dir/two.toml" <<EOF
[switch]
prefix = "$prefix"

[[network]]
name = "default"
subnet = "172.30.0.0/24"
gateway = "172.30.0.1"

[[endpoint]]
name = "a"
network = "default"
ip = "172.30.0.2"

[[endpoint]]
name = "b"
network = "default"
ip = "172.30.0.3"
EOF

up_pid=""
iperf_pid=""
cleanup() {
    [ -n "$iperf_pid" ] && kill "$iperf_pid" 2>/dev/null || true
    [ -n "$up_pid" ] && kill -INT "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
    SWITCHYARD_RUN_DIR="$dir/run" "${bins[0]}" down --prefix "$prefix" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

start() {
    SWITCHYARD_RUN_DIR="$dir/run" "$1" up "$dir/two.toml" >"$dir/up.log" 2>&1 &
    up_pid=$!
    for _ in $(seq 100); do
        [ -S "$dir/run/$prefix/control.sock" ] && break
        sleep 0.1
    done
    ip netns exec "${prefix}b" iperf3 -s >/dev/null 2>&1 &
    iperf_pid=$!
    sleep 0.5
    # Resolve ARP once, outside the measurement.
    ip netns exec "${prefix}a" ping -c 1 -W 2 172.30.0.3 >/dev/null
}

stop() {
    kill "$iperf_pid" 2>/dev/null || true
    wait "$iperf_pid" 2>/dev/null || true
    iperf_pid=""
    kill -INT "$up_pid"
    wait "$up_pid" || true
    up_pid=""
}

# One measurement: "GBIT_PER_S PINGS_PER_S".
measure() {
    local gbit pps
    gbit=$(ip netns exec "${prefix}a" iperf3 -c 172.30.0.3 -t "$secs" -J |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9, 2))')
    # ping -f prints "N packets transmitted, N received, 0% packet loss, time Tms".
    pps=$(ip netns exec "${prefix}a" ping -f -q -c "$pings" 172.30.0.3 |
        python3 -c 'import re,sys; t=sys.stdin.read(); m=re.search(r"(\d+) received.*time (\d+)ms", t); print(round(int(m.group(1))/(int(m.group(2))/1000)))')
    echo "$gbit $pps"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

results="$dir/results"
: >"$results"
# Run by run, every binary in turn (a fresh instance each time), so that a change in
# the machine's load during the measurement falls on all of them alike.
for r in $(seq "$runs"); do
    for bin in "${bins[@]}"; do
        start "$bin"
        m=$(measure)
        echo "$bin none $m" | tee -a "$results"
        if [ "$bin" = "${bins[0]}" ]; then
            SWITCHYARD_RUN_DIR="$dir/run" "$bin" capture a b -w /dev/null --prefix "$prefix" \
                2>"$dir/capture.log" &
            cap=$!
            sleep 0.5
            m=$(measure)
            kill -INT "$cap"
            wait "$cap" || true
            echo "$bin capture $m ($(tail -1 "$dir/capture.log"))" | tee -a "$results"
        fi
        stop
    done
done

echo
echo "medians over $runs runs (iperf3 Gbit/s, ping -f packets/s):"
for bin in "${bins[@]}"; do
    for mode in none capture; do
        grep -q "^$bin $mode " "$results" || continue
        g=$(grep "^$bin $mode " "$results" | awk '{print $3}' | median)
        p=$(grep "^$bin $mode " "$results" | awk '{print $4}' | median)
        echo "$bin $mode: $g Gbit/s, $p pings/s"
    done
done
