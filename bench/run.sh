#!/bin/sh
# Runs every benchmark at 2 threads and prints the figures side by side. Figures only: nothing
# here passes or fails. Usage: bench/run.sh [BUILD_DIR] (default: build), after
# `meson setup BUILD_DIR && ninja -C BUILD_DIR`.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
bin="$build/bench"
for exe in bench-gemm bench-gemm-threads bench-op-overhead bench-elementwise bench-attention bench-mlp-step bench-conv; do
    if [ ! -x "$bin/$exe" ]; then
        echo "run.sh: $bin/$exe not found; build first: meson setup $build && ninja -C $build" >&2
        exit 64
    fi
done

# One thread count for everyone: the engine (TBB and BLIS), and BLIS/OpenMP under PyTorch,
# which read these when they load.
export WENGERT_NUM_THREADS=2 BLIS_NUM_THREADS=2 OMP_NUM_THREADS=2
. "$here/kernels.sh"
print_kernels

echo "== gemm =="
# BLIS's own OpenMP threads (the reference side) spin after each product and would take the
# cores from the engine's threads in the next timed batch: passive waiting for this run.
OMP_WAIT_POLICY=PASSIVE "$bin/bench-gemm"
echo

echo "== gemm: one product split over threads =="
"$bin/bench-gemm-threads"
echo

echo "== recording one small op =="
ours=$("$bin/bench-op-overhead")
echo "$ours"
op_ours=$ours op_theirs=""
if have_torch; then
    theirs=$(torch_python "$here/op_overhead.py")
    op_theirs=$theirs
    echo "$theirs"
    us() { echo "$1" | sed -n 's/.*: \([0-9.]*\) us\/op.*/\1/p'; }
    awk -v a="$(us "$ours")" -v b="$(us "$theirs")" \
        'BEGIN { printf "pytorch / wengert time per op: %.1fx\n", b / a }'
else
    echo "(PyTorch not importable by /usr/bin/python3: no comparison)"
fi
echo

echo "== elementwise =="
"$bin/bench-elementwise"
echo

echo "== attention =="
ours=$("$bin/bench-attention")
echo "$ours"
attn_ours=$ours attn_theirs=""
if have_torch; then
    theirs=$(torch_python "$here/attention.py")
    attn_theirs=$theirs
    echo "$theirs"
    torch_python "$here/attention.py" --peak
    ms() { echo "$1" | sed -n "s/^$2 dropout $3: \([0-9.]*\) ms.*/\1/p"; }
    for p in 0 0.1; do
        awk -v t="$(ms "$theirs" pytorch $p)" -v f="$(ms "$ours" fused $p)" -v u="$(ms "$ours" unfused $p)" -v p=$p \
            'BEGIN { printf "dropout %s: pytorch / wengert fused %.2fx, pytorch / wengert unfused %.2fx\n", p, t / f, t / u }'
    done
else
    echo "(PyTorch not importable by /usr/bin/python3: no comparison)"
fi
echo

echo "== models/mlp_actreg.wg: one step, one epoch, one eval pass =="
mlp=$("$here/run_mlp.sh" "$build")
echo "$mlp"
echo

echo "== models/sort_attention.wg: one training step =="
sort=$("$here/run_sort.sh" "$build")
echo "$sort"
echo

echo "== models/vae.wg: one training step =="
vae=$("$here/run_vae.sh" "$build")
echo "$vae"
echo

echo "== models/convnet.wg: step, epoch, and its two convolutions =="
convnet=$("$here/run_convnet.sh" "$build")
echo "$convnet"
echo

echo "== data-parallel training: 1 process against 2 under mpirun =="
if "$build/dsl/wengert" --version | grep -q "data-parallel training: Open MPI" && command -v mpirun >/dev/null; then
    "$here/run_mpi.sh" "$build"
else
    echo "(built without MPI, or no mpirun: no comparison)"
fi

echo
# The figures above in one table: wengert's time, PyTorch's, the ratio (below 1: wengert is
# faster), the goal of issue 8, and wengert's achieved GFLOP/s where the FLOP are counted (the
# products' multiply-adds, times 2, forward and backward).
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
family=$(sed -n 's/^cpu family\t*: //p' /proc/cpuinfo | head -1)
model=$(sed -n 's/^model\t*: //p' /proc/cpuinfo | head -1)
echo "== summary: wengert / PyTorch time, 2 threads, on $cpu (family $family, model $model) =="
"$build/dsl/wengert" --version | sed -n 's/^gemm kernels: /wengert gemm kernels: /p'
if have_torch; then torch_python "$here/torch_blis.py"; fi
# line_of TEXT PREFIX: the first line of TEXT that starts with PREFIX; field_of LINE I: its field NF - I
line_of() { printf '%s\n' "$1" | grep -m1 "^$2" || true; }
field_of() { echo "$1" | awk -v i="$2" '{ print $(NF - i) }'; }
printf '%-44s %11s %11s %8s %8s %9s\n' "" "wengert" "pytorch" "ratio" "goal" "GFLOP/s"
summary_row() {   # NAME OURS THEIRS UNIT GOAL MFLOP
    awk -v n="$1" -v a="$2" -v b="$3" -v u="$4" -v g="$5" -v f="${6:-}" 'BEGIN {
        if (a == "") exit;
        gf = (f == "" || u != "ms") ? "-" : sprintf("%.1f", f / a);
        if (b == "") printf "%-44s %8.3f %-2s %11s %8s %8s %9s\n", n, a, u, "-", "-", g, gf;
        else printf "%-44s %8.3f %-2s %8.3f %-2s %7.2fx %8s %9s\n", n, a, u, b, u, a / b, g, gf }'
}
l=$(line_of "$mlp" "train step ")
summary_row "mlp_actreg train step, b128" "$(field_of "$l" 4)" "$(field_of "$l" 2)" ms "<= 0.5x" 206
l=$(line_of "$mlp" "eval pass, 10k")
summary_row "mlp_actreg eval pass, 10k images" "$(field_of "$l" 4)" "$(field_of "$l" 2)" s "<= 0.5x"
l=$(line_of "$mlp" "train epoch (engine API)")
summary_row "mlp_actreg epoch, engine API (bench-mlp-step)" "$(field_of "$l" 4)" "$(field_of "$l" 2)" s "<= 0.5x"
l=$(line_of "$vae" "step ")
summary_row "vae train step, b128" "$(echo "$l" | awk '{ print $2 }')" "$(echo "$l" | awk '{ print $6 }')" ms "<= 0.5x" 500
for f in sorter sorter_penalised; do
    l=$(line_of "$sort" "$f ")
    # 2 encoder blocks of B 64 x T 16, d 64, 4 heads, feed-forward 256, and the output layer
    summary_row "sort model train step, b64 ($f)" "$(echo "$l" | awk '{ print $2 }')" "$(echo "$l" | awk '{ print $4 }')" ms "<= 0.3x" 633
done
for p in 0 0.1; do
    a=$(printf '%s\n' "$attn_ours" | sed -n "s/^fused dropout $p: \([0-9.]*\) ms.*/\1/p")
    b=$(printf '%s\n' "$attn_theirs" | sed -n "s/^pytorch dropout $p: \([0-9.]*\) ms.*/\1/p")
    summary_row "AttentionQKV fwd+bwd, B32 T128 d256 h8, p $p" "$a" "$b" ms "<= 0.6x" 8053
done
l=$(line_of "$convnet" "train step ")
summary_row "convnet train step, b128" "$(field_of "$l" 4)" "$(field_of "$l" 2)" ms "-"
us() { printf '%s\n' "$1" | sed -n 's/.*: \([0-9.]*\) us\/op.*/\1/p'; }
summary_row "one small op on the tape (add + backward)" "$(us "$op_ours")" "$(us "$op_theirs")" us "<= 0.1x"
