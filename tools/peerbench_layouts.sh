#!/usr/bin/env bash
# peerbench_layouts.sh - S1-S3 for ferryd thread layouts beside nats-server
# (broker/README.md, "Thread counts").
#
# Builds a scratch copy of ../shared/peerbench, starts nats-server and five
# ferryd (ephemeral pb.>: the default layout, --io-threads/--workers 2/1,
# 1/1, 1/2, and --reactor single), then runs each scenario against each of
# them in turn, REPS times, and prints medians with the ratio to nats.
#
#   FERRYD=build/broker/ferryd tools/peerbench_layouts.sh [PEERBENCH_DIR]
#   REPS=3 T=3 SC="S1 S2 S3"   repetitions, seconds per run, scenarios
set -euo pipefail
src="${1:-$(dirname "$0")/../../shared/peerbench}"
F="$(realpath "${FERRYD:?set FERRYD to a ferryd binary}")"
REPS=${REPS:-3}
T=${T:-3}
SC=${SC:-"S1 S2 S3"}
work="${TMPDIR:-/tmp}/peerbench-layouts"
rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
make -s -C "$work" peerbench >/dev/null
PB="$work/peerbench"
out="$work/raw.txt"
: >"$out"
/usr/sbin/nats-server -c "$work/configs/nats.conf" >/dev/null 2>&1 &
pids=($!)
ports=(14222)
names=(nats)
i=0
for c in "default:" "io2-w1:--io-threads 2 --workers 1" "io1-w1:--io-threads 1 --workers 1" \
    "io1-w2:--io-threads 1 --workers 2" "single:--reactor single"; do
    n=${c%%:*}
    port=$((17520 + i))
    i=$((i + 1))
    # shellcheck disable=SC2086 # the flags are words
    "$F" --listen "127.0.0.1:$port" --data-dir "$work/data-$n" --ephemeral 'pb.>' ${c#*:} \
        >/dev/null 2>&1 &
    pids+=($!)
    ports+=("$port")
    names+=("$n")
done
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
sleep 1
for r in $(seq 1 "$REPS"); do
    for s in $SC; do
        for k in "${!names[@]}"; do
            drv=ferry
            [ "${names[$k]}" = nats ] && drv=nats
            line=$("$PB" -d "$drv" -p "${ports[$k]}" -s "$s" -T "$T" -C "${pids[$k]}" \
                -l "${names[$k]}" -r "$r" 2>/dev/null | tail -1)
            echo "$s ${names[$k]} $line" >>"$out"
        done
    done
done
python3 - "$out" <<'PY'
import collections, json, statistics, sys
runs = collections.defaultdict(list)
order = []
for line in open(sys.argv[1]):
    s, name, rest = line.split(" ", 2)
    if not rest.startswith("{"):
        continue
    j = json.loads(rest)
    runs[(s, name)].append(j)
    if name not in order:
        order.append(name)
for s in sorted({k[0] for k in runs}):
    base = statistics.median(j["recv_mps"] for j in runs[(s, "nats")])
    for name in order:
        js = runs.get((s, name), [])
        if not js:
            continue
        v = [j["recv_mps"] for j in js]
        lost = sum(j["lost"] for j in js)
        ns = [j["server_cpu_pct"] / 100 * 1e9 / j["recv_mps"] for j in js if j["recv_mps"]]
        print("%s %-8s %6.2f M msgs/s  %.2fx nats  server %3.0f-%3.0f ns/msg%s" % (
            s, name, statistics.median(v) / 1e6, statistics.median(v) / base, min(ns), max(ns),
            "  LOST %d" % lost if lost else ""))
PY
