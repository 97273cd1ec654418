#!/usr/bin/env bash
# fsync on, fsync off and the direct baseline as the load grows: for each concurrency in
# $LOADS (default "16 64 128 256 512"; 2 client processes x 4 clients x that many ops in
# flight), $TRIALS alternating trials (default 3) of `mason local --duration $DUR --warmup 1`
# (default 5 s) of each of the three, then one row of medians: ops/s and p50 of each, fsync
# on / fsync off, and fsync off / direct. With a fixed number of ops in flight, ops/s is
# that number over an op's latency: at loads that leave the cores idle, fsync on / fsync
# off is the ratio of the two latencies (one durable write apart); at loads that saturate
# the cores (where fsync off stops growing) it is the ratio of the two throughputs.
# PROXY_GROUPS (default 1) is Mason's proxy groups. Every run's verdict is printed.
# Usage: scripts/by-load.sh MASON_BINARY
set -euo pipefail
bin=${1:?usage: scripts/by-load.sh MASON_BINARY}
[ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
trials=${TRIALS:-3}
dur=${DUR:-5}
groups=${PROXY_GROUPS:-1}
loads=${LOADS:-16 64 128 256 512}
out=${OUT:-results/by-load-$(date +%s)}
if [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "OUT=$out already holds runs: choose another (mason local refuses to reuse a run's directory)" >&2
  exit 2
fi
mkdir -p "$out"

# One run: prints "ops/s p50_us verdict".
one() {
  local dir=$1; shift
  local res
  res=$("$bin" local --duration "$dur" --warmup 1 --out "$dir" "$@" 2>/dev/null) || true
  echo "$(echo "$res" | grep -A1 '^aggregate-throughput' | tail -1 |
    awk '{printf "%.0f %s", $1*1000000, $2}') $(echo "$res" | grep '^verify:' | cut -d' ' -f2)"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b>0) printf "%.2f", a/b; else print "-"}'; }

echo "$bin, $(nproc) cpus, $(date -u +%FT%TZ), $trials trials of ${dur}s each, alternating; $groups group(s)"
echo
echo "| in flight | fsync off ops/s | fsync on ops/s | direct ops/s | off p50 us | on p50 us | direct p50 us | on / off | off / direct | verdicts off/on/direct |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for c in $loads; do
  declare -A ops=() p50=()
  verdicts=""
  for t in $(seq 1 "$trials"); do
    v=""
    for kind in off on direct; do
      case $kind in
        direct) flags=(--system direct) ;;
        *) flags=(--groups "$groups" --fsync "$kind") ;;
      esac
      r=$(one "$out/c$c-$kind-$t" "${flags[@]}" --clients 2 --client-threads 4 --concurrency "$c")
      ops[$kind]+="$(echo "$r" | cut -d' ' -f1)"$'\n'
      p50[$kind]+="$(echo "$r" | cut -d' ' -f2)"$'\n'
      v+="$(echo "$r" | cut -d' ' -f3)/"
    done
    verdicts+="${v%/} "
  done
  off=$(printf '%s' "${ops[off]}" | median)
  on=$(printf '%s' "${ops[on]}" | median)
  direct=$(printf '%s' "${ops[direct]}" | median)
  printf '| 2 x 4 x %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$off" "$on" \
    "$direct" "$(printf '%s' "${p50[off]}" | median)" "$(printf '%s' "${p50[on]}" | median)" \
    "$(printf '%s' "${p50[direct]}" | median)" "$(ratio "$on" "$off")" \
    "$(ratio "$off" "$direct")" "$verdicts"
done
