#!/usr/bin/env bash
# Memory per call: CALLS established calls (default 10,000) held open through `switchboard
# serve` (SIPp SBC on 127.0.0.2 to a SIPp phone on 1001), RSS read before and while they are
# all up, once the transactions that set them up have ended (64*T1 = 32 s after the last
# answer: what a call costs for as long as it lasts); then, after they end and every call
# actor is gone, RSS again and the calls left.
#
#   benches/sipp/call_memory.sh            # CALLS=10000 RATE=500 HOLD=120 (seconds)
#   REDIS=redis://127.0.0.1:6379/9 benches/sipp/call_memory.sh
#
# Call snapshots and events go to Redis, as in production: REDIS, or a private redis-server
# started here; with NO_REDIS=1 they stay in the node's memory (and count in its RSS). With
# Redis, what the calls hold there too: its used memory per call (snapshots and the events of
# the calls' setup) and one established call's snapshot (MEMORY USAGE).
set -euo pipefail

source "$(dirname "$0")/common.sh"
calls=${CALLS:-10000}
rate=${RATE:-500}
hold=${HOLD:-120}
sb_port=${SB_PORT:-35060}
phone_port=${PHONE_PORT:-36001}

need sipp curl
build_release switchboard
redis=${REDIS:-}
if [ -z "$redis" ] && [ -z "${NO_REDIS:-}" ]; then
    start_redis $((sb_port + 5))
    redis=$redis_url
fi
start_switchboard "$sb_port" "${redis:+$(printf '[stores]\nredis = "%s"\n' "$redis")}"
start_phone 1001 "$phone_port" "$sb_port"
sleep 1
redis_used() {
    [ -n "$redis" ] || { echo 0; return; }
    redis-cli -u "$redis" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r'
}
before=$(rss $sb)
redis_before=$(redis_used)
(cd "$work" && sipp -sn uac -s 1001 -i 127.0.0.2 -p $((phone_port + 100)) -r "$rate" -m "$calls" \
    -l $((calls + 100)) -d $((hold * 1000)) -timeout $((hold * 3 + 60))s -nostdin \
    "127.0.0.1:$sb_port" > /dev/null 2>&1) &
uac=$!
sleep $((calls / rate + 40))
up=$(calls_active)
during=$(rss $sb)
echo "$up calls up: RSS $before KiB before, $during KiB with them: $(( (during - before) * 1024 / (up > 0 ? up : 1) )) bytes per call"
if [ -n "$redis" ]; then
    redis_during=$(redis_used)
    key=$(redis-cli -u "$redis" --scan --pattern '*:call:*' | head -1 || true)
    echo "Redis: $(( (redis_during - redis_before) / (up > 0 ? up : 1) )) bytes per call;" \
        "a snapshot $(redis-cli -u "$redis" memory usage "$key") bytes" \
        "($(redis-cli -u "$redis" hstrlen "$key" snap) of JSON)"
fi
wait "$uac" || echo "some calls failed"
for _ in $(seq 120); do [ "$(calls_active)" = 0 ] && break; sleep 1; done
echo "after they ended: $(calls_active) calls left, RSS $(rss $sb) KiB"
