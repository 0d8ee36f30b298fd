#!/bin/sh
# store_bench.sh - acked persistent publishes (sync always) against the
# disk's own write + fdatasync rate, measured in the same run (issue 4).
#
#   sh tools/store_bench.sh BUILD_DIR [DATA_PARENT]
#
# DATA_PARENT (default /tmp) must be on the disk to measure. Prints the fsync
# rates (append and overwrite), then `ferry bench --persistent` with 1 and
# with 256 acks in flight (one publisher, and four), then the fsync rates
# again (the disk of a shared machine drifts).
set -eu
B=${1:?usage: store_bench.sh BUILD_DIR [DATA_PARENT]}
P=${2:-/tmp}
D=$(mktemp -d "$P/ferry-store-bench.XXXXXX")
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$D"' EXIT
"$B/tools/ferry_fsync_rate" --dir "$D" --seconds 3
"$B/tools/ferry_fsync_rate" --dir "$D" --seconds 3 --overwrite
"$B/broker/ferryd" --listen 127.0.0.1:0 --data-dir "$D/data" --sync always \
    >"$D/ready" 2>"$D/log" &
PID=$!
i=0
while ! grep -q listening "$D/ready" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 200 ] || { cat "$D/log"; exit 1; }; sleep 0.05
done
ADDR=$(sed -n 's/^ferryd: listening on //p' "$D/ready")
F="$B/tools/ferry"
echo "--- 1 in flight"
"$F" bench -s "$ADDR" --persistent --ack-window 1 --subs 0 --duration 5s --no-progress
echo "--- 256 in flight, 1 publisher"
"$F" bench -s "$ADDR" --persistent --ack-window 256 --subs 0 --duration 5s --no-progress
echo "--- 256 in flight per publisher, 4 publishers"
"$F" bench -s "$ADDR" --persistent --ack-window 256 --pubs 4 --subs 0 --duration 5s --no-progress
echo "--- 256 in flight per publisher, 16 publishers"
"$F" bench -s "$ADDR" --persistent --ack-window 256 --pubs 16 --subs 0 --duration 5s --no-progress
"$B/tools/ferry_fsync_rate" --dir "$D" --seconds 3
"$B/tools/ferry_fsync_rate" --dir "$D" --seconds 3 --overwrite
