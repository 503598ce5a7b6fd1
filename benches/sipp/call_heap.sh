#!/usr/bin/env bash
# Where an established call's memory goes: CALLS calls (default 2,000) held open through
# `switchboard serve` built with the system allocator (feature `system-alloc`) under
# heaptrack, snapshots and events in a private Redis as in production. Once every call is up
# and the transactions that set them up have ended (64*T1 = 32 s), the node is killed
# (SIGKILL): what heaptrack then counts as never freed is what the calls held. Prints the
# bytes per call by place of allocation: the innermost frames outside the standard library.
#
#   benches/sipp/call_heap.sh            # CALLS=2000 RATE=200
#
# Needs sipp (sip-tester), heaptrack and curl (Debian packages).
set -euo pipefail

source "$(dirname "$0")/common.sh"
calls=${CALLS:-2000}
rate=${RATE:-200}
sb_port=${SB_PORT:-35060}
phone_port=${PHONE_PORT:-36001}

need sipp curl heaptrack
(cd "$root" && cargo build --release --locked -q -p switchboard --features system-alloc)
cp "$(release_dir)/switchboard" "$work/switchboard-system-alloc"
# Put the usual build back for the other scripts.
build_release switchboard
# start_switchboard runs $bin/switchboard: here, that build under heaptrack.
bin="$work/bin"
mkdir -p "$bin"
printf '#!/bin/sh\nexec heaptrack -o "%s/heap" "%s/switchboard-system-alloc" "$@"\n' \
    "$work" "$work" > "$bin/switchboard"
chmod +x "$bin/switchboard"

start_redis $((sb_port + 5))
start_switchboard "$sb_port" "$(printf '[stores]\nredis = "%s"\n' "$redis_url")"
start_phone 1001 "$phone_port" "$sb_port"
sleep 1
(cd "$work" && exec sipp -sn uac -s 1001 -i 127.0.0.2 -p $((phone_port + 100)) -r "$rate" -m "$calls" \
    -l $((calls + 100)) -d 600000 -timeout 900s -nostdin "127.0.0.1:$sb_port" > /dev/null 2>&1) &
pids+=($!)
sleep $((calls / rate + 40))
up=$(calls_active)
echo "$up calls up; the node killed"
pkill -KILL -f "switchboard-system-alloc serve" || true
# heaptrack's interpreter writes the file out once the node is gone.
for _ in $(seq 120); do
    pgrep -f heaptrack_interpret > /dev/null || break
    sleep 1
done
heaptrack_print -f "$work"/heap*.zst -F "$work/held.txt" --flamegraph-cost-type leaked > /dev/null
python3 "$here/heap_sites.py" "$work/held.txt" "$up"
