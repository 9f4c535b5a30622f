#!/usr/bin/env bash
# Installs the build into a scratch folder, compiles docs/engine.md's example against it with
# `pkg-config wengert`, and runs it: how a user embeds the engine.
set -euo pipefail
build_dir=$1
source_dir=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

DESTDIR="$scratch/root" meson install -C "$build_dir" --no-rebuild --quiet >/dev/null
prefix=$(meson introspect "$build_dir" --buildoptions | python3 -c '
import json, sys
opts = {o["name"]: o["value"] for o in json.load(sys.stdin)}
print(opts["prefix"]); print(opts["libdir"])' )
prefix_dir=$(echo "$prefix" | sed -n 1p)
libdir=$(echo "$prefix" | sed -n 2p)
case "$libdir" in /*) ;; *) libdir="$prefix_dir/$libdir" ;; esac
root="$scratch/root"
export PKG_CONFIG_SYSROOT_DIR="$root"
export PKG_CONFIG_PATH="$root$libdir/pkgconfig"

# the example is the C++ block of docs/engine.md that starts with "// example:"
awk '/^```cpp$/{block=""; inside=1; next} /^```$/{if (inside && block ~ /^\/\/ example:/) {printf "%s", block; exit} inside=0; next} inside{block = block $0 "\n"}' \
  "$source_dir/docs/engine.md" > "$scratch/example.cpp"
test -s "$scratch/example.cpp" || { echo "no example block in docs/engine.md"; exit 1; }

c++ -std=c++20 "$scratch/example.cpp" -o "$scratch/example" $(pkg-config --cflags --libs wengert)
LD_LIBRARY_PATH="$root$libdir" "$scratch/example"
echo "installed library: example compiled with pkg-config and ran"
