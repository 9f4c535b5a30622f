#!/bin/sh
# models/convnet.wg (the keras-io MNIST convnet, SPEC.md section 7) against the same model in
# PyTorch eager (bench/conv_step.py), at 2 threads: the training step (batch 128), one epoch, and
# conv2d forward and forward+backward alone at the model's two shapes, side by side with the
# ratio wengert / PyTorch (below 1: wengert is faster). wengert's step is the CLI's own:
# `wengert train models/convnet.wg --steps STEPS`, whose epoch line times the train loop
# (batches gathered, forward, backward, Adam, the metrics), divided by the steps; its epoch is
# `--epochs 1` whole. PyTorch runs its convolutions on oneDNN, not BLIS: the script prints the
# kernel oneDNN chose. Figures only: nothing here passes or fails, and on a shared machine only
# ratios measured in one run mean much.
# Usage: bench/run_convnet.sh [BUILD_DIR] (default: build), after `ninja -C BUILD_DIR`.
# STEPS (default 100) sets how many steps wengert's step figure times.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
steps=${STEPS:-100}
. "$here/kernels.sh"
cli_bench_setup run_convnet.sh "${1:-build}"
print_kernels

ex_per_s() { echo "$1" | sed -n 's/.*s, \([0-9.]*\) ex\/s).*/\1/p'; }
seconds() { echo "$1" | sed -n 's/.*(\([0-9.]*\) s, [0-9.]* ex\/s).*/\1/p'; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step_line=$(cd "$root" && "$build/dsl/wengert" train models/convnet.wg --steps "$steps" --no-progress --checkpoint "$tmp/step" 2>/dev/null | grep '^epoch 1')
epoch_line=$(cd "$root" && "$build/dsl/wengert" train models/convnet.wg --epochs 1 --no-progress --checkpoint "$tmp/epoch" 2>/dev/null | grep '^epoch 1')
ours_step=$(awk -v r="$(ex_per_s "$step_line")" 'BEGIN { printf "%.3f", 128 * 1000 / r }')
ours_epoch=$(awk -v r="$(ex_per_s "$epoch_line")" 'BEGIN { printf "%.3f", 60000 / r }')
ours_convs=$("$build/bench/bench-conv")
echo "$ours_convs"

theirs=""
if have_torch; then
    theirs=$(torch_python "$here/conv_step.py" 2)
    echo "$theirs"
fi
field() { echo "$theirs" | sed -n "s/^$1: \([0-9.]*\) .*/\1/p"; }
ours_ms() { echo "$ours_convs" | sed -n "s/^$1 *\([0-9.]*\) .*/\1/p"; }
printf '%-40s %12s %12s %8s\n' "convnet, batch 128" "wengert" "pytorch" "ratio"
row() {
    awk -v n="$1" -v a="$2" -v b="$3" -v u="$4" 'BEGIN {
        if (b == "") printf "%-40s %9.3f %-2s %12s %8s\n", n, a, u, "-", "-";
        else printf "%-40s %9.3f %-2s %9.3f %-2s %7.2fx\n", n, a, u, b, u, a / b }'
}
row "train step" "$ours_step" "$(field 'convnet train step b128')" ms
row "epoch (469 steps)" "$ours_epoch" "$(field 'convnet epoch')" s
for layer in "conv 1" "conv 2"; do
    for pass in forward forward+backward; do
        ours=$(echo "$ours_convs" | grep "^$layer: .* $pass " | awk '{ print $(NF-1) }')
        row "$layer $pass" "$ours" "$(field "$layer $pass")" ms
    done
done
