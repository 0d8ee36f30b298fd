#!/usr/bin/env bash
# peerbench_variants.sh - the reactor variants side by side (broker/README.md).
#
# Runs ../shared/peerbench (S1-S5, ephemeral pb.>) against six ferryd
# configurations at once - --reactor multi|single-pool|single, each with
# --io-backend epoll and uring - plus the raw relay and nats-server, in one
# run. The harness is read-only where it lives: it is copied to a scratch
# directory and only its list of servers is changed there.
#
#   FERRYD=build/broker/ferryd tools/peerbench_variants.sh [PEERBENCH_DIR]
#   REPS=3 ...   more repetitions (default 1); QUICK=1 for a smoke run
set -euo pipefail
src="${1:-$(dirname "$0")/../../shared/peerbench}"
FERRYD="$(realpath "${FERRYD:?set FERRYD to a ferryd binary}")"
work="${TMPDIR:-/tmp}/peerbench-variants"
rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
python3 - "$work/run.sh" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
a = s.index('if [ -n "${FERRYD:-}" ]; then\n  SYSTEMS+=(')
b = s.index('fi\n', a) + 3
s = s[:a] + '''if [ -n "${FERRYD:-}" ]; then
  p=17380
  for v in multi single-pool single; do
    for b in epoll uring; do
      SYSTEMS+=("f-$v-$b|ferry|$p|$FERRYD --listen 127.0.0.1:$p --data-dir $RUNDIR/f-$v-$b --ephemeral pb.> --reactor $v --io-backend $b")
      FLABELS="${FLABELS:-} f-$v-$b"
      p=$((p+1))
    done
  done
fi
''' + s[b:]
s = s.replace('PUBSUB_LABELS="relay nats nats-js mosquitto redis${FERRYD:+ ferry ferry-stored}"',
              'PUBSUB_LABELS="relay nats${FLABELS:-}"')
import re
s = re.sub(r'DURABLE_RUNS="[^"]*"', 'DURABLE_RUNS=""', s)
open(p, 'w').write(s)
PY
cd "$work" && REPS="${REPS:-1}" FERRYD="$FERRYD" bash ./run.sh
