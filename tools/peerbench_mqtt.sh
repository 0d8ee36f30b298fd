#!/usr/bin/env bash
# peerbench_mqtt.sh - ferryd's MQTT listener beside mosquitto, in one run.
#
# Runs ../shared/peerbench's MQTT driver (S1-S5 with QoS 0, and S6a/S6b:
# QoS 1 publishes acked by PUBACK) against mosquitto 2.0 and two ferryd:
#   ferry-mqtt         --mqtt-listen, topics pb.> ephemeral (nothing stored,
#                      as mosquitto stores nothing at QoS 0)
#   ferry-mqtt-stored  --mqtt-listen, every topic stored (the default): a
#                      delivery follows the durable commit, and a QoS 1
#                      PUBACK follows the fsync (mosquitto's do not)
# plus the raw relay as the ceiling. The harness is read-only where it
# lives: it is copied to a scratch directory, and there (1) its list of
# servers is changed and (2) its pub/sub topics are named pb/t0, pb/t1...
# instead of pb.t0: a '.' inside an MQTT topic level has no ferry mapping
# (README, MQTT: a/b <-> a.b) and ferryd refuses it, so both brokers get
# the same slash-separated names.
#
#   FERRYD=build/broker/ferryd tools/peerbench_mqtt.sh [PEERBENCH_DIR]
#   REPS=3 ...   repetitions (default 3); QUICK=1 for a smoke run
set -euo pipefail
src="${1:-$(dirname "$0")/../../shared/peerbench}"
FERRYD="$(realpath "${FERRYD:?set FERRYD to a ferryd binary}")"
work="${TMPDIR:-/tmp}/peerbench-mqtt"
rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
sed -i 's|"pb\.t%d"|"pb/t%d"|' "$work/peerbench.c"
grep -q '"pb/t%d"' "$work/peerbench.c" || { echo "peerbench.c: topic format not found" >&2; exit 1; }
python3 - "$work/run.sh" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
a = s.index('if [ -n "${FERRYD:-}" ]; then\n  SYSTEMS+=(')
b = s.index('fi\n', a) + 3
s = s[:a] + '''SYSTEMS+=(
  "ferry-mqtt|mqtt|17883|$FERRYD --listen 127.0.0.1:17375 --mqtt-listen 127.0.0.1:17883 --data-dir $RUNDIR/ferry-mqtt --ephemeral pb.>"
  "ferry-mqtt-stored|mqtt|17884|$FERRYD --listen 127.0.0.1:17376 --mqtt-listen 127.0.0.1:17884 --data-dir $RUNDIR/ferry-mqtt-stored"
)
''' + s[b:]
s = s.replace('PUBSUB_LABELS="relay nats nats-js mosquitto redis${FERRYD:+ ferry ferry-stored}"',
              'PUBSUB_LABELS="relay mosquitto ferry-mqtt ferry-mqtt-stored"')
s = re.sub(r'DURABLE_RUNS="[^"]*"',
           'DURABLE_RUNS="mosquitto-qos1=mosquitto ferry-mqtt-qos1=ferry-mqtt-stored"', s)
open(p, 'w').write(s)
PY
cd "$work" && REPS="${REPS:-3}" FERRYD="$FERRYD" bash ./run.sh
