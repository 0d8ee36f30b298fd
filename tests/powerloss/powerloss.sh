#!/usr/bin/env bash
# powerloss.sh FERRYD PL_CLIENT - ferryd under simulated power cuts.
#
# Runs ferryd with its data dir on plfs, the power-loss simulating FUSE
# filesystem of the workplace's tools (FERRY_POWERLOSS_DIR, default
# ../shared/tools/powerloss beside the checkout; built here from a copy).
# Each round: start ferryd, let pl_client publish with acks (its ack log
# lives outside the simulated disk), cut the power at a random moment
# (kill -9 of both, then plfs drops every unsynced write: "crash", or
# replays a random part of them, some torn at 512 B or 4 KiB: "torn"),
# remount, restart ferryd on the same data and check that every acked
# message is stored at its sequence with its exact payload. At the end
# `ferryd --verify` must pass. Under sync interval or none a cut may lose
# the last commit's acks but never the store: each round then publishes to
# its own topic, may lose only the tail of it, and `ferryd --verify` must
# pass after every cut. Exit 77 (skipped) where FUSE, the simulator
# or its build dependencies are missing.
#
# Environment: FERRY_POWERLOSS_CUTS (default 50), FERRY_POWERLOSS_CRASH
# (crash, torn or mixed: the default, alternating crash, torn 512 and
# torn 4096), FERRY_POWERLOSS_SYNC (ferryd's sync policy, default always),
# FERRY_POWERLOSS_PER_ROUND=1 (long runs under sync always): a topic and
# an ack log per round, checked strictly, and `ferryd --verify` after every
# FERRY_POWERLOSS_VERIFY_EVERY-th cut (default 1) and the last (instead of
# re-reading every earlier round each time),
# FERRY_POWERLOSS_KEEP=1 keeps the work directory.
set -u
ferryd=$1
client=$2
cuts=${FERRY_POWERLOSS_CUTS:-50}
how=${FERRY_POWERLOSS_CRASH:-mixed}
sync=${FERRY_POWERLOSS_SYNC:-always}
here=$(cd "$(dirname "$0")" && pwd)
tool=${FERRY_POWERLOSS_DIR:-$here/../../../shared/tools/powerloss}

skip() {
    echo "powerloss: skipped: $*"
    exit 77
}
[ -f "$tool/plfs.c" ] && [ -f "$tool/powerloss.sh" ] ||
    skip "the simulator is not at $tool (set FERRY_POWERLOSS_DIR)"
[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] || skip "no usable /dev/fuse"
command -v fusermount3 >/dev/null || skip "fusermount3 missing (Debian: fuse3)"
pkg-config --exists fuse3 2>/dev/null || skip "libfuse3 missing (Debian: libfuse3-dev)"

work=$(mktemp -d /tmp/ferry-pl-XXXXXX)
mkdir -p "$work/tool"
cp -r "$tool"/. "$work/tool/"
make -s -C "$work/tool" plfs >"$work/build.log" 2>&1 || skip "plfs does not build: $(tail -1 "$work/build.log")"
export PL_PLFS=$work/tool/plfs PL_LOG=$work/plfs.log
# shellcheck source=/dev/null
. "$work/tool/powerloss.sh"
B=$work/backing
M=$work/mnt
# The store is created before the first mount, with a clean stop: the
# simulator cannot list a directory (its readdir gets no path), which
# ferryd does only when it creates a store (to refuse a non-empty dir).
mkdir -p "$B"
"$ferryd" --listen 127.0.0.1:0 --data-dir "$B/data" --sync "$sync" </dev/null \
    >"$work/ferryd.out" 2>"$work/ferryd.log" &
init_pid=$!
for ((i = 0; i < 400; i++)); do
    grep -q '^ferryd: listening on' "$work/ferryd.out" && break
    sleep 0.05
done
kill -TERM "$init_pid"
wait "$init_pid" || skip "ferryd cannot create a store in $B"
pl_mount "$B" "$M" || skip "cannot mount a FUSE filesystem here"

ferryd_pid=
pub_pid=
cleanup() {
    [ -n "$pub_pid" ] && kill -9 "$pub_pid" 2>/dev/null
    [ -n "$ferryd_pid" ] && kill -9 -- "-$ferryd_pid" 2>/dev/null
    mountpoint -q "$M" && pl_umount "$M"
    if [ "${FERRY_POWERLOSS_KEEP:-}" = 1 ] || [ "${failed:-0}" = 1 ]; then
        echo "powerloss: work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

fail() {
    echo "powerloss: FAILED: $*"
    tail -20 "$work/ferryd.log" 2>/dev/null
    failed=1
    exit 1
}

# Start ferryd on the mount (own process group); sets ferryd_pid, port.
start_ferryd() {
    : >"$work/ferryd.out"
    setsid "$ferryd" --listen 127.0.0.1:0 --data-dir "$M/data" --sync "$sync" \
        </dev/null >"$work/ferryd.out" 2>>"$work/ferryd.log" &
    ferryd_pid=$!
    local i
    for ((i = 0; i < 400; i++)); do
        port=$(sed -n 's/^ferryd: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$work/ferryd.out")
        [ -n "$port" ] && return 0
        kill -0 "$ferryd_pid" 2>/dev/null || fail "ferryd exited at start (round $round)"
        sleep 0.05
    done
    fail "ferryd did not start within 20 s (round $round)"
}

acked=$work/acked.log
: >"$acked"
topic=pl.t
tail_ok=
per_round=${FERRY_POWERLOSS_PER_ROUND:-}
if [ "$sync" != always ]; then
    tail_ok=tail
    per_round=1
fi
n_crash=0 n_torn512=0 n_torn4096=0 n_lost=0
t0=$(date +%s)
for ((round = 1; round <= cuts; round++)); do
    if [ -n "$per_round" ]; then
        topic=pl.r$round
        acked=$work/acked.$round.log
        : >"$acked"
    fi
    start_ferryd
    setsid "$client" pub "127.0.0.1:$port" "$topic" "$acked" </dev/null >/dev/null 2>>"$work/client.log" &
    pub_pid=$!
    pl_sleep_ms $((100 + RANDOM % 900))
    kill -9 "$pub_pid" 2>/dev/null
    pl_kill "$ferryd_pid" || fail "ferryd would not die (round $round)"
    wait "$pub_pid" 2>/dev/null
    pub_pid=
    ferryd_pid=
    case $how in
    crash) cut=crash ;;
    torn) cut="torn 512" ;;
    *) case $((round % 3)) in 0) cut=crash ;; 1) cut="torn 512" ;; *) cut="torn 4096" ;; esac ;;
    esac
    case $cut in crash) n_crash=$((n_crash + 1)) ;; "torn 512") n_torn512=$((n_torn512 + 1)) ;; *) n_torn4096=$((n_torn4096 + 1)) ;; esac
    # shellcheck disable=SC2086
    pl_crash "$M" $cut >>"$work/cuts.log" || fail "power cut $round did not take"
    pl_umount "$M" || fail "unmount after cut $round"
    pl_mount "$B" "$M" || fail "remount after cut $round"
    start_ferryd
    # shellcheck disable=SC2086
    out=$("$client" check "127.0.0.1:$port" "$topic" "$acked" $tail_ok 2>"$work/check.err") ||
        fail "after cut $round ($cut): $out; $(head -5 "$work/check.err")"
    lost=$(echo "$out" | sed -n 's/.*lost tail \([0-9]*\).*/\1/p')
    n_lost=$((n_lost + ${lost:-0}))
    pl_kill "$ferryd_pid" >/dev/null
    ferryd_pid=
    if [ -n "$per_round" ] && [ $((round % ${FERRY_POWERLOSS_VERIFY_EVERY:-1})) = 0 ]; then
        v=$("$ferryd" --verify "$M/data" 2>&1) || fail "after cut $round ($cut): ferryd --verify: $v"
    fi
done
summary=$out
# The store as the last round left it, after a clean stop this time.
start_ferryd
kill -TERM "$ferryd_pid"
wait "$ferryd_pid" 2>/dev/null
ferryd_pid=
verify=$("$ferryd" --verify "$M/data" 2>&1) || fail "ferryd --verify: $verify"
echo "powerloss: $cuts power cuts (sync $sync; crash $n_crash, torn 512 B $n_torn512, torn 4 KiB $n_torn4096) in $(($(date +%s) - t0)) s; every acked message stored, exact, but for $n_lost acks of a lost last commit; last check: $summary; verify: $(echo "$verify" | tail -1)"
