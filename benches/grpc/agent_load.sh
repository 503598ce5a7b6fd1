#!/usr/bin/env bash
# Agent state changes through the voice gRPC API: a node with a 10,000-agent tenant and its
# own Redis, every agent logged in, changes at a steady rate with subscribers following the
# tenant's event stream; prints the time from request to event at every subscriber and the
# node's CPU.
#
#   benches/grpc/agent_load.sh [rate per second] [seconds] [subscribers]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../sipp/common.sh"
need redis-server
rate=${1:-1000}
seconds=${2:-30}
subscribers=${3:-100}

build_release switchboard switchboard-benches
start_redis 26479
"$bin/agentload" --print-tenant > "$work/tenant.toml"
start_switchboard 26480 "$(printf '[stores]\nredis = "%s"\n' "$redis_url"; cat "$work/tenant.toml")"
"$bin/agentload" --grpc "127.0.0.1:26482" --rate "$rate" --seconds "$seconds" \
    --subscribers "$subscribers" --pid "$sb"
