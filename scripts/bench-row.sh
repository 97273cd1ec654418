# Sourced by the benchmark scripts. `row LABEL FLAGS...` prints one markdown table row:
# the median (by throughput) of $trials runs of `$bin local --duration $dur --warmup 1`
# with FLAGS and then ${extra[@]} (if set), with the range of throughputs and each run's
# verdict. Runs go under $out/LABEL-N.
row() {
  local label=$1; shift
  local lines="" verdicts="" t res agg
  for t in $(seq 1 "$trials"); do
    res=$("$bin" local --duration "$dur" --warmup 1 --out "$out/$label-$t" "$@" \
      ${extra[@]+"${extra[@]}"} 2>/dev/null)
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
