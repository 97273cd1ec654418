#!/usr/bin/env bash
# Issue 14's comparison, in one sitting: Apache ZooKeeper (3 JVMs), RSMKeeper and
# ZK-Mason (1 and 2 shards, behind their ZooKeeper front ends) through the same client
# (the zookeeper-client crate), fsync on for everyone: sequential creates, setData and
# getData, one op in flight, saturating (8 sessions), and many sessions (64, 2 ops in
# flight each). Each system is warmed for $WARMUP s (default
# 30: ZooKeeper's JIT needs it) before its first workload. Then the same for RSMKeeper and
# ZK-Mason with --zk-reads local. Tables go to stdout and results/bench-zk-peers-*/.
# Usage: [WARMUP=s] scripts/bench-zk-peers.sh [duration-secs]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5}
warm=${WARMUP:-30}
cargo build --release -q
bin=target/release/mason
out=results/bench-zk-peers-$(date +%s)
mkdir -p "$out"
for load in one sat many; do
  case "$load" in
    one) shape=(--clients 1 --client-threads 1 --concurrency 1) ;;
    sat) shape=(--clients 2 --client-threads 4 --concurrency 16) ;;
    # Many sessions with few ops each, as ZooKeeper's users run it.
    many) shape=(--clients 2 --client-threads 32 --concurrency 2) ;;
  esac
  echo "## $load (${shape[*]}), fsync on, sequenced reads"
  "$bin" experiment peers --systems zookeeper,rsmkeeper,zkmason-1,zkmason-2 \
    --zk-workloads create,setdata,getdata --warmup "$warm" --duration "$dur" \
    --fsync on "${shape[@]}" --out "$out/$load" 2>"$out/$load.log"
  echo "## $load (${shape[*]}), fsync on, --zk-reads local"
  "$bin" experiment peers --systems rsmkeeper,zkmason-1,zkmason-2 \
    --zk-workloads create,setdata,getdata --warmup "$warm" --duration "$dur" \
    --fsync on --zk-reads local "${shape[@]}" --out "$out/$load-local" 2>"$out/$load-local.log"
done
