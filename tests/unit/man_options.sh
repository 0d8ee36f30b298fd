#!/usr/bin/env bash
# man_options.sh - the manual pages (man/*.scd) and the programs agree.
#
#   man_options.sh ferryd|ferry|conf|libferry MAN_DIR FERRYD FERRY FERRY_H
#
# ferryd    every long option that `ferryd --help` prints is defined in
#           ferryd.8.scd, and every option defined there is printed.
# ferry     the same for `ferry --help` and each `ferry CMD --help` against
#           ferry.1.scd: a command's options under its "## CMD" section (or
#           COMMON OPTIONS), and every command of `ferry --help` has one.
# conf      every key that ferryd.conf.5.scd defines is a key ferryd knows,
#           and every key ferryd's --help names is defined there.
# libferry  every function ferry.h exports is named in libferry.3.scd and
#           every function named there exists; its EXAMPLE compiles.
#
# "Defined" in an .scd means on a line that starts with the bold option
# (`*--listen* _HOST:PORT_`), or with the bold key (`*max_connections* _N_`)
# above an indented description; options met in prose are not definitions. Differences that are meant are
# listed below, each with its reason; one that is no longer needed fails,
# so that the list stays true. Exits 0, 1 (with every difference listed),
# or 77 when the binaries are not built.
set -u

what=$1 man=$2 ferryd=$3 ferry=$4 header=$5

# Printed by --help but not defined in the page.
help_only=(
    "ferryd --key: ferryd --help writes --key VALUE for any config key; ferryd.conf(5) lists them"
)
# Defined in the page ahead of the code: issue 15 builds them in parallel.
# Each fails as soon as --help prints it, so the merge checks it for real.
pending_opts=(
)
pending_cmds=(
)

status=0
fail() {
    echo "FAIL: $*"
    status=1
}

# The entry of list "$1" (an array name) for key "$2", or nothing.
listed() {
    local -n list=$1
    local e
    for e in "${list[@]}"; do
        if [ "${e%%:*}" = "$2" ]; then
            echo "${e#*: }"
            return 0
        fi
    done
    return 1
}

# Long options anywhere in a text on stdin, one per line ("--tls-*" is --tls).
help_opts() { grep -o -- '--[a-z][a-z0-9-]*' | sed 's/-*$//' | sort -u; }
# Long options an .scd text on stdin defines.
scd_defs() { grep -E '^\*-' | grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }
# The lines of an .scd section "## NAME" up to the next heading.
scd_section() { awk -v h="## $2" '$0 == h {on = 1; next} /^#/ {on = 0} on' "$1"; }
# The lines of an .scd section "# NAME" (with its subsections).
scd_part() { awk -v h="# $2" '$0 == h {on = 1; next} /^# / {on = 0} on' "$1"; }
# Lines in $1 that are not in $2 (both sorted).
minus() { comm -23 <(printf '%s\n' "$1" | sed '/^$/d') <(printf '%s\n' "$2" | sed '/^$/d'); }

need_binaries() {
    if [ ! -x "$ferryd" ] || [ ! -x "$ferry" ]; then
        echo "SKIP: $ferryd or $ferry is not built"
        exit 77
    fi
}

# Each option of the list $1 fails with the message $4 (%s: the option)
# unless the list named $3 excuses it for ferryd: then a line "$2: ...".
excuse_or_fail() {
    local o why
    for o in $1; do
        if why=$(listed "$3" "ferryd $o"); then
            echo "$2: ferryd $o: $why"
        else
            fail "$(printf "$4" "$o")"
        fi
    done
}

check_ferryd() {
    local page=$man/ferryd.8.scd help defs e o
    help=$("$ferryd" --help | help_opts)
    defs=$(scd_defs <"$page")
    excuse_or_fail "$(minus "$help" "$defs")" "not in ferryd.8" help_only \
        "ferryd --help prints %s, ferryd.8.scd does not define it"
    excuse_or_fail "$(minus "$defs" "$help")" pending pending_opts \
        "ferryd.8.scd defines %s, ferryd --help does not print it"
    # An excuse that no longer applies fails: the lists stay true.
    for e in "${pending_opts[@]}"; do
        o=${e%%:*}
        grep -qx -- "${o#ferryd }" <<<"$help" &&
            fail "ferryd --help prints ${o#ferryd } now: remove it from pending_opts in $0"
    done
    for e in "${help_only[@]}"; do
        o=${e%%:*}
        grep -qx -- "${o#ferryd }" <<<"$help" ||
            fail "ferryd --help no longer prints ${o#ferryd }: remove it from help_only in $0"
    done
}

check_ferry() {
    local page=$man/ferry.1.scd main common all cmds sections name out rc help defs o why
    main=$("$ferry" --help)
    common=$(scd_part "$page" "COMMON OPTIONS" | scd_defs)
    all=$(scd_defs <"$page")
    for o in $(minus "$(help_opts <<<"$main")" "$all"); do
        fail "ferry --help prints $o, ferry.1.scd does not define it"
    done
    for o in $(minus "$common" "$(help_opts <<<"$main")"); do
        fail "ferry.1.scd defines $o under COMMON OPTIONS, ferry --help does not print it"
    done
    # The commands: "  NAME ..." lines of the Commands: block.
    cmds=$(awk '/^Commands:/ {on = 1; next} /^$/ {on = 0} on && /^  [a-z]/ {print $1}' \
        <<<"$main" | sort -u)
    sections=$(sed -n 's/^## \([a-z]*\)$/\1/p' "$page" | sort -u)
    for name in $(minus "$cmds" "$sections"); do
        fail "ferry --help lists the command $name, ferry.1.scd has no \"## $name\""
    done
    for name in $sections; do
        [ "$name" = help ] && continue # `ferry help CMD` is CMD --help
        out=$("$ferry" "$name" --help 2>&1)
        rc=$?
        if why=$(listed pending_cmds "$name"); then
            if [ $rc -eq 0 ]; then
                fail "ferry $name exists now: remove it from pending_cmds in $0"
            else
                echo "pending: ferry $name: $why"
                continue
            fi
        elif [ $rc -ne 0 ]; then
            fail "ferry.1.scd has \"## $name\", but ferry $name --help fails: $out"
            continue
        fi
        # "ferryd --data-dir DIR" in a command's help names ferryd's options
        # (checked against ferryd.8 above), not the command's.
        help=$(sed -E 's/ferryd( --[a-z][a-z0-9-]*)+//g' <<<"$out" | help_opts)
        defs=$( (scd_section "$page" "$name" | scd_defs; printf '%s\n' "$common") | sort -u)
        for o in $(minus "$help" "$defs"); do
            fail "ferry $name --help prints $o, ferry.1.scd does not define it under" \
                "\"## $name\" or COMMON OPTIONS"
        done
        for o in $(minus "$(scd_section "$page" "$name" | scd_defs)" "$help"); do
            fail "ferry.1.scd defines $o under \"## $name\", ferry $name --help does not print it"
        done
    done
}

# Known to ferryd as a config key? `--KEY=` (an empty value, which every
# key refuses) makes it say "bad value for" a key and "unknown option"
# otherwise; the second flag, never a key, stops it in any case.
is_key() {
    "$ferryd" "--$1=" --not-a-ferryd-key= 2>&1 | grep -q "bad value for \"--$1\""
}

check_conf() {
    local page=$man/ferryd.conf.5.scd keys help w k
    # A definition: a line that starts with a bold key, then an indented one.
    keys=$(awk '/^\t/ && prev ~ /^\*[a-z][a-z0-9_]*\*/ {print prev} {prev = $0}' "$page" |
        grep -oE '\*[a-z][a-z0-9_]*\*' | tr -d '*' | sort -u)
    [ -n "$keys" ] || fail "ferryd.conf.5.scd defines no key"
    for k in $keys; do
        is_key "$k" || fail "ferryd.conf.5.scd defines $k, which ferryd does not know"
    done
    # ferryd --help names keys as options (--max-store-size) and as words
    # (max_connections): every one that is a key must be in the page.
    help=$("$ferryd" --help)
    for w in $( (help_opts <<<"$help" | sed 's/^--//; s/-/_/g'
        grep -oE '\b[a-z]+(_[a-z]+)+\b' <<<"$help") | sort -u); do
        if is_key "$w" && ! grep -qx -- "$w" <<<"$keys"; then
            fail "ferryd knows the key $w (named in --help), ferryd.conf.5.scd does not define it"
        fi
    done
}

check_libferry() {
    local page=$man/libferry.3.scd api named f example
    api=$(grep -o 'FERRY_API [^(]*(' "$header" | grep -o 'ferry_[a-z0-9_]*(' | tr -d '(' | sort -u)
    [ -n "$api" ] || fail "no FERRY_API function found in $header"
    for f in $api; do
        grep -qw -- "$f" "$page" || fail "ferry.h exports $f, libferry.3.scd does not name it"
    done
    named=$(grep -oE 'ferry_[a-z0-9_]+\*?\(' "$page" | tr -d '*(' | sort -u)
    for f in $(minus "$named" "$api"); do
        fail "libferry.3.scd names $f(), ferry.h has no such function"
    done
    # The EXAMPLE's literal block, scdoc's "\\" back to "\".
    example=$(awk '/^# EXAMPLE/ {on = 1} on && /^```$/ {n++; next} on && n == 1' "$page" |
        sed 's/\\\\/\\/g')
    [ -n "$example" ] || fail "libferry.3.scd has no EXAMPLE block"
    if command -v cc >/dev/null; then
        cc -std=c11 -Wall -Wextra -Werror -fsyntax-only -I"$(dirname "$header")" -x c - \
            <<<"$example" || fail "the EXAMPLE of libferry.3.scd does not compile"
    else
        echo "no cc: the EXAMPLE is not compiled"
    fi
}

case $what in
ferryd) need_binaries && check_ferryd ;;
ferry) need_binaries && check_ferry ;;
conf) need_binaries && check_conf ;;
libferry) check_libferry ;;
*)
    echo "usage: $0 ferryd|ferry|conf|libferry MAN_DIR FERRYD FERRY FERRY_H" >&2
    exit 2
    ;;
esac
[ $status -eq 0 ] && echo "ok: $what and its manual page agree"
exit $status
