#!/bin/sh
# models/sort_attention.wg's training step against the same model in PyTorch eager
# (bench/sort_step.py, torch.nn.functional), at 2 threads, without and with the distance
# penalty, side by side with the ratio wengert / PyTorch (below 1: wengert is faster).
# wengert's figure is the CLI's own: `wengert train --steps STEPS`, whose epoch line times the
# train loop (batches gathered, forward, backward, Adam, the step's metrics), divided by the
# steps; PyTorch's is the median of STEPS steps (forward, backward, Adam) after 20 warm-up
# steps, on batches made beforehand. Figures only: nothing here passes or fails, and on a
# shared machine only ratios measured in one run mean much.
# Usage: bench/run_sort.sh [BUILD_DIR] (default: build), after `ninja -C BUILD_DIR dsl/wengert`.
# STEPS (default 300) sets how many steps each side times.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
steps=${STEPS:-300}
. "$here/kernels.sh"
cli_bench_setup run_sort.sh "${1:-build}"
print_kernels
torch_ok=no
have_torch && torch_ok=yes

printf '%-44s %12s %12s %8s\n' "sort model training step, batch 64" "wengert" "pytorch" "ratio"
for function in sorter sorter_penalised; do
    line=$(cd "$root" && "$build/dsl/wengert" train models/sort_attention.wg --function "$function" \
           --steps "$steps" --no-progress 2>/dev/null | grep '^epoch 1')
    # the epoch line's examples per second: more digits than its seconds (one decimal)
    rate=$(echo "$line" | sed -n 's/.*s, \([0-9.]*\) ex\/s).*/\1/p')
    ours=$(awk -v r="$rate" -v b=64 'BEGIN { printf "%.3f", b * 1000 / r }')
    theirs=""
    if [ $torch_ok = yes ]; then
        flag=""
        [ "$function" = sorter_penalised ] && flag=--penalty
        theirs=$(torch_python "$here/sort_step.py" --steps "$steps" $flag | sed -n 's/.*: step \([0-9.]*\) ms.*/\1/p')
    fi
    awk -v name="$function" -v a="$ours" -v b="$theirs" 'BEGIN {
        if (b == "") printf "%-44s %9.3f ms %12s %8s\n", name, a, "-", "-";
        else printf "%-44s %9.3f ms %9.3f ms %7.2fx\n", name, a, b, a / b }'
done
[ $torch_ok = yes ] || echo "(PyTorch not importable by /usr/bin/python3: no comparison)"
