#!/bin/sh
# install_test.sh BUILD_DIR FERRYD CC SRC_DIR
#
# Install libferry (components libferry and libferry_dev) into a temporary
# prefix, then build an out-of-tree program three ways - `cc ...
# $(pkg-config --cflags --libs ferry)`, statically against libferry.a with
# `pkg-config --static`, and with CMake's find_package(ferry) - and run each
# against a real ferryd.
set -eu
build=$1 ferryd=$2 cc=$3 src=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferry-install.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

for component in libferry libferry_dev; do
    cmake --install "$build" --prefix "$tmp/prefix" --component $component >/dev/null
done
libdir=$(ls -d "$tmp/prefix"/lib*/pkgconfig | head -n 1)
libdir=${libdir%/pkgconfig}
export PKG_CONFIG_PATH="$libdir/pkgconfig"
test -f "$tmp/prefix/include/ferry.h"
test -f "$libdir/libferry.a"
test -L "$libdir/libferry.so"
test -e "$libdir/libferry.so.0"

# Shared, the README's one-liner.
$cc "$src/install_prog.c" -o "$tmp/prog_shared" $(pkg-config --cflags --libs ferry)
# Static: libferry.a plus its private requirements (libprotobuf-c, pthread).
static_libs=$(pkg-config --static --libs ferry | sed 's/-lferry\b/-l:libferry.a/')
$cc "$src/install_prog.c" -o "$tmp/prog_static" $(pkg-config --cflags ferry) $static_libs
if ldd "$tmp/prog_static" | grep -q libferry; then
    echo "prog_static links libferry dynamically" >&2
    exit 1
fi
# CMake package.
mkdir -p "$tmp/cm"
cat > "$tmp/cm/CMakeLists.txt" <<CMEOF
cmake_minimum_required(VERSION 3.18)
project(ferry_install_check C)
find_package(ferry 0.1 REQUIRED)
add_executable(prog_cmake $src/install_prog.c)
target_link_libraries(prog_cmake PRIVATE ferry::ferry)
add_executable(prog_cmake_static $src/install_prog.c)
target_link_libraries(prog_cmake_static PRIVATE ferry::ferry_static)
CMEOF
cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$tmp/cm/build" >/dev/null

# A broker on a free port; wait for its ready line (bounded).
mkdir "$tmp/data"
"$ferryd" --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/ferryd.out" 2>"$tmp/ferryd.err" &
pid=$!
port=
i=0
while [ -z "$port" ] && [ $i -lt 400 ]; do
    port=$(sed -n 's/^ferryd: listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$tmp/ferryd.out" 2>/dev/null || true)
    if [ -z "$port" ]; then
        kill -0 "$pid" || { cat "$tmp/ferryd.err" >&2; exit 1; }
        sleep 0.05
        i=$((i + 1))
    fi
done
test -n "$port"

LD_LIBRARY_PATH="$libdir" "$tmp/prog_shared" "127.0.0.1:$port"
"$tmp/prog_static" "127.0.0.1:$port"
"$tmp/cm/build/prog_cmake" "127.0.0.1:$port"
"$tmp/cm/build/prog_cmake_static" "127.0.0.1:$port"
echo "install test: ok"
