#!/usr/bin/env bash
# Runs the benchmark matrix of docs/benchmarks.md and prints a markdown table:
# Mason mode with 1, 2 and 4 groups x 1 and 4 spaces, fsync on and off, the direct
# baseline, latency at concurrency 1, and the sequencer alone.
# Each row is the median of $TRIALS runs (default 3), with the range.
# Usage: [TRIALS=n] scripts/bench.sh [duration-secs] [concurrency]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5}
conc=${2:-64}
cargo build --release -q
bin=target/release/mason
out=results/bench-$(date +%s)
mkdir -p "$out"

trials=${TRIALS:-3}

# shellcheck source=scripts/bench-row.sh
source scripts/bench-row.sh

echo "| run | flags | ops/s (median) | range | p50 us | p99 us | p99.9 us | verify |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
for fsync in off on; do
  for g in 1 2 4; do
    for s in 1 4; do
      row "mason-g$g-s$s-fsync-$fsync" --groups "$g" --spaces "$s" --fsync "$fsync" \
        --clients 2 --client-threads 4 --concurrency "$conc"
    done
  done
done
row mason-g2-s1-fsync-off-delay100 --groups 2 --spaces 1 --fsync off --batch-delay-us 100 \
  --clients 2 --client-threads 4 --concurrency "$conc"
row direct-s1 --system direct --spaces 1 --clients 2 --client-threads 4 --concurrency "$conc"
row direct-s4 --system direct --spaces 4 --clients 2 --client-threads 4 --concurrency "$conc"
row mason-c1-fsync-off --groups 1 --clients 1 --client-threads 1 --concurrency 1 --fsync off
row mason-c1-fsync-on --groups 1 --clients 1 --client-threads 1 --concurrency 1 --fsync on
row direct-c1 --system direct --clients 1 --client-threads 1 --concurrency 1

echo
for b in 1 100 1000; do "$bin" bench-sequencer --batch "$b" --spaces 1 --duration 3; done
"$bin" bench-sequencer --batch 1000 --spaces 4 --duration 3
# Over TCP: a fresh sequencer for each run (a bench starts its groups' batch ids at 1), on
# loopback only, without a cluster key.
for run in "1 8" "100 8" "100 256" "1000 8"; do
  set -- $run
  port=$((20000 + RANDOM % 10000))
  "$bin" sequencer --listen "127.0.0.1:$port" --spaces 1 --groups 8 --threads 1 --insecure 2>/dev/null &
  spid=$!
  sleep 0.5
  echo "pipeline $2: $("$bin" bench-sequencer --addr "127.0.0.1:$port" --batch "$1" --spaces 1 \
    --groups 8 --pipeline "$2" --duration 3 --threads 1 --insecure 2>/dev/null | tail -1)"
  kill "$spid"; wait "$spid" 2>/dev/null || true
done
