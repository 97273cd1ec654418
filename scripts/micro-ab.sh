#!/usr/bin/env bash
# A/B of the hot path's in-memory benchmarks (`cargo bench`: the proxy group's state
# machines, proxy/benches/group.rs, and the wire's framing, common/benches/frames.rs) at two
# revisions: each is built in a worktree of its own, then the two builds' benchmarks run
# alternately (old, new, old, new, ...) $TRIALS times (default 3), and each row prints the
# median of each side's medians and old/new (above 1: the new revision is faster). These
# take no sockets or disk, so they drift far less than `scripts/ab.sh`'s runs, and show
# changes to the code's own CPU that a loaded cluster, mostly kernel time, hides.
# Usage: scripts/micro-ab.sh OLD_REV [NEW_REV]   (NEW_REV defaults to the working tree;
# both must have the benchmarks). Builds and the raw tables go to $WORK (default a new
# temporary directory); the builds are removed at the end unless KEEP=1.
set -euo pipefail
old_rev=${1:?usage: scripts/micro-ab.sh OLD_REV [NEW_REV]}
new_rev=${2:-}
trials=${TRIALS:-3}
root=$(git rev-parse --show-toplevel)
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
benches=(group frames)

# build SIDE DIR: the benchmark executables of the tree in DIR, one per line.
build() {
  local side=$1 dir=$2 args=()
  for b in "${benches[@]}"; do args+=(--bench "$b"); done
  (cd "$dir" && CARGO_TARGET_DIR="$work/target-$side" cargo bench --workspace --no-run \
    "${args[@]}" --message-format=json 2>"$work/build-$side.log") |
    python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and "bench" in m["target"]["kind"] and m.get("executable"):
        print(m["executable"])
'
}

tree() {
  local side=$1 rev=$2
  if [ -z "$rev" ]; then
    echo "$root"
    return
  fi
  git -C "$root" worktree add --detach --force "$work/src-$side" "$rev" >/dev/null 2>&1
  echo "$work/src-$side"
}

# The worktrees go at the end, and the builds too unless KEEP=1 (a gigabyte or two each).
cleanup() {
  for s in old new; do
    if [ -d "$work/src-$s" ]; then git -C "$root" worktree remove --force "$work/src-$s"; fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$work/target-$s"; fi
  done
}
trap cleanup EXIT
old_dir=$(tree old "$old_rev")
new_dir=$(tree new "$new_rev")
mapfile -t old_exes < <(build old "$old_dir")
mapfile -t new_exes < <(build new "$new_dir")
if [ "${#old_exes[@]}" -ne "${#benches[@]}" ] || [ "${#new_exes[@]}" -ne "${#benches[@]}" ]; then
  echo "a revision lacks the benchmarks (${benches[*]}), or did not build: see $work/build-*.log" >&2
  exit 2
fi

for t in $(seq 1 "$trials"); do
  for side in old new; do
    if [ "$side" = old ]; then exes=("${old_exes[@]}"); else exes=("${new_exes[@]}"); fi
    for e in "${exes[@]}"; do
      "$e" --bench >>"$work/$side-$t.txt" 2>>"$work/run.log"
    done
  done
done

# Each row's median (divan's third column) per trial, then the median over trials.
python3 - "$work" "$trials" <<'EOF'
import re, statistics, sys
work, trials = sys.argv[1], int(sys.argv[2])
unit = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}
time = re.compile(r"([0-9.]+)\s*(ns|µs|us|ms|s)\b")

def medians(path):
    rows, names = {}, []
    for line in open(path, encoding="utf-8"):
        # The tree's own bars are the column separator's character: take them off first.
        line = line.rstrip("\n")
        rest = line.lstrip(" ├╰─│")
        depth = len(line) - len(rest)
        cols = rest.split("│")
        head = cols[0]
        if len(cols) < 4 or "fastest" in head or "/s" in head:
            continue
        m = time.search(head)
        name = (head[: m.start()] if m else head).strip()
        if not name:
            continue
        names = [n for n in names if n[0] < depth] + [(depth, name)]
        if m:
            med = time.search(cols[2])
            if med:
                key = "/".join(n for _, n in names)
                rows[key] = float(med.group(1)) * unit[med.group(2)]
    return rows

sides = {s: [medians(f"{work}/{s}-{t}.txt") for t in range(1, trials + 1)] for s in ("old", "new")}
print(f"{'benchmark':40} {'old median':>12} {'new median':>12} {'old/new':>8}")
for key in sides["old"][0]:
    o = statistics.median(r[key] for r in sides["old"] if key in r)
    n = statistics.median(r[key] for r in sides["new"] if key in r)
    print(f"{key:40} {o * 1e6:10.3f}us {n * 1e6:10.3f}us {o / n:8.2f}")
EOF
echo "raw tables: $work/{old,new}-*.txt"
