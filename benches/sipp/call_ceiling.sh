#!/usr/bin/env bash
# The ceiling of calls over UDP, found with `callload` (benches/src/bin/callload.rs): full
# calls (INVITE, 200, ACK, BYE) from SBC sockets on 127.0.0.2 (the demo trunk's address) on
# several threads, to phones callload plays itself on 127.0.0.1; first through `switchboard
# serve` as a B2BUA (the phones register with digest), then through Kamailio as a
# transaction-stateful relay (benches/sipp/kamailio_relay.cfg, routing by the dialed number's
# last digit). Each rate runs SECS seconds, rising until one fails a call; for each rate, the
# setup time and the server's CPU time per call from /proc (all of Kamailio's processes).
#
#   benches/sipp/call_ceiling.sh        # RATES="1000 2000 3000 4000 5000 6000" SECS=10 THREADS=2
#   REDIS=1 benches/sipp/call_ceiling.sh   # switchboard's call snapshots and events in Redis
#   MAX_ENDING=50000 benches/sipp/call_ceiling.sh   # the node's default cap of ended calls
#
# On a 2-core machine callload shares the cores with the server: the ceiling found is the
# machine's with both on it.
set -euo pipefail

source "$(dirname "$0")/common.sh"
rates=${RATES:-1000 2000 3000 4000 5000 6000}
secs=${SECS:-10}
threads=${THREADS:-2}
sb_port=${SB_PORT:-35060}
kam_port=${KAM_PORT:-35070}
phone_base=${PHONE_BASE:-36000}

need kamailio curl
build_release switchboard switchboard-benches
# Calls that ended wait out their last transactions for 64*T1 (32 s): past the default cap
# of 50,000, new calls get 503, so that a climb finds the cap, not the ceiling. MAX_ENDING
# raises it (the line lands in the [calls] table start_switchboard writes last).
extra=$(printf 'max_ending = %s\n' "${MAX_ENDING:-1000000}")
if [ -n "${REDIS:-}" ]; then
    start_redis $((sb_port + 5))
    extra+=$(printf '\n[stores]\nredis = "%s"\n' "$redis_url")
fi
start_switchboard "$sb_port" "$extra"
kamailio -f "$here/kamailio_relay.cfg" -l "udp:127.0.0.1:$kam_port" -A "PHONE_BASE=$phone_base" -m 2048 -M 64 \
    -DD -E -Y "$work" -P "$work/kamailio.pid" > "$work/kamailio.log" 2>&1 &
pids+=($!)
sleep 1

echo "Calls over UDP with callload ($threads threads), $secs s per rate${REDIS:+, switchboard with events and snapshots in Redis}"
for name in switchboard kamailio; do
    best=0
    round=0
    for rate in $rates; do
        round=$((round + 1))
        # Fresh phone ports each round: nothing of the round before reaches them.
        base=$((phone_base + 20 * round))
        if [ "$name" = switchboard ]; then
            args=(--target "127.0.0.1:$sb_port" --register --pid "$sb")
        else
            base=$phone_base
            args=(--target "127.0.0.1:$kam_port" --pid "$(pgrep -d, -x kamailio)")
        fi
        if line=$("$bin/callload" "${args[@]}" --rate "$rate" --secs "$secs" --threads "$threads" \
            --phone-base "$base" 2>/dev/null); then
            echo "  $name: $line"
            best=$rate
        else
            echo "  $name: ${line:-rate $rate failed} (failed)"
            break
        fi
        sleep 2
    done
    echo "$name: highest clean rate $best calls/s"
done
