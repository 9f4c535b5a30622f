#!/usr/bin/env bash
# Builds wengert (installing Debian packages if any is missing) and runs the main job:
# checking and training models/mlp_actreg.wg on Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")"

packages=$(cat .ci/packages)
missing=()
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

[ -f build/build.ninja ] || meson setup build
ninja -C build -j"$(nproc)"

# The main job: train the Fashion-MNIST MLP with a penalty on an intermediate layer.
./build/dsl/wengert check models/mlp_actreg.wg
# --overwrite: each ./run.sh is a fresh run, replacing the previous one's checkpoint (a folder
# that holds a checkpoint is otherwise refused, so that no run destroys another's by accident).
./build/dsl/wengert train models/mlp_actreg.wg --checkpoint build/runs/mlp_actreg --overwrite
