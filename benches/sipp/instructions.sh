#!/usr/bin/env bash
# Instructions the node executes per REGISTER and per call, counted by valgrind's callgrind:
# a figure this machine's noise does not move (rates and CPU time vary by a tenth or more from
# one run to the next), for telling small changes of the hot paths apart. The whole process
# is counted (every thread: the edge, the registrar, the calls, the events file), from after a
# warm-up until the load ends, idle ticks included.
#
#   benches/sipp/instructions.sh            # both; REGISTERS=2000 CALLS_RATE=50 CALL_SECS=10
#   benches/sipp/instructions.sh register   # or: call
#   SB=/path/to/switchboard benches/sipp/instructions.sh   # another build, for an A/B
#
# Needs valgrind (Debian package). Under callgrind the node runs some fifty times slower, so
# the load is light: sipload with 10 phones, callload at 50 calls/s on one thread.
set -euo pipefail

source "$(dirname "$0")/common.sh"
what=${1:-both}
dns=${REGISTERS:-2000}
first=100000
port=${SB_PORT:-35060}

need valgrind
build_release switchboard switchboard-benches
node=${SB:-$bin/switchboard}
tools=$bin

# A wrapper that start_switchboard runs in place of the binary: the node under callgrind,
# its counts in $work/cg.out.* (one file per dump).
mkdir -p "$work/wrap"
printf '#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s/cg.out %s "$@"\n' \
    "$work" "$node" > "$work/wrap/switchboard"
chmod +x "$work/wrap/switchboard"

# Counts from zero, runs the command given, dumps the counts; prints the instructions counted.
counted() {
    local pid
    pid=$(pgrep -f "callgrind-out-file=$work/cg.out" | head -1)
    rm -f "$work"/cg.out.*
    callgrind_control -z "$pid" > /dev/null 2>&1
    "$@" > "$work/load.txt"
    callgrind_control -d "$pid" > /dev/null 2>&1
    awk '/^summary:/ {print $2}' "$work"/cg.out.*
}

# A node of its own for each measure, stopped before the next starts.
stop_node() {
    kill "$sb" 2> /dev/null || true
    wait "$sb" 2> /dev/null || true
}

if [ "$what" = both ] || [ "$what" = register ]; then
    tenant=$(
        printf '[[tenants]]\nname = "bench"\ndomain = "bench.local"\nauthenticate = false\n'
        for ((dn = first; dn < first + dns; dn++)); do printf '[[tenants.dns]]\nnumber = "%s"\n' "$dn"; done
    )
    bin="$work/wrap" start_switchboard "$port" "$tenant"
    load=("$tools/sipload" --target "127.0.0.1:$port" --domain bench.local --first $first
        --count "$dns" --phones 10 --no-auth)
    "${load[@]}" --rounds 1 > /dev/null
    total=$(counted "${load[@]}" --rounds 2 --unregister)
    done=$(grep -c "$dns/$dns" "$work/load.txt")
    echo "REGISTER (register, refresh, unregister of $dns DNs): $((total / (done * dns))) instructions each"
    stop_node
fi

if [ "$what" = both ] || [ "$what" = call ]; then
    bin="$work/wrap" start_switchboard $((port + 10)) "$(printf 'max_ending = 1000000\n')"
    # The phones register and a few calls warm the node up; their last transactions linger
    # for 64*T1 (32 s), which the counting waits out.
    "$tools/callload" --target "127.0.0.1:$((port + 10))" --register --rate 20 --secs 3 \
        --threads 1 --phone-base 36000 > /dev/null 2>&1 || true
    sleep 35
    total=$(counted "$tools/callload" --target "127.0.0.1:$((port + 10))" --register \
        --rate "${CALLS_RATE:-50}" --secs "${CALL_SECS:-10}" --threads 1 --phone-base 36100)
    calls=$(grep -o 'completed [0-9]*' "$work/load.txt" | awk '{print $2}')
    echo "calls (INVITE, 200, ACK, BYE through the B2BUA, $calls of them): $((total / calls)) instructions each"
    stop_node
fi
