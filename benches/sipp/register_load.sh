#!/usr/bin/env bash
# REGISTER load over UDP on this machine: SIPp registers DNs against `switchboard serve` and
# against Kamailio (usrloc in memory, no authentication) in the same run, then both with
# digest authentication through sipload (every DN its own password, which SIPp cannot do).
#
#   benches/sipp/register_load.sh            # DNS=10000 CALLS=50000 LIMIT=200 by default
#   REDIS=redis://127.0.0.1:6379/9 benches/sipp/register_load.sh   # bindings in Redis
#
# Needs sipp (sip-tester) and kamailio (Debian packages). Prints each rate, the ratio, and with
# sipload each server's CPU time per registration.
set -euo pipefail

source "$(dirname "$0")/common.sh"
dns=${DNS:-10000}
calls=${CALLS:-50000}
limit=${LIMIT:-200}
sb_port=${SB_PORT:-35060}
kam_port=${KAM_PORT:-35070}
first=100000

need sipp kamailio
build_release switchboard switchboard-benches

# Two tenants with the same DNs: bench.local registers without authentication (as Kamailio
# does here), auth.local with a password per DN.
{
    printf '[sip]\nlisten = "127.0.0.1:%s"\n\n[http]\nlisten = "127.0.0.1:%s"\n\n' "$sb_port" $((sb_port + 1))
    if [ -n "${REDIS:-}" ]; then printf '[stores]\nredis = "%s"\n\n' "$REDIS"; fi
    printf '[[tenants]]\nname = "bench"\ndomain = "bench.local"\nauthenticate = false\n'
    for ((dn = first; dn < first + dns; dn++)); do printf '[[tenants.dns]]\nnumber = "%s"\n' "$dn"; done
    printf '\n[[tenants]]\nname = "auth"\ndomain = "auth.local"\n'
    for ((dn = first; dn < first + dns; dn++)); do
        printf '[[tenants.dns]]\nnumber = "%s"\npassword = "pw%s"\n' "$dn" "$dn"
    done
} > "$work/switchboard.toml"
{
    echo SEQUENTIAL
    for ((dn = first; dn < first + dns; dn++)); do echo "$dn;bench.local"; done
} > "$work/users.csv"

# In the scratch directory: the default events file lands there.
(cd "$work" && RUST_LOG=warn exec "$bin/switchboard" serve --config "$work/switchboard.toml" \
    > "$work/switchboard.log" 2>&1) &
sb_pid=$!
pids+=($sb_pid)
kamailio -f "$here/kamailio.cfg" -l "udp:127.0.0.1:$kam_port" -DD -E -Y "$work" -P "$work/kamailio.pid" \
    > "$work/kamailio.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((sb_port + 1))") 2>/dev/null && break
    sleep 0.1
done
sleep 1
for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "a registrar did not start:" >&2
        tail -5 "$work/switchboard.log" "$work/kamailio.log" >&2
        exit 1
    fi
done

# SIPp: `calls` registrations, `limit` at once, DNs in turn from the injection file.
sipp_rate() {
    local name=$1 port=$2 start end
    start=$(date +%s.%N)
    if ! (cd "$work" && sipp -sf "$here/register_open.xml" -inf "$work/users.csv" \
        -m "$calls" -l "$limit" -r 100000 -i 127.0.0.1 -p $((port + 5)) \
        -timeout 300s -nostdin -trace_screen -screen_file "$work/sipp-$name.screen" \
        "127.0.0.1:$port" > /dev/null 2>&1); then
        echo "sipp against $name failed:" >&2
        grep -E "Successful call|Failed call" "$work/sipp-$name.screen" >&2 || true
        return 1
    fi
    end=$(date +%s.%N)
    python3 -c "print(round($calls / ($end - $start)))"
}

echo "REGISTER over UDP, $dns DNs, $calls registrations, $limit at once"
kam=$(sipp_rate kamailio "$kam_port")
echo "  SIPp -> Kamailio (no auth):      $kam registrations/s"
sb=$(sipp_rate switchboard "$sb_port")
echo "  SIPp -> switchboard (no auth):   $sb registrations/s"
python3 -c "print(f'  switchboard / Kamailio:          {$sb / $kam:.2f}')"

# Kamailio's processes (it forks its workers), for the CPU it spends.
kam_pids=$(pgrep -d, -x kamailio)
echo "sipload ($limit phones, one thread; register, refresh, unregister; the server's CPU per"
echo "registration from /proc):"
echo "  Kamailio, no auth:"
"$bin/sipload" --target "127.0.0.1:$kam_port" --pid "$kam_pids" --domain bench.local --first $first --count "$dns" \
    --phones "$limit" --no-auth --rounds 2 --unregister | sed 's/^/    /'
echo "  switchboard, no auth:"
"$bin/sipload" --target "127.0.0.1:$sb_port" --pid "$sb_pid" --domain bench.local --first $first --count "$dns" \
    --phones "$limit" --no-auth --rounds 2 --unregister | sed 's/^/    /'
echo "  Kamailio, digest (MD5, a challenge per registration):"
"$bin/sipload" --target "127.0.0.1:$kam_port" --pid "$kam_pids" --domain auth.local --first $first --count "$dns" \
    --phones "$limit" --password 'pw{dn}' --rounds 2 --unregister | sed 's/^/    /'
echo "  switchboard, digest (MD5, a challenge per registration):"
"$bin/sipload" --target "127.0.0.1:$sb_port" --pid "$sb_pid" --domain auth.local --first $first --count "$dns" \
    --phones "$limit" --password 'pw{dn}' --rounds 2 --unregister | sed 's/^/    /'
