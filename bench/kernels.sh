# Sourced by the bench scripts. cli_bench_setup NAME BUILD: the absolute build folder in $build
# (it must hold dsl/wengert), 2 threads for both sides. print_kernels: the kernels each side's
# matrix products run on, so that a ratio against PyTorch is read on equal terms (a win over
# generic kernels is not a win). Needs $here (bench/) set.
cli_bench_setup() {
    build=$2
    case "$build" in /*) ;; *) build="$PWD/$build" ;; esac
    if [ ! -x "$build/dsl/wengert" ]; then
        echo "$1: $build/dsl/wengert not found; build first: ninja -C $build dsl/wengert" >&2
        exit 64
    fi
    export WENGERT_NUM_THREADS=2 BLIS_NUM_THREADS=2 OMP_NUM_THREADS=2
}

# Which BLAS PyTorch runs on: WENGERT_BENCH_TORCH_BLAS=openblas (the default where Debian's
# libopenblas0-pthread is installed) or system (the libblas.so.3 the alternatives system
# chose, BLIS's on the machine CI builds on). Debian's PyTorch sends float32 products to
# libblas.so.3; BLIS 0.9 runs its generic C kernels on CPUs newer than it (AMD Zen 5), where
# OpenBLAS 0.3.21 picks AVX-512 kernels ('Cooperlake', 'SkylakeX'), so OpenBLAS is PyTorch's
# fastest products here, and a ratio against a PyTorch on generic kernels is not a win.
# OPENBLAS_CORETYPE (OpenBLAS's own variable) forces its kernel set.
openblas_dir=/usr/lib/x86_64-linux-gnu/openblas-pthread
torch_blas=${WENGERT_BENCH_TORCH_BLAS:-}
if [ -z "$torch_blas" ]; then
    if [ -e "$openblas_dir/libblas.so.3" ]; then torch_blas=openblas; else torch_blas=system; fi
fi
case "$torch_blas" in
    openblas)
        if [ ! -e "$openblas_dir/libblas.so.3" ]; then
            echo "WENGERT_BENCH_TORCH_BLAS=openblas: $openblas_dir/libblas.so.3 not found (apt-get install libopenblas0-pthread)" >&2
            exit 64
        fi ;;
    system) ;;
    *) echo "WENGERT_BENCH_TORCH_BLAS must be openblas or system, got '$torch_blas'" >&2; exit 64 ;;
esac

# torch_python ARGS: /usr/bin/python3 with PyTorch's BLAS as chosen above, at 2 threads
torch_python() {
    if [ "$torch_blas" = openblas ]; then
        LD_LIBRARY_PATH="$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OPENBLAS_NUM_THREADS=2 /usr/bin/python3 "$@"
    else
        /usr/bin/python3 "$@"
    fi
}

# have_torch: PyTorch is importable (it is for benchmarking, not a build dependency)
have_torch() { /usr/bin/python3 -c 'import torch' 2>/dev/null; }

print_kernels() {
    "$build/dsl/wengert" --version | sed -n 's/^gemm kernels: /wengert gemm kernels: /p'
    if have_torch; then
        torch_python "$here/torch_blis.py"
    else
        echo "(PyTorch not importable by /usr/bin/python3)"
    fi
}
