# Sourced by the load scripts beside it: the release build, a scratch directory whose processes
# stop when the script exits, and the pieces the call benchmarks start (a private Redis, a
# switchboard node on the demo tenant, SIPp phones that answer).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/benches/sipp"

# Fails unless every tool named is installed.
need() {
    local tool
    for tool; do
        command -v "$tool" >/dev/null || {
            echo "missing $tool (apt-get install sip-tester kamailio redis-server curl)" >&2
            exit 1
        }
    done
}

# Where release builds land: the target directory of `cargo metadata`, then release.
release_dir() {
    local target
    target=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    echo "$target/release"
}

# Builds the packages named in release mode; $bin is where their binaries are.
build_release() {
    local args=() p
    for p; do args+=(-p "$p"); done
    (cd "$root" && cargo build --release --locked -q "${args[@]}")
    bin=$(release_dir)
}

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A Redis of the run's own on port $1, without persistence; its URL in $redis_url.
start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
        > "$work/redis.log" 2>&1 &
    pids+=($!)
    redis_url="redis://127.0.0.1:$1"
    sleep 0.5
}

# `switchboard serve` on the demo tenant (or $2's tenants): SIP on port $1, HTTP on $1+1, gRPC on $1+2, the
# callbacks API on $1+3, no call probes; $2, if given, is more TOML. Its configuration and log
# are $work/switchboard-$1.toml and .log (logging at $SB_LOG, warn unless set). Its pid in $sb
# once it answers on HTTP.
start_switchboard() {
    local demo='demo = true\n'
    case "${2:-}" in *'[[tenants]]'*) demo='' ;; esac
    printf "$demo"'[sip]\nlisten = "127.0.0.1:%s"\nmax_backlog = 100000\n[http]\nlisten = "127.0.0.1:%s"\ncallbacks_listen = "127.0.0.1:%s"\n[grpc]\nlisten = "127.0.0.1:%s"\n[calls]\nprobe_secs = 0\n%s' \
        "$1" $(($1 + 1)) $(($1 + 3)) $(($1 + 2)) "${2:-}" > "$work/switchboard-$1.toml"
    # In the scratch directory: the default events file (or a spool) lands there.
    (cd "$work" && RUST_LOG=${SB_LOG:-warn} exec "$bin/switchboard" serve \
        --config "$work/switchboard-$1.toml" > "$work/switchboard-$1.log" 2>&1) &
    sb=$!
    pids+=($sb)
    sb_http=$(($1 + 1))
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$sb_http") 2>/dev/null && return
        sleep 0.1
    done
    echo "switchboard did not start:" >&2
    tail -5 "$work/switchboard-$1.log" >&2
    exit 1
}

# A phone on DN $1 at 127.0.0.1:$2: registered with switchboard on SIP port $3 for an hour
# (the registrar's longest), then answering every call there with scenario $4 (uas_load.xml
# unless given). Its pid in $!.
start_phone() {
    sed 's/Expires: 300/Expires: 3600/' "$here/register_md5.xml" > "$work/register_hour.xml"
    (cd "$work" && sipp -sf "$work/register_hour.xml" -s "$1" -au "$1" -ap "${PHONE_PASSWORD:-demo}$1" -m 1 \
        -i 127.0.0.1 -p "$2" -timeout 10s -nostdin "127.0.0.1:$3" > /dev/null 2>&1)
    (cd "$work" && exec sipp -sf "$here/${4:-uas_load.xml}" -s "$1" -i 127.0.0.1 -p "$2" -nostdin \
        -max_socket 100000 > /dev/null 2>&1) &
    pids+=($!)
}

# The resident memory of process $1, in KiB.
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The calls in progress on the switchboard started last.
calls_active() {
    curl -s "http://127.0.0.1:$sb_http/metrics" | awk '/^switchboard_calls_active/ {print $2}'
}

# The outcome of SIPp UAC runs in the scratch directory: "<successful> <failed> <p50> <p99>"
# from the -trace_stat files given (summed) and the setup times of every uac_*_rtt.csv there
# (-trace_rtt; whole milliseconds), which it then removes.
sipp_outcome() {
    python3 - "$work" "$@" <<'PY'
import csv, glob, sys
work, stats = sys.argv[1], sys.argv[2:]
ok = failed = 0
for path in stats:
    rows = list(csv.reader(open(path), delimiter=";"))
    head, last = rows[0], rows[-1]
    ok += int(last[head.index("SuccessfulCall(C)")])
    failed += int(last[head.index("FailedCall(C)")])
rtts = []
for f in glob.glob(f"{work}/uac_*_rtt.csv"):
    rows = list(csv.reader(open(f), delimiter=";"))
    if not rows:
        continue
    col = next((i for i, h in enumerate(rows[0]) if h.startswith("response_time")), 1)
    for row in rows[1:]:
        try:
            rtts.append(float(row[col]))
        except (ValueError, IndexError):
            pass
rtts.sort()
pct = lambda p: rtts[min(len(rtts) - 1, int(len(rtts) * p))] if rtts else float("nan")
print(f"{ok} {failed} {pct(0.5):.2f} {pct(0.99):.2f}")
PY
    rm -f "$work"/uac_*_rtt.csv
}

# Waits until switchboard has no call left from the run before (their transactions linger for
# 64*T1 after they end), so each rate starts from rest.
settle() {
    for _ in $(seq 90); do
        [ "$(calls_active)" = 0 ] && return
        sleep 1
    done
}

# One run of $pairs SIPp UACs from 127.0.0.2 (a trunk's address) calling DNs 1001.. through $1
# at $2 calls/s in all for $secs seconds, more SIPp arguments after $3 (the run's tag); prints
# "achieved_cps failed p50_ms p99_ms".
calls_at() {
    local target=$1 rate=$2 tag=$3 per calls start end i
    shift 3
    per=$(python3 -c "print($rate / $pairs)")
    calls=$(python3 -c "print(int($rate / $pairs * $secs))")
    start=$(date +%s.%N)
    local upids=()
    for ((i = 1; i <= pairs; i++)); do
        (cd "$work" && sipp -sn uac -s $((1000 + i)) -i 127.0.0.2 -p $((phone_base + 100 + i)) \
            -r "$per" -rp 1000 -m "$calls" -l 100000 -timeout $((secs * 3 + 30))s -nostdin \
            -trace_stat -stf "$tag-$i.csv" -trace_rtt -rtt_freq 100 "$@" \
            "$target" > /dev/null 2>&1) &
        upids+=($!)
    done
    for pid in "${upids[@]}"; do wait "$pid" || true; done
    end=$(date +%s.%N)
    local stats=() ok failed p50 p99
    for ((i = 1; i <= pairs; i++)); do stats+=("$work/$tag-$i.csv"); done
    read -r ok failed p50 p99 < <(sipp_outcome "${stats[@]}")
    python3 -c "print(f'{$ok / ($end - $start):.0f} $failed $p50 $p99')"
}

# Runs calls_at through $1 at each of $rates, rising while a rate is clean (no failed call and
# kept within 2 %), printing each as "$2 at R/s: ..."; more SIPp arguments after $2. The highest
# clean rate in $best.
climb() {
    local target=$1 name=$2 rate cps failed p50 p99
    shift 2
    best=0
    for rate in $rates; do
        settle
        read -r cps failed p50 p99 < <(calls_at "$target" "$rate" "$name-$rate" "$@")
        echo "  $name at $rate/s: achieved $cps calls/s, $failed failed, setup p50 $p50 ms p99 $p99 ms"
        if [ "$failed" = 0 ] && [ "$cps" -ge $((rate * 98 / 100)) ]; then best=$rate; else break; fi
    done
}
