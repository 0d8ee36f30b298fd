#!/bin/sh
# deb_test.sh BUILD_DIR VERSION SOVERSION CC PROG_C
#
# Build the Debian packages of BUILD_DIR with CPack (what `cmake --build
# BUILD_DIR --target package` does, into a temporary directory) and check
# them with dpkg-deb: file names, contents, maintainer scripts and
# conffiles, dependencies (dpkg-shlibdeps ran), the packaged unit (through
# systemd-analyze verify, where it exists), and that a program builds
# against libferry-dev with pkg-config. Exits 77 (skipped) without
# dpkg-deb or dpkg-shlibdeps (Debian: dpkg-dev).
set -eu
build=$1 version=$2 sover=$3 cc=$4 prog=$5
here=$(cd "$(dirname "$0")" && pwd)
for tool in dpkg-deb dpkg-shlibdeps cpack; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "$tool not found (Debian: dpkg-dev, cmake): skipped"
        exit 77
    fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
fail() {
    echo "deb_test: $*" >&2
    exit 1
}

cpack --config "$build/CPackConfig.cmake" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 || {
    cat "$tmp/cpack.log" >&2
    fail "cpack failed"
}
arch=$(dpkg --print-architecture)
ferry=$tmp/out/ferry_${version}_$arch.deb
lib=$tmp/out/libferry${sover}_${version}_$arch.deb
dev=$tmp/out/libferry-dev_${version}_$arch.deb
for deb in "$ferry" "$lib" "$dev"; do
    [ -f "$deb" ] || fail "no $(basename "$deb") among: $(ls "$tmp/out")"
    dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|' >"$deb.files"
    dpkg-deb -f "$deb" Depends >"$deb.depends"
done

# has DEB REGEX: some file of DEB matches REGEX (a whole path).
has() {
    grep -Eq "^$2\$" "$1.files" || fail "$(basename "$1") has no $2; it holds: $(cat "$1.files")"
}
# depends DEB REGEX: DEB's Depends: field matches REGEX.
depends() {
    grep -Eq "$2" "$1.depends" || fail "$(basename "$1") Depends: $(cat "$1.depends"), not $2"
}

# ferry: programs, the unit, the config; nothing under /usr/local.
has "$ferry" /usr/bin/ferryd
has "$ferry" /usr/bin/ferry
has "$ferry" /lib/systemd/system/ferryd.service
has "$ferry" /etc/ferry/ferryd.conf
for f in "$ferry" "$lib" "$dev"; do
    if grep -q '^/usr/local' "$f.files"; then
        fail "$(basename "$f") installs under /usr/local"
    fi
done
# The manuals, where this build makes them (man/, scdoc).
for page in $(cd "$build" && find . -name 'ferryd.8' -o -name 'ferry.1' -o -name 'ferryd.conf.5'); do
    has "$ferry" "/usr/share/man/man[0-9]/$(basename "$page")\.gz"
done
if [ -f "$build/man/libferry.3" ]; then
    has "$dev" "/usr/share/man/man3/libferry\.3\.gz"
fi
depends "$ferry" 'adduser'
depends "$ferry" 'libc6 \(>= '
depends "$ferry" 'liblmdb0'
depends "$ferry" 'libprotobuf-c1'
mkdir "$tmp/ctl"
dpkg-deb -e "$ferry" "$tmp/ctl"
[ "$(cat "$tmp/ctl/conffiles")" = /etc/ferry/ferryd.conf ] || fail "conffiles: $(cat "$tmp/ctl/conffiles")"
for script in postinst prerm postrm; do
    [ -x "$tmp/ctl/$script" ] || fail "ferry has no executable $script"
    sh -n "$tmp/ctl/$script" || fail "$script: syntax error"
done
grep -q 'adduser --system' "$tmp/ctl/postinst" || fail "postinst adds no system user"

# libferry<sover>: the shared library and its shlibs entry.
has "$lib" "/usr/lib(/[^/]*)?/libferry\.so\.$sover"
has "$lib" "/usr/lib(/[^/]*)?/libferry\.so\.$version"
if grep -Eq '\.(a|h|pc)$|libferry\.so$' "$lib.files"; then
    fail "libferry$sover holds development files: $(cat "$lib.files")"
fi
depends "$lib" 'libc6'
depends "$lib" 'libprotobuf-c1'
mkdir "$tmp/libctl"
dpkg-deb -e "$lib" "$tmp/libctl"
grep -q "^libferry $sover libferry$sover (= $version)\$" "$tmp/libctl/shlibs" ||
    fail "shlibs: $(cat "$tmp/libctl/shlibs" 2>/dev/null)"

# libferry-dev: header, link library, static library, pkg-config, CMake.
has "$dev" /usr/include/ferry.h
has "$dev" "/usr/lib(/[^/]*)?/libferry\.so"
has "$dev" "/usr/lib(/[^/]*)?/libferry\.a"
has "$dev" "/usr/lib(/[^/]*)?/pkgconfig/ferry\.pc"
has "$dev" "/usr/lib(/[^/]*)?/cmake/ferry/ferryConfig\.cmake"
depends "$dev" "libferry$sover \(= $version\)"
depends "$dev" 'libprotobuf-c-dev'

# The packaged unit verifies, with ExecStart pointing at the packaged ferryd.
root=$tmp/root
for deb in "$ferry" "$lib" "$dev"; do
    dpkg-deb -x "$deb" "$root"
done
mkdir "$tmp/unit"
sed "s|^ExecStart=/usr/bin/ferryd |ExecStart=$root/usr/bin/ferryd |" \
    "$root/lib/systemd/system/ferryd.service" >"$tmp/unit/ferryd.service"
grep -q "^ExecStart=$root/usr/bin/ferryd --config /etc/ferry/ferryd.conf\$" "$tmp/unit/ferryd.service" ||
    fail "ExecStart: $(grep ExecStart "$root/lib/systemd/system/ferryd.service")"
rc=0
sh "$here/verify_unit.sh" "$tmp/unit/ferryd.service" || rc=$?
[ $rc -eq 0 ] || [ $rc -eq 77 ] || fail "the packaged unit does not verify"

# A program builds against the extracted libferry-dev with pkg-config (the
# .pc file finds its prefix relative to itself).
pc=$(dirname "$(find "$root" -name ferry.pc)")
PKG_CONFIG_PATH=$pc $cc "$prog" -o "$tmp/prog" $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs ferry) ||
    fail "cannot build against libferry-dev"
echo "deb_test: ok ($(cd "$tmp/out" && ls ./*.deb | tr '\n' ' '))"
