#!/usr/bin/env bash
# Failover: a proxy and two cluster nodes on a private Redis; CALLS established calls (default
# 1,000; SIPp SBC on 127.0.0.2 through the proxy to a SIPp phone on 1001, talking HOLD seconds
# before the SBC holds, resumes and hangs up), then the node carrying more of them is killed
# (SIGKILL). Prints how many it carried, when
# the other node adopted the first and the last of them (from the kill), and the share of all
# the calls that ended normally when SIPp sent their BYEs (goal: 100%).
#
#   benches/sipp/failover.sh            # CALLS=1000 RATE=200 HOLD=30
set -euo pipefail

source "$(dirname "$0")/common.sh"
calls=${CALLS:-1000}
rate=${RATE:-200}
hold=${HOLD:-30}
base=${PORT:-37060}
need sipp redis-server curl python3
build_release switchboard
start_redis $((base + 90))

proxy=$base
nodes=($((base + 10)) $((base + 20)))
# The calls in progress on the node with SIP port $1.
active() { sb_http=$(($1 + 1)) calls_active; }

# Each node's "call adopted" lines are read below: logging at info.
export SB_LOG=info
stores=$(printf '[events]\nfile = ""\n[stores]\nredis = "%s"' "$redis_url")$'\n'
declare -A pid_of
for n in "${nodes[@]}"; do
    start_switchboard "$n" "$stores$(printf '[cluster]\nproxies = ["127.0.0.1:%s"]\n' "$proxy")"
    pid_of[$n]=$sb
done
start_switchboard "$proxy" "$stores$(printf '[cluster]\nnodes = ["127.0.0.1:%s", "127.0.0.1:%s"]\n' "${nodes[0]}" "${nodes[1]}")"
# The phone: registered through the proxy, answering every call and its re-INVITEs.
start_phone 1001 $((base + 50)) "$proxy" phone_answer.xml
sleep 1

# The SBC: each call answered, held for the call's length, then held, resumed and hung up
# (sbc_hold.xml with its first pause made the -d one), through the proxy's Record-Route.
sed '0,/<pause milliseconds="200"\/>/s//<pause\/>/' "$here/sbc_hold.xml" > "$work/sbc_long.xml"
(cd "$work" && sipp -sf "$work/sbc_long.xml" -s 1001 -i 127.0.0.2 -p $((base + 60)) -r "$rate" -m "$calls" \
    -l $((calls + 100)) -d $((hold * 1000)) -timeout $((hold * 3 + 60))s -nostdin \
    -trace_stat -fd 1 -trace_err "127.0.0.1:$proxy" > /dev/null 2>&1) &
uac=$!
for _ in $(seq 600); do
    up=$(( $(active "${nodes[0]}") + $(active "${nodes[1]}") ))
    [ "$up" -ge "$calls" ] && break
    sleep 0.1
done
a=$(active "${nodes[0]}"); b=$(active "${nodes[1]}")
if [ "$a" -ge "$b" ]; then victim=${nodes[0]}; survivor=${nodes[1]}; carried=$a
else victim=${nodes[1]}; survivor=${nodes[0]}; carried=$b; fi
echo "$up calls up ($a and $b on the two nodes); killing the node with $carried"
killed_at=$(date +%s.%N)
kill -9 "${pid_of[$victim]}"
for _ in $(seq 300); do
    adopted=$(grep -c "call adopted" "$work/switchboard-$survivor.log" || true)
    [ "$adopted" -ge "$carried" ] && break
    sleep 0.1
done
python3 - "$work/switchboard-$survivor.log" "$killed_at" <<'PY'
import datetime, re, sys
log, killed = sys.argv[1], float(sys.argv[2])
times = []
for line in open(log, errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "call adopted" in line:
        stamp = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
        times.append(stamp.timestamp() - killed)
if times:
    print(f"adopted {len(times)}: the first {min(times) * 1000:.0f} ms after the kill, "
          f"the last {max(times) * 1000:.0f} ms")
else:
    print("none adopted")
PY
wait "$uac" || true
[ -n "${KEEP:-}" ] && cp -r "$work" "$KEEP"
python3 - "$work" "$calls" <<'PY'
import csv, glob, sys
work, calls = sys.argv[1], int(sys.argv[2])
ok = failed = 0
for path in glob.glob(f"{work}/sbc_long_*_.csv"):
    rows = list(csv.reader(open(path), delimiter=";"))
    head, last = rows[0], rows[-1]
    ok += int(last[head.index("SuccessfulCall(C)")])
    failed += int(last[head.index("FailedCall(C)")])
print(f"ended normally: {ok} of {calls} ({100 * ok / calls:.1f}%), failed {failed}")
PY
