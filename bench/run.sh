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
if have_torch; then
    theirs=$(torch_python "$here/op_overhead.py")
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
if have_torch; then
    theirs=$(torch_python "$here/attention.py")
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
"$here/run_mlp.sh" "$build"
echo

echo "== models/sort_attention.wg: one training step =="
"$here/run_sort.sh" "$build"
echo

echo "== models/vae.wg: one training step =="
"$here/run_vae.sh" "$build"
echo

echo "== models/convnet.wg: step, epoch, and its two convolutions =="
"$here/run_convnet.sh" "$build"
echo

echo "== data-parallel training: 1 process against 2 under mpirun =="
if "$build/dsl/wengert" --version | grep -q "data-parallel training: Open MPI" && command -v mpirun >/dev/null; then
    "$here/run_mpi.sh" "$build"
else
    echo "(built without MPI, or no mpirun: no comparison)"
fi
