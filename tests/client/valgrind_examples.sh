#!/bin/sh
# valgrind_examples.sh FERRYD PUB SUB
#
# Run the two examples under valgrind against a real ferryd: no memory
# errors, no leaks of any kind. Exits 77 (skipped) without valgrind.
set -eu
ferryd=$1 pub=$2 sub=$3
command -v valgrind >/dev/null 2>&1 || { echo "SKIP: valgrind not installed"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-vg.XXXXXX")
pid=
subpid=
cleanup() {
    for p in $subpid $pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
vg="valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=99"

# Wait (bounded) until file $1 has a line matching $2; $3 is a pid that must live.
wait_line() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$3" 2>/dev/null || return 1
        i=$((i + 1))
        [ $i -lt 1200 ] || return 1
        sleep 0.05
    done
}

mkdir "$tmp/data"
"$ferryd" --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/ferryd.out" 2>"$tmp/ferryd.err" &
pid=$!
wait_line "$tmp/ferryd.out" "listening on" "$pid"
port=$(sed -n 's/^ferryd: listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/ferryd.out")
addr="127.0.0.1:$port"

$vg "$sub" "$addr" "vg.>" 5 >"$tmp/sub.out" 2>"$tmp/sub.err" &
subpid=$!
wait_line "$tmp/sub.out" "subscribed to" "$subpid" || { cat "$tmp/sub.err" >&2; exit 1; }
$vg "$pub" "$addr" vg.test 5 >"$tmp/pub.out" 2>"$tmp/pub.err" || {
    echo "pub failed under valgrind:" >&2; cat "$tmp/pub.err" >&2; exit 1; }
rc=0
wait "$subpid" || rc=$?
subpid=
if [ $rc -ne 0 ]; then
    echo "sub failed under valgrind ($rc):" >&2; cat "$tmp/sub.err" >&2; exit 1
fi
test "$(grep -c 'vg.test' "$tmp/sub.out")" -eq 5
test "$(grep -c 'vg.test' "$tmp/pub.out")" -eq 5
echo "examples clean under valgrind"
