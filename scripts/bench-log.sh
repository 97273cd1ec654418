#!/usr/bin/env bash
# Corfu and CorfuMason side by side, in one sitting, as in docs/benchmarks.md: appends and
# reads, 64-byte (Mason's default) and 4 KiB payloads, with the log servers' and proxies'
# fsync off (paper-style) and on. Prints a markdown table; each row is the median (by
# throughput) of $TRIALS runs (default 3), with the range.
# Usage: [TRIALS=n] [BIN=path] scripts/bench-log.sh [duration-secs] [extra mason local flags]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5}
shift || true
extra=("$@")
bin=${BIN:-target/release/mason}
[ -n "${BIN:-}" ] || cargo build --release -q
out=results/bench-log-$(date +%s)
mkdir -p "$out"
trials=${TRIALS:-3}

# shellcheck source=scripts/bench-row.sh
source scripts/bench-row.sh

echo "| run | flags | ops/s (median) | range | p50 us | p99 us | p99.9 us | verify |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
for fsync in off on; do
  for payload in 64 4096; do
    for sys in corfu corfumason; do
      row "$sys-appends-$payload-fsync-$fsync" --system "$sys" --payload "$payload" --fsync "$fsync"
    done
  done
done
for payload in 64 4096; do
  for sys in corfu corfumason; do
    row "$sys-reads-$payload" --system "$sys" --workload reads --payload "$payload" --fsync off
  done
done
echo "results in $out" >&2
