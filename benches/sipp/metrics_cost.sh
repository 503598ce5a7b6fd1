#!/usr/bin/env bash
# What the metrics' counters cost on the call path: the same SIPp calls (SBCs on 127.0.0.2 to
# SIPp phones, INVITE-200-ACK-BYE, no hold time) through two release builds of this tree, one
# as it is and one with without_counters.patch applied (SIP messages by method and class,
# transactions in progress, retransmissions, agents, registrations and the routing histogram
# no longer counted). For each: the node's CPU time per call at a fixed rate, ROUNDS times,
# alternating the builds so drift on the machine falls on both, then the highest clean rate
# (the call_load.sh climb). The counters' cost is the CPU-per-call difference; the rate is
# reported too, though SIPp rather than the node may be what limits it.
#
#   benches/sipp/metrics_cost.sh     # RATE=1000 calls/s, SECS=20, ROUNDS=3, PAIRS=2, RATES="1000 2000 3000 4000"
#
# The build without counters goes to $PLAIN_TARGET (~/.cache/switchboard/target-plain), its
# sources beside it, both kept between runs. Needs sipp (sip-tester) and curl.
set -euo pipefail

source "$(dirname "$0")/common.sh"
rate=${RATE:-1000}
secs=${SECS:-20}
rounds=${ROUNDS:-3}
pairs=${PAIRS:-2}
rates=${RATES:-1000 2000 3000 4000}
plain_target=${PLAIN_TARGET:-$HOME/.cache/switchboard/target-plain}
phone_base=36000

need sipp curl
build_release switchboard
with="$bin/switchboard"
# The tree without counters, kept beside its build so that a second run builds nothing.
plain="$plain_target/src-$(cd "$root" && git rev-parse --short HEAD)"
if [ ! -d "$plain" ]; then
    mkdir -p "$plain.new"
    (cd "$root" && git archive HEAD) | tar -x -C "$plain.new"
    (cd "$plain.new" && git apply "$here/without_counters.patch") && mv "$plain.new" "$plain"
fi
(cd "$plain" && CARGO_TARGET_DIR="$plain_target" cargo build --release --locked -q -p switchboard \
    > "$work/plain-build.log" 2>&1) || { tail -20 "$work/plain-build.log" >&2; exit 1; }
without="$plain_target/release/switchboard"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# A node from binary $2 on SIP port $1 with its phones; its pid in $sb.
start_node() {
    bin=$(dirname "$2")
    start_switchboard "$1"
    for ((i = 1; i <= pairs; i++)); do start_phone $((1000 + i)) $((phone_base + i)) "$1"; done
    sleep 1
}

stop_node() {
    kill "$sb" 2>/dev/null || true
    wait "$sb" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
}

echo "Calls over UDP, $pairs SIPp pairs; CPU per call at $rate/s for $secs s, $rounds rounds each"
port=37060
declare -A per_call
for ((round = 1; round <= rounds; round++)); do
    for build in with without; do
        start_node "$port" "${!build}"
        before=$(cpu_ticks "$sb")
        read -r cps failed p50 p99 < <(calls_at "127.0.0.1:$port" "$rate" "$build-$round")
        ticks=$(($(cpu_ticks "$sb") - before))
        calls=$((rate * secs))
        us=$(python3 -c "print(f'{$ticks / $(getconf CLK_TCK) / $calls * 1e6:.1f}')")
        per_call[$build]="${per_call[$build]:-} $us"
        echo "  round $round, counters $build: $cps calls/s, $failed failed, setup p50 $p50 ms, p99 $p99 ms, CPU $us us a call"
        stop_node
        port=$((port + 100))
    done
done
python3 - "${per_call[with]}" "${per_call[without]}" <<'PY'
import statistics, sys
w = [float(x) for x in sys.argv[1].split()]
wo = [float(x) for x in sys.argv[2].split()]
mw, mwo = statistics.median(w), statistics.median(wo)
print(f"  CPU a call, median: with counters {mw:.1f} us, without {mwo:.1f} us: "
      f"the counters cost {(mw - mwo) / mwo * 100:+.1f} %")
PY

for build in with without; do
    start_node "$port" "${!build}"
    climb "127.0.0.1:$port" "counters $build"
    echo "  counters $build: highest clean rate $best/s"
    stop_node
    port=$((port + 100))
done
