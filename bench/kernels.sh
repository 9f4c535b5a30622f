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

print_kernels() {
    "$build/dsl/wengert" --version | sed -n 's/^gemm kernels: /wengert gemm kernels: /p'
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        /usr/bin/python3 "$here/torch_blis.py"
    else
        echo "(PyTorch not importable by /usr/bin/python3)"
    fi
}
