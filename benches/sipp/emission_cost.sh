#!/usr/bin/env bash
# What event emission adds to a call's setup: the same SIPp calls (SBC on 127.0.0.2 to a SIPp
# phone, INVITE-200-ACK-BYE) through switchboard with its events in a private Redis, three
# times: reporting off, reporting to the JSON-lines file (the embedded default), and reporting
# to Kafka (a tansu broker of the run's own). Prints the setup time (INVITE to 200) p50 and p99
# (SIPp's resolution is a millisecond) and the node's CPU time for each.
#
#   benches/sipp/emission_cost.sh            # RATE=200 calls/s for SECS=20 s each
#   RATE=1000 MODES=off benches/sipp/emission_cost.sh   # the core's own CPU per call
set -euo pipefail

source "$(dirname "$0")/common.sh"
rate=${RATE:-200}
secs=${SECS:-20}
tansu=${TANSU:-$HOME/.cache/switchboard/tools/bin/tansu}
need sipp redis-server curl
[ -x "$tansu" ] || { echo "no tansu at $tansu (scripts/test.sh builds it)" >&2; exit 1; }
build_release switchboard
start_redis 36379
"$tansu" broker --listener-url tcp://127.0.0.1:36392 --advertised-listener-url tcp://127.0.0.1:36392 \
    --storage-engine memory://tansu/ > "$work/tansu.log" 2>&1 &
pids+=($!)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "Calls at $rate/s for $secs s, events in Redis; setup = INVITE to 200 at the SBC"
port=36060
for mode in ${MODES:-off file kafka}; do
    case $mode in
        off) extra='[events]\nfile = ""\n' ;;
        file) extra='' ;;
        kafka) extra='[kafka]\nbrokers = "127.0.0.1:36392"\nspool_dir = "spool"\n' ;;
    esac
    start_switchboard "$port" "$(printf "[stores]\nredis = \"%s/%d\"\n$extra" "$redis_url" $((port % 16)))"
    start_phone 1001 $((port + 10)) "$port"
    sleep 1
    before=$(cpu_ticks "$sb")
    calls=$((rate * secs))
    (cd "$work" && sipp -sn uac -s 1001 -i 127.0.0.2 -p $((port + 11)) -r "$rate" -m "$calls" \
        -l 100000 -timeout $((secs * 3 + 30))s -nostdin -trace_stat -stf "$mode.csv" \
        -trace_rtt -rtt_freq 100 "127.0.0.1:$port" > /dev/null 2>&1) || true
    sleep 1
    ticks=$(($(cpu_ticks "$sb") - before))
    read -r ok failed p50 p99 < <(sipp_outcome "$work/$mode.csv")
    python3 - "$mode" "$ok" "$failed" "$p50" "$p99" "$ticks" "$(getconf CLK_TCK)" <<'PY'
import sys
mode, ok, failed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
p50, p99, ticks, hz = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
# SIPp times in whole milliseconds.
ms = lambda v: "<1" if v < 1 else f"{v:.0f}"
print(f"  reporting {mode:<5}: {ok} calls, {failed} failed, setup p50 {ms(p50)} ms, p99 {ms(p99)} ms, "
      f"switchboard CPU {ticks / hz:.2f} s ({ticks / hz / ok * 1e6 if ok else 0:.0f} us a call)")
PY
    kill "$sb" 2>/dev/null || true
    wait "$sb" 2>/dev/null || true
    port=$((port + 100))
done
