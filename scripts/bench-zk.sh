#!/usr/bin/env bash
# The ZooKeeper benchmark of docs/benchmarks.md, in one sitting: RSMKeeper and ZK-Mason
# with 1, 2 and 4 shards, setData and getData, fsync on and off, one op in flight and
# saturating (2 client processes x 4 x 16), beside Mason itself (the same path without
# the shard servers: numbers only). Prints a markdown table; each row is the median of
# $TRIALS runs (default 1), with the range.
# Usage: [TRIALS=n] scripts/bench-zk.sh [duration-secs]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-4}
cargo build --release -q
bin=target/release/mason
out=results/bench-zk-$(date +%s)
mkdir -p "$out"
trials=${TRIALS:-1}

# shellcheck source=scripts/bench-row.sh
source scripts/bench-row.sh

echo "| run | flags | ops/s (median) | range | p50 us | p99 us | p99.9 us | verify |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
for fsync in off on; do
  for w in setdata getdata; do
    for load in one sat; do
      if [ "$load" = one ]; then
        shape=(--clients 1 --client-threads 1 --concurrency 1)
      else
        shape=(--clients 2 --client-threads 4 --concurrency 16)
      fi
      if [ "$w" = setdata ]; then
        row "mason-s2-$load-fsync-$fsync" --system mason --spaces 2 --fsync "$fsync" \
          "${shape[@]}"
      fi
      row "rsmkeeper-$w-$load-fsync-$fsync" --system rsmkeeper --workload "$w" \
        --fsync "$fsync" "${shape[@]}"
      for n in 1 2 4; do
        row "zkmason-$n-$w-$load-fsync-$fsync" --system zkmason --zk-shards "$n" \
          --workload "$w" --fsync "$fsync" "${shape[@]}"
      done
    done
  done
done
