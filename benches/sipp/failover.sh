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
# A node (or the proxy) on SIP port $1 with more TOML $2; its pid in $node_pid.
start_node() {
    printf '[sip]\nlisten = "127.0.0.1:%s"\nmax_backlog = 100000\n[http]\nlisten = "127.0.0.1:%s"\ncallbacks_listen = "127.0.0.1:%s"\n[grpc]\nlisten = "127.0.0.1:%s"\n[calls]\nprobe_secs = 0\n[events]\nfile = ""\n[stores]\nredis = "%s"\n%b' \
        "$1" $(($1 + 1)) $(($1 + 3)) $(($1 + 2)) "$redis_url" "$2" > "$work/node-$1.toml"
    (cd "$work" && RUST_LOG=info exec "$bin/switchboard" serve --config "$work/node-$1.toml" \
        > "$work/node-$1.log" 2>&1) &
    node_pid=$!
    pids+=($node_pid)
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$(($1 + 1))") 2>/dev/null && return
        sleep 0.1
    done
    echo "node on $1 did not start:" >&2
    tail -5 "$work/node-$1.log" >&2
    exit 1
}
active() { curl -s "http://127.0.0.1:$(($1 + 1))/metrics" | awk '/^switchboard_calls_active/ {print $2}'; }

declare -A pid_of
for n in "${nodes[@]}"; do
    start_node "$n" "[cluster]\nproxies = [\"127.0.0.1:$proxy\"]\n"
    pid_of[$n]=$node_pid
done
start_node "$proxy" "[cluster]\nnodes = [\"127.0.0.1:${nodes[0]}\", \"127.0.0.1:${nodes[1]}\"]\n"
# The phone: registered through the proxy, answering every call and its re-INVITEs.
sed 's/Expires: 300/Expires: 3600/' "$here/register_md5.xml" > "$work/register_hour.xml"
(cd "$work" && sipp -sf "$work/register_hour.xml" -s 1001 -au 1001 -ap demo1001 -m 1 \
    -i 127.0.0.1 -p $((base + 50)) -timeout 10s -nostdin "127.0.0.1:$proxy" > /dev/null 2>&1)
(cd "$work" && exec sipp -sf "$here/phone_answer.xml" -s 1001 -i 127.0.0.1 -p $((base + 50)) \
    -nostdin -max_socket 100000 > /dev/null 2>&1) &
pids+=($!)
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
    adopted=$(grep -c "call adopted" "$work/node-$survivor.log" || true)
    [ "$adopted" -ge "$carried" ] && break
    sleep 0.1
done
python3 - "$work/node-$survivor.log" "$killed_at" <<'PY'
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
