#!/usr/bin/env bash
# A/B of two mason binaries, as issue 15 measures them: the rows below run alternately
# (old, new, old, new, ...) $TRIALS times each (default 3), `mason local --duration $DUR
# --warmup 1` (default 5 s), and each row prints both medians (ops/s, p50, and the CPU per
# op summed over every process, from `mason local`'s `cpu all` line) and new/old. The last
# five rows are the load issue 15 was measured at (2 x 4 x 64; fsync off, then on) and the
# direct baseline at it (with OLD the binary the issue was measured on, the first one's
# new/old is the issue's "2x today's Mason"), then fsync off and on at 2 x 4 x 256, a load
# that saturates today's Mason on 2 cores (fsync off stops growing there; see
# scripts/by-load.sh). Then, from the new binary's medians: fsync on / fsync off, and
# fsync off / the direct baseline at each load; and the sequencer over TCP
# at batch 100, 256 requests in flight on each of 8 connections (both binaries; each
# against a fresh sequencer serving 8 groups).
# PROXY_GROUPS (default 2) is Mason's proxy groups in the loaded rows and in PEERS' runs;
# the row of one op in flight always runs one group. (Not GROUPS: bash sets that name.)
# With PEERS=1 it ends with `mason experiment peers` (the new binary beside ZooKeeper and
# etcd, which must be installed) at one op in flight, at 2 x 4 x 16, 2 x 4 x 64 and
# 2 x 4 x 256.
# With ZK=1 it also runs, alternating, each binary's `mason experiment peers` of RSMKeeper
# and ZK-Mason through their ZooKeeper front ends (the zookeeper-client crate, fsync on):
# setData and getData from 64 sessions, 2 ops in flight each.
# Usage: scripts/ab.sh OLD_BINARY NEW_BINARY   (e.g. a copy of target/release/mason
# built before a change, and the one built after it)
set -euo pipefail
old=${1:?usage: scripts/ab.sh OLD_BINARY NEW_BINARY}
new=${2:?usage: scripts/ab.sh OLD_BINARY NEW_BINARY}
trials=${TRIALS:-3}
dur=${DUR:-5}
groups=${PROXY_GROUPS:-2}
out=${OUT:-results/ab-$(date +%s)}
if [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "OUT=$out already holds runs: choose another (mason local refuses to reuse a run's directory)" >&2
  exit 2
fi
mkdir -p "$out"
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 2; }
done

# One run: prints "ops/s p50_us verdict cpu_us_per_op" (the last from the `cpu all` line,
# "-" for a binary that prints none).
one() {
  local bin=$1 dir=$2; shift 2
  local res agg cpu
  res=$("$bin" local --duration "$dur" --warmup 1 --out "$dir" "$@" 2>/dev/null) || true
  agg=$(echo "$res" | grep -A1 '^aggregate-throughput' | tail -1)
  cpu=$(echo "$res" | awk '/^cpu all /{print $5}')
  echo "$(echo "$agg" | awk '{printf "%.0f %s", $1*1000000, $2}') $(echo "$res" | grep '^verify:' | cut -d' ' -f2) ${cpu:--}"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A med
# row NAME FLAGS...: alternating trials; keeps the medians in med[NAME-old], med[NAME-new].
row() {
  local name=$1; shift
  local t o n os="" ns="" op="" np="" oc="" nc="" verdicts=""
  for t in $(seq 1 "$trials"); do
    o=$(one "$old" "$out/$name-old-$t" "$@")
    n=$(one "$new" "$out/$name-new-$t" "$@")
    os+="${o%% *}"$'\n'; ns+="${n%% *}"$'\n'
    op+="$(echo "$o" | cut -d' ' -f2)"$'\n'; np+="$(echo "$n" | cut -d' ' -f2)"$'\n'
    oc+="$(echo "$o" | cut -d' ' -f4)"$'\n'; nc+="$(echo "$n" | cut -d' ' -f4)"$'\n'
    verdicts+="$(echo "$o" | cut -d' ' -f3)/$(echo "$n" | cut -d' ' -f3) "
  done
  med[$name-old]=$(printf '%s' "$os" | median)
  med[$name-new]=$(printf '%s' "$ns" | median)
  printf '| %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$*" \
    "${med[$name-old]}" "${med[$name-new]}" \
    "$(printf '%s' "$op" | median)" "$(printf '%s' "$np" | median)" \
    "$(printf '%s' "$oc" | median)" "$(printf '%s' "$nc" | median)" \
    "$(awk -v a="${med[$name-old]}" -v b="${med[$name-new]}" 'BEGIN{if (a>0) printf "%.2f", b/a; else print "-"}')" \
    "$verdicts"
}

sat=(--clients 2 --client-threads 4 --concurrency 16)
echo "old: $old"
echo "new: $new"
echo "$(nproc) cpus, $(date -u +%FT%TZ), $trials trials of ${dur}s each, alternating"
echo
echo "| row | flags | old ops/s | new ops/s | old p50 us | new p50 us | old CPU us/op | new CPU us/op | new/old | verdicts old/new |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
row c1-fsync-on --groups 1 --clients 1 --client-threads 1 --concurrency 1 --fsync on
row sat-fsync-on --groups "$groups" --fsync on "${sat[@]}"
row sat-fsync-off --groups "$groups" --fsync off "${sat[@]}"
row direct --system direct "${sat[@]}"
issue=(--clients 2 --client-threads 4 --concurrency 64)
row issue-load --groups "$groups" --fsync off "${issue[@]}"
row issue-load-fsync-on --groups "$groups" --fsync on "${issue[@]}"
row direct-issue-load --system direct "${issue[@]}"
top=(--clients 2 --client-threads 4 --concurrency 256)
row saturated --groups "$groups" --fsync off "${top[@]}"
row saturated-fsync-on --groups "$groups" --fsync on "${top[@]}"
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b>0) printf "%.2f", a/b; else print "-"}'; }
echo "new: fsync on / fsync off at 2 x 4 x 16: $(ratio "${med[sat-fsync-on-new]}" "${med[sat-fsync-off-new]}")"
echo "new: fsync off / direct at 2 x 4 x 16: $(ratio "${med[sat-fsync-off-new]}" "${med[direct-new]}")"
echo "new: fsync on / fsync off at 2 x 4 x 64: $(ratio "${med[issue-load-fsync-on-new]}" "${med[issue-load-new]}")"
echo "new: fsync off / direct at 2 x 4 x 64: $(ratio "${med[issue-load-new]}" "${med[direct-issue-load-new]}")"
echo "new: fsync on / fsync off at 2 x 4 x 256: $(ratio "${med[saturated-fsync-on-new]}" "${med[saturated-new]}")"
echo "old: fsync on / fsync off: $(ratio "${med[sat-fsync-on-old]}" "${med[sat-fsync-off-old]}"), fsync off / direct: $(ratio "${med[sat-fsync-off-old]}" "${med[direct-old]}")"
echo

for b in "$old" "$new"; do
  port=$((20000 + RANDOM % 10000))
  "$b" sequencer --listen "127.0.0.1:$port" --spaces 1 --groups 8 --threads 1 --insecure 2>/dev/null &
  spid=$!
  sleep 0.5
  echo "$b: $("$b" bench-sequencer --addr "127.0.0.1:$port" --batch 100 --spaces 1 --groups 8 \
    --pipeline 256 --duration 3 --threads 1 --insecure 2>/dev/null | tail -1)"
  kill "$spid"; wait "$spid" 2>/dev/null || true
done

if [ "${ZK:-0}" = 1 ]; then
  for t in $(seq 1 "$trials"); do
    for b in "$old" "$new"; do
      echo
      echo "$b, trial $t:"
      "$b" experiment peers --systems rsmkeeper,zkmason-1 --zk-workloads setdata,getdata \
        --warmup 5 --duration "$dur" --fsync on --clients 2 --client-threads 32 \
        --concurrency 2 --out "$out/zk-$(basename "$b")-$t-$RANDOM" 2>/dev/null | grep -v '^wrote'
    done
  done
fi

if [ "${PEERS:-0}" = 1 ]; then
  echo
  "$new" experiment peers --systems mason,zookeeper,etcd --clients 1 --client-threads 1 \
    --concurrency 1 --groups "$groups" --warmup 30 --duration "$dur" --fsync on
  for load in sat issue top; do
    declare -n flags=$load
    "$new" experiment peers --systems mason,zookeeper,etcd "${flags[@]}" --groups "$groups" \
      --warmup 30 --duration "$dur" --fsync on
  done
fi
