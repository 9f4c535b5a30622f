# What the PyTorch process multiplies matrices with, for the benchmarks' side-by-side figures: a
# ratio against PyTorch counts only when both sides' kernels are printed (bench/run.sh).
# Debian's PyTorch sends float32 products to the BLAS interface, sgemm_, of whichever library
# its libtorch_cpu resolves that symbol to (libblas.so.3: BLIS's or OpenBLAS's, as
# bench/kernels.sh's WENGERT_BENCH_TORCH_BLAS sets). This asks the dynamic linker which library
# that is (dlsym on libtorch_cpu's own handle, which searches as its relocations did, then
# dladdr), and that library which kernels it picked on this CPU: BLIS's sub-configuration
# (bli_arch_query_id / bli_arch_string), OpenBLAS's core (openblas_get_corename), as
# `wengert --version` says which the engine picked.
import ctypes
import os


class DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def loaded(name):
    """The path of the first mapped library whose file name holds `name`, or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and name in os.path.basename(fields[5]):
                return fields[5]
    return None


def sgemm_library():
    """The real path of the library that defines the sgemm_ libtorch_cpu calls, or None."""
    libc = ctypes.CDLL("libc.so.6")
    libc.dlsym.restype = ctypes.c_void_p
    libc.dlsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    libc.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    torch_cpu = loaded("libtorch_cpu")
    if torch_cpu is None:
        return None
    address = libc.dlsym(ctypes.CDLL(torch_cpu)._handle, b"sgemm_")
    info = DlInfo()
    if not address or not libc.dladdr(ctypes.c_void_p(address), ctypes.byref(info)):
        return None
    return os.path.realpath(info.dli_fname.decode())


def describe_blis(path):
    # Debian's BLIS builds its BLAS interface (libblas.so.3) with BLIS inside and the bli_*
    # symbols hidden; the libblis.so.4 of the same package, beside it, is the same build and
    # makes the same choice on this CPU, so ask that one.
    for candidate in (path, os.path.join(os.path.dirname(path), "libblis.so.4")):
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
        return f"BLIS {version} '{arch}'"
    return None


def describe_openblas(path):
    for candidate in (path, loaded("libopenblas")):
        if candidate is None:
            continue
        lib = ctypes.CDLL(candidate)
        if not hasattr(lib, "openblas_get_corename"):
            continue
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
        config = lib.openblas_get_config().decode().split()
        version = config[1] if len(config) > 1 else "?"
        return f"OpenBLAS {version} '{core}', {lib.openblas_get_num_threads()} threads"
    return None


def describe():
    """One line: the library PyTorch runs its products on, and the kernels it picked."""
    import torch  # noqa: F401  (loads the BLAS it links)

    # one product, so that a lazily loaded BLAS is mapped and initialised too
    torch.ones(64, 64) @ torch.ones(64, 64)
    path = sgemm_library()
    if path is None:
        return "pytorch's gemm kernels: unknown (libtorch_cpu resolves no sgemm_)"
    kernels = describe_blis(path) or describe_openblas(path) or "not BLIS or OpenBLAS"
    return f"pytorch's gemm kernels: {kernels} ({path})"


if __name__ == "__main__":
    print(describe())
