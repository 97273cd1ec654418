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

# One row: the median (by throughput) of $trials runs of `mason local` with the given flags.
row() { # label, then mason local flags
  local label=$1; shift
  local lines="" verdicts="" t res agg
  for t in $(seq 1 "$trials"); do
    res=$("$bin" local --duration "$dur" --warmup 1 --out "$out/$label-$t" "$@" 2>/dev/null)
    agg=$(echo "$res" | grep -A1 '^aggregate-throughput' | tail -1)
    lines+="$agg"$'\n'
    verdicts+="$(echo "$res" | grep '^verify:' | cut -d' ' -f2) "
  done
  local med
  med=$(printf '%s' "$lines" | sort -n -k1,1 | awk -v n="$trials" 'NR==int((n+1)/2)')
  local lo hi
  lo=$(printf '%s' "$lines" | sort -n -k1,1 | head -1 | awk '{print $1*1000000}')
  hi=$(printf '%s' "$lines" | sort -n -k1,1 | tail -1 | awk '{print $1*1000000}')
  read -r mops p50 p99 p999 _ <<<"$med"
  printf '| %s | %s | %.0f | %.0f..%.0f | %s | %s | %s | %s |\n' "$label" "$*" \
    "$(awk -v m="$mops" 'BEGIN{print m*1000000}')" "$lo" "$hi" "$p50" "$p99" "$p999" "$verdicts"
}

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
"$bin" sequencer --listen 127.0.0.1:17901 --spaces 4 --threads 1 2>/dev/null &
spid=$!
sleep 0.5
for b in 1 100 1000; do
  "$bin" bench-sequencer --addr 127.0.0.1:17901 --batch "$b" --spaces 1 --groups 8 --pipeline 8 --duration 3 --threads 1
done
kill "$spid"
