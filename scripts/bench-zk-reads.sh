#!/usr/bin/env bash
# `--zk-reads local` against sequenced reads, side by side in one sitting: for each
# system (RSMKeeper, ZK-Mason 1 and 2 shards), workload (getData; mixed 50% setData),
# fsync setting and load (one op in flight; 2 x 4 x 16), $PAIRS alternating pairs of runs
# (sequenced, then local). Prints one markdown row per setting: the median ops/s of each
# mode, the median of the per-pair ratios local/sequenced, the median p50s, and the
# verdicts.
# Usage: [PAIRS=n] scripts/bench-zk-reads.sh [duration-secs]
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-4}
pairs=${PAIRS:-3}
cargo build --release -q
bin=target/release/mason
out=results/bench-zk-reads-$(date +%s)
mkdir -p "$out"

# One run: prints "ops/s p50 verdict-word".
one() {
  local label=$1; shift
  local res agg
  res=$("$bin" local --duration "$dur" --warmup 1 --out "$out/$label" "$@" 2>/dev/null)
  agg=$(echo "$res" | grep -A1 '^aggregate-throughput' | tail -1)
  echo "$(echo "$agg" | awk '{printf "%.0f %s", $1*1000000, $2}') $(echo "$res" | grep '^verify:' | cut -d' ' -f2,3)"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "| system | workload | fsync | load | sequenced ops/s | local ops/s | local/sequenced (pairs) | p50 us seq / local | verdicts |"
echo "| --- | --- | --- | --- | ---: | ---: | --- | --- | --- |"
for fsync in off on; do
  for w in getdata mixed; do
    for load in one sat; do
      if [ "$load" = one ]; then
        shape=(--clients 1 --client-threads 1 --concurrency 1)
      else
        shape=(--clients 2 --client-threads 4 --concurrency 16)
      fi
      for sys in rsmkeeper zkmason-1 zkmason-2; do
        case $sys in
          rsmkeeper) flags=(--system rsmkeeper) ;;
          zkmason-*) flags=(--system zkmason --zk-shards "${sys#zkmason-}") ;;
        esac
        s_ops=(); l_ops=(); ratios=(); s_p50=(); l_p50=(); verdicts=""
        for p in $(seq 1 "$pairs"); do
          read -r so sp sv sk < <(one "$sys-$w-$load-$fsync-seq-$p" "${flags[@]}" \
            --workload "$w" --fsync "$fsync" "${shape[@]}")
          read -r lo lp lv lk < <(one "$sys-$w-$load-$fsync-local-$p" "${flags[@]}" \
            --workload "$w" --fsync "$fsync" --zk-reads local "${shape[@]}")
          s_ops+=("$so"); l_ops+=("$lo"); s_p50+=("$sp"); l_p50+=("$lp")
          ratios+=("$(awk -v a="$lo" -v b="$so" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')")
          verdicts+="$sv/$sk $lv/$lk "
        done
        printf '| %s | %s | %s | %s | %s | %s | %s (%s) | %s / %s | %s |\n' "$sys" "$w" "$fsync" "$load" \
          "$(printf '%s\n' "${s_ops[@]}" | median)" "$(printf '%s\n' "${l_ops[@]}" | median)" \
          "$(printf '%s\n' "${ratios[@]}" | median)" "${ratios[*]}" \
          "$(printf '%s\n' "${s_p50[@]}" | median)" "$(printf '%s\n' "${l_p50[@]}" | median)" \
          "$(echo "$verdicts" | tr ' ' '\n' | grep -v '^$' | sort | uniq -c | awk '{printf "%s x%s ", $2, $1}')"
      done
    done
  done
done
