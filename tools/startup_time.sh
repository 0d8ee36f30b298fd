#!/bin/sh
# startup_time.sh - ferryd's start-up time on an existing data directory:
# from exec to its ready line ("ferryd: listening on ..."), RUNS times.
#
#   sh tools/startup_time.sh BUILD_DIR DATA_DIR [RUNS]
#
# Fill a directory first, e.g. ferry_store_fill DIR --messages 10000000.
set -eu
B=${1:?usage: startup_time.sh BUILD_DIR DATA_DIR [RUNS]}
DIR=${2:?usage: startup_time.sh BUILD_DIR DATA_DIR [RUNS]}
RUNS=${3:-5}
FIFO=$(mktemp -u /tmp/ferryd-ready.XXXXXX)
mkfifo "$FIFO"
trap 'rm -f "$FIFO"' EXIT
i=0
while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    t0=$(date +%s%N)
    "$B/broker/ferryd" --listen 127.0.0.1:0 --data-dir "$DIR" >"$FIFO" 2>/dev/null &
    PID=$!
    read -r line <"$FIFO"
    t1=$(date +%s%N)
    echo "run $i: $(( (t1 - t0) / 1000 )) us to \"$line\""
    kill "$PID"
    wait "$PID" || true
done
"$B/broker/ferryd" --verify "$DIR" | tail -1
