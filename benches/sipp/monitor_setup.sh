#!/usr/bin/env bash
# A supervisor's monitoring, timed: SIPp plays the carrier's SBC (127.0.0.2, calling a1003's
# DN 1003), the phones of a1003 and of the supervisor a1020 (answering every INVITE and
# re-INVITE) and the media server (127.0.0.3; MSML unless CONTROL=netann). monitorload logs
# both agents in over gRPC and, of each call that reaches a1003, monitors every second one
# (listen) then stops, and releases each: it prints the time from the request to the
# supervisor being in, from the stop to the parties talking directly again, and the SIP
# messages a monitored call costs beyond one that is not.
#
#   benches/sipp/monitor_setup.sh            # CALLS=40 CONTROL=msml
set -euo pipefail

source "$(dirname "$0")/common.sh"
calls=${CALLS:-40}
control=${CONTROL:-msml}
port=38060
ms_port=38090
need sipp
build_release switchboard switchboard-benches

# The demo, its media server on 127.0.0.3:$ms_port controlled by $control.
"$bin/monitorload" --print-tenant --media "127.0.0.3:$ms_port" --control "$control" \
    > "$work/demo.toml"
start_switchboard "$port" "$(cat "$work/demo.toml")"
scenario=msml_server.xml
[ "$control" = netann ] && scenario=media_server.xml
(cd "$work" && exec sipp -sf "$here/$scenario" -s msml -i 127.0.0.3 -p "$ms_port" -nostdin \
    > /dev/null 2>&1) &
pids+=($!)
start_phone 1003 $((port + 10)) "$port" phone_reoffers.xml
start_phone 1020 $((port + 11)) "$port" phone_reoffers.xml
sleep 0.5

"$bin/monitorload" --grpc "127.0.0.1:$((port + 2))" --http "127.0.0.1:$((port + 1))" \
    --calls "$calls" > "$work/load.txt" 2>&1 &
load=$!
for _ in $(seq 100); do
    grep -q ready "$work/load.txt" 2>/dev/null && break
    sleep 0.1
done
# One call at a time, each once the one before is over.
(cd "$work" && exec sipp -sf "$here/sbc_reoffers.xml" -s 1003 -i 127.0.0.2 -p $((port + 12)) \
    -r 2 -l 1 -m "$calls" -timeout $((calls * 5 + 30))s -nostdin "127.0.0.1:$port" \
    > /dev/null 2>&1) &
pids+=($!)
status=0
wait "$load" || status=$?
echo "Monitoring ($control media server), $calls calls, half monitored:"
grep -v '^ready' "$work/load.txt"
exit $status
