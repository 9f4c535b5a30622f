# What the PyTorch process multiplies matrices with, for the benchmarks' side-by-side figures: a
# ratio against PyTorch counts only when both sides' kernels are printed (bench/run.sh).
# Debian's PyTorch sends float32 products to the system BLAS (libblas.so.3), which is BLIS's
# where libblis is installed; this finds the BLAS the process has loaded and asks that BLIS
# build which sub-configuration it picked on this CPU (bli_arch_query_id / bli_arch_string),
# as `wengert --version` says which the engine picked.
import ctypes


def loaded_libraries():
    """Paths of the shared libraries mapped into this process."""
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and ".so" in fields[5] and fields[5] not in paths:
                paths.append(fields[5])
    return paths


def describe():
    """One line: the BLAS PyTorch runs its products on, and BLIS's kernels where it is BLIS."""
    import torch  # noqa: F401  (loads the BLAS it links)

    # one product, so that a lazily loaded BLAS is mapped too
    torch.ones(64, 64) @ torch.ones(64, 64)
    libs = loaded_libraries()
    blas = [p for p in libs if "blas" in p or "blis" in p or "mkl" in p]
    if not blas:
        return "pytorch's BLAS: none found among its loaded libraries"
    # Debian's BLIS builds its BLAS interface (libblas.so.3) with BLIS inside and the bli_*
    # symbols hidden; the libblis.so.4 of the same package, beside it, is the same build and
    # makes the same choice on this CPU, so ask that one.
    path = blas[0]
    folder = path.rsplit("/", 1)[0]
    for candidate in (path, folder + "/libblis.so.4"):
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        if not hasattr(lib, "bli_arch_query_id"):
            continue
        lib.bli_arch_query_id.restype = ctypes.c_int
        lib.bli_arch_string.restype = ctypes.c_char_p
        lib.bli_arch_string.argtypes = [ctypes.c_int]
        lib.bli_info_get_version_str.restype = ctypes.c_char_p
        arch = lib.bli_arch_string(lib.bli_arch_query_id()).decode()
        version = lib.bli_info_get_version_str().decode()
        return f"pytorch's gemm kernels: BLIS {version} '{arch}' ({path})"
    return f"pytorch's BLAS: {path} (not BLIS)"


if __name__ == "__main__":
    print(describe())
