#!/usr/bin/env bash
# REGISTER rates over UDP, TCP and TLS on this machine: sipload registers DNs (each with its
# own password, digest on every registration) against one `switchboard serve`, a connection per
# phone kept across rounds over TCP and TLS (persistent connections, as phones keep them), then
# refreshes them. The TLS certificate is made with openssl for the run.
#
#   benches/sipp/tls_load.sh          # DNS=20000 PHONES=200 by default
#
# Prints each transport's register and refresh rates and latencies.
set -euo pipefail

source "$(dirname "$0")/common.sh"
dns=${DNS:-20000}
phones=${PHONES:-200}
port=${SB_PORT:-36060}
first=100000

need openssl python3
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
