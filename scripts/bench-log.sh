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

row() { # label, then mason local flags
  local label=$1; shift
  local lines="" verdicts="" t res agg
  for t in $(seq 1 "$trials"); do
    res=$("$bin" local --duration "$dur" --warmup 1 --out "$out/$label-$t" "$@" "${extra[@]}" 2>/dev/null)
    agg=$(echo "$res" | grep -A1 '^aggregate-throughput' | tail -1)
    lines+="$agg"$'\n'
    verdicts+="$(echo "$res" | grep '^verify:' | cut -d' ' -f2) "
  done
  local med lo hi mops p50 p99 p999
  med=$(printf '%s' "$lines" | sort -n -k1,1 | awk -v n="$trials" 'NR==int((n+1)/2)')
  lo=$(printf '%s' "$lines" | sort -n -k1,1 | head -1 | awk '{print $1*1000000}')
  hi=$(printf '%s' "$lines" | sort -n -k1,1 | tail -1 | awk '{print $1*1000000}')
  read -r mops p50 p99 p999 _ <<<"$med"
  printf '| %s | `%s` | %.0f | %.0f..%.0f | %s | %s | %s | %s |\n' "$label" "$*" \
    "$(awk -v m="$mops" 'BEGIN{print m*1000000}')" "$lo" "$hi" "$p50" "$p99" "$p999" "$verdicts"
}

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
