#!/bin/sh
# models/vae.wg's training step against the same model in PyTorch eager (bench/vae_step.py,
# torch.nn.functional, the same initialisers), at 2 threads, side by side with the ratio
# wengert / PyTorch (below 1: wengert is faster) and each side's GFLOP/s. wengert's figure is
# the CLI's own: `wengert train models/vae.wg --steps STEPS`, whose epoch line times the train
# loop (batches gathered, forward, backward, Adam, the step's metrics), divided by the steps;
# PyTorch's is the median of STEPS steps after 20 warm-up steps, on batches made beforehand.
# The step is about 0.5 GFLOP: three products per dense layer (forward, and the two of the
# backward) of 128 rows through 784-400-(20+20)-400-784. Figures only: nothing here passes or
# fails, and on a shared machine only ratios measured in one run mean much.
# Usage: bench/run_vae.sh [BUILD_DIR] (default: build), after `ninja -C BUILD_DIR dsl/wengert`.
# STEPS (default 300) sets how many steps each side times.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
steps=${STEPS:-300}
. "$here/kernels.sh"
cli_bench_setup run_vae.sh "${1:-build}"
print_kernels

# multiply-adds of one step, times 2 for FLOP, times 3 for forward and backward
flop=$(awk 'BEGIN { printf "%.0f", 2 * 3 * 128 * (784*400 + 400*20*2 + 20*400 + 400*784) }')
line=$(cd "$root" && "$build/dsl/wengert" train models/vae.wg --steps "$steps" --no-progress 2>/dev/null | grep '^epoch 1')
# the epoch line's examples per second: more digits than its seconds (one decimal)
rate=$(echo "$line" | sed -n 's/.*s, \([0-9.]*\) ex\/s).*/\1/p')
ours=$(awk -v r="$rate" -v b=128 'BEGIN { printf "%.3f", b * 1000 / r }')
theirs=""
if have_torch; then
    theirs=$(torch_python "$here/vae_step.py" --steps "$steps" | sed -n 's/.*: step \([0-9.]*\) ms.*/\1/p')
fi
printf '%-34s %20s %20s %8s\n' "vae training step, batch 128" "wengert" "pytorch" "ratio"
awk -v a="$ours" -v b="$theirs" -v f="$flop" 'BEGIN {
    if (b == "") printf "%-34s %6.3f ms %5.1f GFLOP/s %20s %8s\n", "step", a, f / a * 1e-6, "-", "-";
    else printf "%-34s %6.3f ms %5.1f GFLOP/s %6.3f ms %5.1f GFLOP/s %7.2fx\n", "step", a, f / a * 1e-6, b, f / b * 1e-6, a / b }'
