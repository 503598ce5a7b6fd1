#!/usr/bin/env bash
# Calls per second, the full flow (INVITE, 200, ACK, BYE) over UDP on this machine: SIPp "SBCs"
# on 127.0.0.2 (the demo trunk's address) call SIPp phones registered on extensions 1001..100N,
# through `switchboard serve` (proxy and cluster in one process, demo tenant); then the same
# SIPp load through Kamailio as a transaction-stateful relay, the anchor. Each rate runs for
# SECS seconds, rising until a rate fails a call or is not kept; the highest clean rate is
# reported, then setup times (INVITE to 200, p50 and p99; SIPp counts whole milliseconds) at
# half that rate.
#
#   benches/sipp/call_load.sh                     # PAIRS=2 RATES="250 500 1000 1500 2000" SECS=10
#   REDIS=1 benches/sipp/call_load.sh             # call snapshots and events in a private Redis
#
# Needs sipp (sip-tester) and kamailio (Debian packages).
set -euo pipefail

source "$(dirname "$0")/common.sh"
pairs=${PAIRS:-2}
rates=${RATES:-250 500 1000 1500 2000}
secs=${SECS:-10}
sb_port=${SB_PORT:-35060}
kam_port=${KAM_PORT:-35070}
phone_base=${PHONE_BASE:-36000}

need sipp kamailio curl
build_release switchboard
extra=
if [ -n "${REDIS:-}" ]; then
    start_redis $((sb_port + 5))
    extra=$(printf '[stores]\nredis = "%s"\n' "$redis_url")
fi
start_switchboard "$sb_port" "$extra"
kamailio -f "$here/kamailio_relay.cfg" -l "udp:127.0.0.1:$kam_port" -A "PHONE_BASE=$phone_base" -m 2048 -M 64 \
    -DD -E -Y "$work" -P "$work/kamailio.pid" > "$work/kamailio.log" 2>&1 &
pids+=($!)
sleep 1

# The phones, fresh for each system measured, so an overload of one does not reach the other.
phones=()
start_phones() {
    for pid in "${phones[@]}"; do kill "$pid" 2>/dev/null || true; done
    phones=()
    sleep 0.5
    for ((i = 1; i <= pairs; i++)); do
        start_phone $((1000 + i)) $((phone_base + i)) "$sb_port"
        phones+=($!)
    done
    sleep 1
}

echo "Calls over UDP, $pairs SIPp pairs, $secs s per rate (INVITE-200-ACK-BYE, no hold time)${REDIS:+, events and snapshots in Redis}"
for name in switchboard kamailio; do
    port=$sb_port
    [ "$name" = kamailio ] && port=$kam_port
    start_phones
    climb "127.0.0.1:$port" "$name"
    half=$((best / 2))
    if [ "$half" -gt 0 ]; then
        settle
        [ "$name" = kamailio ] && sleep 35
        read -r cps failed p50 p99 < <(calls_at "127.0.0.1:$port" "$half" "$name-half")
        echo "  $name: highest rate without failures $best/s; at $half/s setup p50 $p50 ms, p99 $p99 ms"
    fi
    eval "best_$name=$best"
done
echo "  switchboard RSS after the runs: $(rss $sb) KiB"
python3 -c "print(f'  switchboard / Kamailio (highest rate): {$best_switchboard / max($best_kamailio, 1):.2f}')"
