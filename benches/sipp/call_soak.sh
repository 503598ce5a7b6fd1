#!/usr/bin/env bash
# No growth: calls at RATE per second for SECS seconds (default 1000/s for 10 minutes) through
# `switchboard serve` (SIPp SBC on 127.0.0.2 to a SIPp phone on 1001, snapshots and events in
# a private Redis); the node's RSS and calls in progress every minute, then, once the load
# stops, the time until every call actor (and with it every transaction and dialog) is gone.
#
#   benches/sipp/call_soak.sh             # RATE=1000 SECS=600
set -euo pipefail

source "$(dirname "$0")/common.sh"
rate=${RATE:-1000}
secs=${SECS:-600}
sb_port=${SB_PORT:-35060}
phone_port=${PHONE_PORT:-36001}

need sipp curl redis-server
build_release switchboard
start_redis $((sb_port + 5))
start_switchboard "$sb_port" "$(printf '[stores]\nredis = "%s"\n' "$redis_url")"
start_phone 1001 "$phone_port" "$sb_port"
sleep 1
calls=$((rate * secs))
(cd "$work" && sipp -sn uac -s 1001 -i 127.0.0.2 -p $((phone_port + 100)) -r "$rate" -m "$calls" \
    -timeout $((secs + 120))s -nostdin -trace_stat -stf soak.csv "127.0.0.1:$sb_port" > /dev/null 2>&1) &
uac=$!
echo "$calls calls at $rate/s over $secs s"
for ((t = 60; t <= secs; t += 60)); do
    sleep 60
    echo "  at ${t}s: RSS $(rss $sb) KiB, $(calls_active) calls in progress"
done
wait "$uac" || true
python3 - "$work/soak.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=";"))
h, last = rows[0], rows[-1]
print(f"  SIPp: {last[h.index('SuccessfulCall(C)')]} successful, {last[h.index('FailedCall(C)')]} failed")
PY
start=$(date +%s)
for _ in $(seq 120); do [ "$(calls_active)" = 0 ] && break; sleep 1; done
echo "  load stopped: $(calls_active) calls left after $(( $(date +%s) - start )) s, RSS $(rss $sb) KiB"
