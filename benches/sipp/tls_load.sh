#!/usr/bin/env bash
# REGISTER and call rates over UDP, TCP and TLS on this machine. The TLS certificate is made
# with openssl for the run.
#  1. sipload registers DNs (each with its own password, digest on every registration) against
#     one `switchboard serve`, a connection per phone kept across rounds over TCP and TLS
#     (persistent connections, as phones keep them), then refreshes them.
#  2. A trunk's SBCs (PAIRS SIPp UACs from 127.0.0.2, each over one TCP connection kept for the
#     run) call SIPp phones on UDP through a second node on the demo tenant, first over TCP,
#     then over TLS. Debian's SIPp has no TLS, so each SBC sits behind socat (OPENSSL to the
#     node), and for a fair comparison the TCP run goes through socat too (plain TCP).
#
#   benches/sipp/tls_load.sh          # DNS=20000 PHONES=200 PAIRS=2 RATES="500 1000 ... 4000" SECS=10
#
# Prints each transport's register and refresh rates and latencies, then each transport's call
# rates, rising until one fails a call or is not kept.
set -euo pipefail

source "$(dirname "$0")/common.sh"
dns=${DNS:-20000}
phones=${PHONES:-200}
port=${SB_PORT:-36060}
first=100000

need openssl python3 sipp socat curl
build_release switchboard switchboard-benches

(cd "$work" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=node" -keyout node.key -out node.csr 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1\n' > san.cnf &&
    openssl x509 -req -days 2 -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile san.cnf \
        -out node.pem 2>/dev/null)
{
    printf '[sip]\nlisten = "127.0.0.1:%s"\nmax_connections_per_ip = 10000\n' "$port"
    printf '[tls]\nlisten = "127.0.0.1:%s"\ncertificate = "%s/node.pem"\nkey = "%s/node.key"\n' \
        $((port + 5)) "$work" "$work"
    printf '[http]\nlisten = "127.0.0.1:%s"\ncallbacks_listen = "127.0.0.1:%s"\n[grpc]\nlisten = "127.0.0.1:%s"\n' \
        $((port + 1)) $((port + 3)) $((port + 2))
    printf '[defence]\nenabled = false\n'
    printf '[[tenants]]\nname = "auth"\ndomain = "auth.local"\n'
    for ((dn = first; dn < first + dns; dn++)); do
        printf '[[tenants.dns]]\nnumber = "%s"\npassword = "pw%s"\n' "$dn" "$dn"
    done
} > "$work/switchboard.toml"
(cd "$work" && RUST_LOG=warn exec "$bin/switchboard" serve --config "$work/switchboard.toml" \
    > "$work/switchboard.log" 2>&1) &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((port + 1))") 2>/dev/null && break
    sleep 0.1
done

echo "REGISTER with digest, $dns DNs, $phones phones, one round then a refresh"
for transport in udp tcp tls; do
    target=127.0.0.1:$port
    [ "$transport" = tls ] && target=127.0.0.1:$((port + 5))
    echo "  $transport:"
    "$bin/sipload" --target "$target" --domain auth.local --first "$first" --count "$dns" \
        --password 'pw{dn}' --phones "$phones" --rounds 2 --threads 2 \
        --transport "$transport" --ca "$work/ca.pem" | sed 's/^/    /'
done

pairs=${PAIRS:-2}
rates=${RATES:-500 1000 1500 2000 2500 3000 4000}
secs=${SECS:-10}
phone_base=$((port + 20))
calls_port=$((port + 10))
start_switchboard "$calls_port" "$(printf '[tls]\nlisten = "127.0.0.1:%s"\ncertificate = "%s/node.pem"\nkey = "%s/node.key"\n' \
    $((calls_port + 5)) "$work" "$work")"
for ((i = 1; i <= pairs; i++)); do start_phone $((1000 + i)) $((phone_base + i)) "$calls_port"; done
front=$((port + 40))
socat TCP-LISTEN:$front,bind=127.0.0.2,reuseaddr,fork,nodelay "TCP:127.0.0.1:$calls_port,bind=127.0.0.2,nodelay" &
pids+=($!)
socat TCP-LISTEN:$((front + 1)),bind=127.0.0.2,reuseaddr,fork,nodelay \
    "OPENSSL:127.0.0.1:$((calls_port + 5)),bind=127.0.0.2,cafile=$work/ca.pem,nodelay" &
pids+=($!)
sleep 1

echo "Calls from the trunk over TCP and TLS (INVITE-200-ACK-BYE, no hold time), $pairs SBCs behind socat, $secs s per rate"
ticks=$(getconf CLK_TCK)
cpu() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$sb/stat"; }
for transport in tcp tls; do
    to=$front
    [ "$transport" = tls ] && to=$((front + 1))
    before=$(cpu)
    climb "127.0.0.2:$to" "$transport" -t t1 > "$work/climb.txt"
    cat "$work/climb.txt"
    settle
    calls=$(awk '{n += $5 * '"$secs"'} END {print n}' "$work/climb.txt")
    echo "  $transport: highest rate without failures $best/s;" \
        "node CPU $(python3 -c "print(round(($(cpu) - $before) / $calls * 1e6))") µs a call over the $calls calls"
done
