#!/usr/bin/env bash
# The edge under attack on this machine, with the loopback exemption off so that each
# 127.0.0.x address is a source of its own:
#   1. a flood of OPTIONS (RATE a second, 20000 by default, for SECS) from 127.0.0.9 while 200
#      phones from 127.0.0.20 register and refresh with digest (sipload, again and again) and
#      svwar scans from 127.0.0.1 and the trunk (127.0.0.2) calls a SIPp phone on 127.0.0.21 at
#      50 calls/s: the phones' success and latency, the calls' success and setup time, the
#      flood's answers, the node's CPU;
#   2. a flood of INVITEs at the same rate from the trunk's address (127.0.0.2, never banned):
#      how many got 503 at once, and the node's memory before, right after and once its calls
#      ended (events and snapshots in a private Redis, as in production: a node without Redis
#      keeps its last 100,000 events per stream in memory by design);
#   3. svcrack guessing a DN's password: guesses answered before the ban and after.
#
#   benches/sipp/defence_load.sh
set -euo pipefail

source "$(dirname "$0")/common.sh"
rate=${RATE:-20000}
secs=${SECS:-10}
port=${SB_PORT:-37060}
first=100000
dns=200

need python3 svwar svcrack redis-server sipp
build_release switchboard switchboard-benches
start_redis $((port + 5))

{
    printf '[sip]\nlisten = "127.0.0.1:%s"\n' "$port"
    printf '[http]\nlisten = "127.0.0.1:%s"\ncallbacks_listen = "127.0.0.1:%s"\n[grpc]\nlisten = "127.0.0.1:%s"\n' \
        $((port + 1)) $((port + 3)) $((port + 2))
    printf '[defence]\nexempt_loopback = false\n[stores]\nredis = "%s"\n' "$redis_url"
    printf '[[tenants]]\nname = "auth"\ndomain = "auth.local"\n'
    printf '[[tenants.trunks]]\nname = "carrier"\ninbound = ["127.0.0.2"]\n'
    printf '%s\n' '[[tenants.dial_plan]]' "pattern = '^(1\\d{5})\$'" 'rewrite = "$1"' 'destination = "extension:$1"'
    printf '[[tenants.dns]]\nnumber = "100500"\npassword = "pw100500"\n'
    for ((dn = first; dn < first + dns; dn++)); do
        printf '[[tenants.dns]]\nnumber = "%s"\npassword = "pw%s"\n' "$dn" "$dn"
    done
} > "$work/switchboard.toml"
(cd "$work" && RUST_LOG=warn exec "$bin/switchboard" serve --config "$work/switchboard.toml" \
    > "$work/switchboard.log" 2>&1) &
sb=$!
pids+=($sb)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null && break
    sleep 0.1
done
ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$sb/stat"; }
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$sb/status"; }
metric() { curl -s "127.0.0.1:$((port + 1))/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# The phone the trunk calls: DN 100500 on 127.0.0.21, answering every call.
phone=$((port + 30))
sed -e 's/demo.local/auth.local/g' -e 's/Expires: 300/Expires: 3600/' "$here/register_md5.xml" \
    > "$work/register_auth.xml"
(cd "$work" && sipp -sf "$work/register_auth.xml" -s 100500 -au 100500 -ap pw100500 -m 1 \
    -i 127.0.0.21 -p "$phone" -timeout 10s -nostdin "127.0.0.1:$port" > /dev/null 2>&1)
(cd "$work" && exec sipp -sf "$here/uas_load.xml" -s 100500 -i 127.0.0.21 -p "$phone" -nostdin \
    > /dev/null 2>&1) &
pids+=($!)

echo "1. OPTIONS flood of $rate/s for $secs s from 127.0.0.9, 200 phones registering from 127.0.0.20, svwar scanning from 127.0.0.1, the trunk calling at 50/s"
before=$(cpu)
(cd "$work" && sipp -sn uac -s 100500 -i 127.0.0.2 -p $((port + 31)) -r 50 -m $((50 * secs)) \
    -timeout $((secs + 30))s -nostdin -trace_stat -stf calls.csv -trace_rtt -rtt_freq 1 \
    "127.0.0.1:$port" > /dev/null 2>&1) &
calls=$!
"$bin/sipflood" --target "127.0.0.1:$port" --from 127.0.0.9 --rate "$rate" --secs "$secs" \
    --domain auth.local > "$work/flood.txt" &
flood=$!
svwar --force --domain auth.local -e 100000-100300 -p "$port" 127.0.0.1 > "$work/svwar.txt" 2>&1 &
rounds=$((secs * 2))
"$bin/sipload" --target "127.0.0.1:$port" --domain auth.local --first "$first" --count "$dns" \
    --password 'pw{dn}' --phones 200 --rounds "$rounds" --every-ms 500 --threads 1 \
    --from 127.0.0.20 > "$work/phones.txt" 2>/dev/null || true
wait "$flood"
wait "$calls" || true
echo "   flood:  $(cat "$work/flood.txt")"
read -r ok failed p50 p99 < <(sipp_outcome "$work/calls.csv")
echo "   calls from the trunk meanwhile: $ok of $((50 * secs)) completed, $failed failed, setup p50 $p50 ms p99 $p99 ms"
echo "   phones: $rounds rounds of $dns registrations (then refreshes), one every 500 ms:"
python3 - "$work/phones.txt" <<'PY'
import re, sys
rounds = [l for l in open(sys.argv[1]) if l.startswith(("register:", "refresh:"))]
ok = sum(int(re.search(r"(\d+)/\d+ in", l).group(1)) for l in rounds)
all_ = sum(int(re.search(r"\d+/(\d+) in", l).group(1)) for l in rounds)
p99 = [float(re.search(r"p99 ([\d.]+) ms", l).group(1)) for l in rounds]
print(f"     {ok}/{all_} registered; p99 of the first round {p99[0]:.1f} ms (its phones' first REGISTERs"
      f" past the burst dropped and retransmitted), of the later rounds at most {max(p99[1:] or [0]):.1f} ms")
PY
grep -E "found nothing|reqauth|noauth" "$work/svwar.txt" | head -2 | sed 's/^/   svwar: /' || true
echo "   node CPU during the phase: $(python3 -c "print(round($(cpu) - $before, 2))") s of $secs s"
echo "   bans: $(metric switchboard_sources_banned_total), dropped: $(metric switchboard_banned_dropped_total)"
sed 's/\x1b\[[0-9;]*m//g' "$work/switchboard.log" | grep -o "source banned.*" | sed 's/^/     /' || true

echo "2. INVITE flood of $rate/s for $secs s from the trunk's address 127.0.0.2 (to a number no rule knows)"
echo "   RSS before: $(rss)"
"$bin/sipflood" --target "127.0.0.1:$port" --from 127.0.0.2 --rate "$rate" --secs "$secs" \
    --method INVITE --user 555 --domain auth.local > "$work/trunk.txt"
echo "   flood:  $(cat "$work/trunk.txt")"
echo "   RSS right after: $(rss); calls: $(metric switchboard_calls_active); overload 503s: $(metric switchboard_overload_refused_total)"
start=$(date +%s)
for _ in $(seq 90); do [ "$(metric switchboard_calls_active)" = 0 ] && break; sleep 1; done
sleep 15
echo "   RSS $(($(date +%s) - start)) s later (calls ended, then 15 s): $(rss); calls: $(metric switchboard_calls_active)"

echo "3. svcrack guessing DN $first's password from 127.0.0.1"
failures=$(metric switchboard_source_failures_total)
start=$(date +%s.%N)
svcrack -u "$first" --domain auth.local -r 1000000-9999999 --maximumtime 3 -p "$port" 127.0.0.1 \
    > "$work/svcrack.txt" 2>&1 || true
end=$(date +%s.%N)
answered=$(python3 -c "print(int($(metric switchboard_source_failures_total) - $failures))")
echo "   guesses answered (failures counted): $answered, then banned; dropped since: $(metric switchboard_banned_dropped_total)"
echo "   svcrack ran $(python3 -c "print(round($end - $start, 1))") s (it stops 3 s after its last answer)"
