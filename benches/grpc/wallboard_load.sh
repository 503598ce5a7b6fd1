#!/usr/bin/env bash
# The wallboard under load: a node with the 10,000-agent benchmark tenant and its own Redis,
# 1,000 of its agents logged in and changing state at a steady rate, 50 clients following
# /wallboard/events and one headless Chromium showing the board; prints the time from each
# change's request to the first wallboard update that shows it, at every client, and the
# node's CPU.
#
#   benches/grpc/wallboard_load.sh [rate per second] [seconds] [clients]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../sipp/common.sh"
need redis-server
need chromium
rate=${1:-1000}
seconds=${2:-30}
clients=${3:-50}

build_release switchboard switchboard-benches
start_redis 26579
"$bin/agentload" --print-tenant > "$work/tenant.toml"
start_switchboard 26580 "$(printf '[stores]\nredis = "%s"\n' "$redis_url"; cat "$work/tenant.toml")"
chromium --headless --no-sandbox --disable-gpu --user-data-dir="$work/chromium" \
    "http://127.0.0.1:26581/wallboard/login?key=large-key" >/dev/null 2>&1 &
browser=$!
trap 'kill $browser 2>/dev/null; cleanup' EXIT
"$bin/agentload" --grpc "127.0.0.1:26582" --agents 1000 --rate "$rate" --seconds "$seconds" \
    --subscribers 1 --wallboard 127.0.0.1:26581 --wallboard-clients "$clients" --pid "$sb"
