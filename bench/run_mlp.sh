#!/bin/sh
# models/mlp_actreg.wg against the same model in PyTorch, at 2 threads: seconds per training
# epoch, milliseconds per training step and seconds per evaluation pass (10k test images), side
# by side with the ratio wengert / PyTorch (below 1: wengert is faster). Three runs of the
# same model: bench-mlp-step (the engine API directly), bench/mlp_epoch.py (PyTorch eager) and
# the CLI (`wengert train models/mlp_actreg.wg --epochs 1`; its epoch line times the train loop
# only, the eval pass after it is not in that figure). Figures only: nothing here passes or
# fails, and on a shared machine only ratios measured in one run mean much.
# Usage: bench/run_mlp.sh [BUILD_DIR] (default: build), after
# `meson setup BUILD_DIR && ninja -C BUILD_DIR bench/bench-mlp-step dsl/wengert`.
# EPOCHS (default 3) and STEPS (default 200) set how many epochs and steps each side times.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-build}
epochs=${EPOCHS:-3}
steps=${STEPS:-200}
for exe in bench/bench-mlp-step dsl/wengert; do
    if [ ! -x "$build/$exe" ]; then
        echo "run_mlp.sh: $build/$exe not found; build first: ninja -C $build bench/bench-mlp-step dsl/wengert" >&2
        exit 64
    fi
done

# One thread count for everyone: the engine (TBB and BLIS), and BLIS/OpenMP under PyTorch,
# which read these when they load.
export WENGERT_NUM_THREADS=2 BLIS_NUM_THREADS=2 OMP_NUM_THREADS=2
. "$here/kernels.sh"
print_kernels

ours=$("$build/bench/bench-mlp-step" "$epochs" "$steps")
echo "$ours"
# The same with the gemm kernels BLIS picks itself, as a program linking BLIS gets them (PyTorch
# with WENGERT_BENCH_TORCH_BLAS=system; Note [BLIS kernels]).
ours_blis=$(WENGERT_GEMM_KERNELS=blis "$build/bench/bench-mlp-step" "$epochs" "$steps")
kernels() { echo "$1" | sed -n "s/.*gemm kernels '\([a-z0-9_]*\)'.*/\1/p"; }
if [ "$(kernels "$ours")" = "$(kernels "$ours_blis")" ]; then
    ours_blis=""
else
    echo "$ours_blis"
fi
if have_torch; then
    theirs=$(torch_python "$here/mlp_epoch.py" --epochs "$epochs" --steps "$steps")
    echo "$theirs"
else
    theirs=""
    echo "(PyTorch not importable by /usr/bin/python3: no comparison)"
fi

cli_start=$(date +%s.%N)
cli=$(cd "$root" && "$build/dsl/wengert" train models/mlp_actreg.wg --epochs 1 --no-progress 2>/dev/null | grep '^epoch 1')
cli_end=$(date +%s.%N)
echo "cli: $cli"
cli_epoch=$(echo "$cli" | sed -n 's/.*(\([0-9.]*\) s,.*/\1/p')
cli_total=$(awk -v a="$cli_start" -v b="$cli_end" 'BEGIN { printf "%.3f", b - a }')

# figure KIND LINES: the number before the unit on the line naming KIND
figure() { echo "$2" | sed -n "s/.*: $1 \([0-9.]*\) .*/\1/p"; }
echo
printf '%-38s %12s %12s %8s\n' "mlp_actreg, 2 threads" "wengert" "pytorch" "ratio"
row() {
    awk -v name="$1" -v a="$2" -v b="$3" -v unit="$4" 'BEGIN {
        if (b == "") printf "%-38s %9.3f %-2s %12s %8s\n", name, a, unit, "-", "-";
        else printf "%-38s %9.3f %-2s %9.3f %-2s %7.2fx\n", name, a, unit, b, unit, a / b }'
}
row "train step" "$(figure step "$ours")" "$(figure step "$theirs")" ms
row "train epoch (engine API)" "$(figure epoch "$ours")" "$(figure epoch "$theirs")" s
row "train epoch (CLI epoch line)" "$cli_epoch" "$(figure epoch "$theirs")" s
row "eval pass, 10k images" "$(figure eval "$ours")" "$(figure eval "$theirs")" s
if [ -n "$ours_blis" ]; then
    k=$(kernels "$ours_blis")
    row "train step (BLIS's own $k gemm)" "$(figure step "$ours_blis")" "$(figure step "$theirs")" ms
    row "train epoch (BLIS's own $k gemm)" "$(figure epoch "$ours_blis")" "$(figure epoch "$theirs")" s
    row "eval pass (BLIS's own $k gemm)" "$(figure eval "$ours_blis")" "$(figure eval "$theirs")" s
fi
echo "(wengert's gemm kernels: $(kernels "$ours")$([ -n "$ours_blis" ] && echo ", BLIS's own $(kernels "$ours_blis") where a row says so"); PyTorch's: $(torch_python "$here/torch_blis.py" | sed 's/^pytorch.s gemm kernels: //'))"
echo "(CLI wall time for the whole run, data loading and eval pass included: $cli_total s)"
