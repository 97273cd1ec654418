#!/usr/bin/env bash
# Resident memory of every process of a long `mason local` run at full load, sampled at
# the given seconds after the start (default 60, 300 and 600 of a 600 s run). Extra
# arguments go to `mason local`. Prints one line per sample and process.
#   DUR=600 SAMPLES="60 300 600" scripts/rss.sh --fsync off
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-600}
SAMPLES=${SAMPLES:-"60 300 600"}
OUT=${OUT:-$(mktemp -d /tmp/mason-rss.XXXXXX)/run}
cargo build --release --quiet
target/release/mason local --duration "$DUR" --warmup 1 --verify off --out "$OUT" "$@" \
  >"$OUT.stdout" 2>"$OUT.stderr" &
driver=$!
start=$(date +%s)
for t in $SAMPLES; do
  while [ $(( $(date +%s) - start )) -lt "$t" ]; do sleep 1; done
  for c in $(pgrep -P "$driver"); do
    role=$(tr '\0' ' ' <"/proc/$c/cmdline" | awk '{
      r=$2; for (i=3;i<=NF;i++) if ($i=="--replica"||$i=="--index"||$i=="--id") r=r"-"$(i+1); print r}')
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$c/status" 2>/dev/null || echo "?")
    echo "t=${t}s $role rss_kib=$rss"
  done
done
wait "$driver" || true
cat "$OUT.stdout"
