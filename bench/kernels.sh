# Sourced by the bench scripts: prints the kernels each side's matrix products run on, so that
# a ratio against PyTorch is read on equal terms (a win over generic kernels is not a win).
# Needs $build (the build folder) and $here (bench/) set.
print_kernels() {
    "$build/dsl/wengert" --version | sed -n 's/^gemm kernels: /wengert gemm kernels: /p'
    if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
        /usr/bin/python3 "$here/torch_blis.py"
    else
        echo "(PyTorch not importable by /usr/bin/python3)"
    fi
}
