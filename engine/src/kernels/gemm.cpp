#include "gemm.hpp"

#include <blis.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../dispatch.hpp"
#include "wengert/kernels.hpp"
#include "wengert/threading.hpp"

namespace wengert::detail {

namespace {

// A matrix axis of extent 1 never has its stride read; give it one BLIS accepts.
void settle_unit_strides(std::int64_t rows, std::int64_t cols, std::int64_t& rs, std::int64_t& cs) {
    if (rows == 1 && cols == 1) {
        rs = 1;
        cs = 1;
    } else if (rows == 1) {
        rs = cols * cs;
    } else if (cols == 1) {
        cs = rows * rs;
    }
}

}  // namespace

bool blis_accepts_strides(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs) {
    if (rows == 0 || cols == 0) return true;
    settle_unit_strides(rows, cols, rs, cs);
    if (rs == 0 || cs == 0) return false;
    if (rs != 1 && cs != 1) {
        if (rs == cs) return rows == 1 || cols == 1;
        return rs < cs ? rows * rs <= cs : cols * cs <= rs;
    }
    if (rs == 1 && cs == 1) return rows == 1 || cols == 1;
    return rs == 1 ? cs >= rows : rs >= cols;
}

namespace {

// The kernels every product runs (Note [BLIS kernels]): a context of our own, or null to let
// BLIS choose.
struct Kernels {
    cntx_t* context = nullptr;
    const char* name = nullptr;
    bool avx512 = false;   // AVX-512 kernels: the small path then runs its AVX-512 loop too
    // the context for products BLIS takes whole (Path::blis_sup): `context`, but for 'skx'
    // (Note [Mid-size products])
    cntx_t* whole_context = nullptr;
};

bool cpu_has_avx512() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

bool cpu_has_avx2_fma() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

// BLIS's own choice (its bli_gks context); BLIS is initialised here, once.
const Kernels& blis_kernels() {
    static const Kernels k = [] {
        bli_init();
        const arch_t arch = bli_arch_query_id();
        return Kernels{nullptr, bli_arch_string(arch), arch == BLIS_ARCH_SKX, nullptr};
    }();
    return k;
}

#if defined(WENGERT_BLIS_ALL_KERNELS)
// A context built by the engine from a sub-configuration of BLIS's archive, once.
template <void (*Init)(cntx_t*)> cntx_t* own_context() {
    static cntx_t* const context = [] {
        blis_kernels();
        static cntx_t c;
        Init(&c);
        return &c;
    }();
    return context;
}

// Note [Mid-size products]
// BLIS 0.9's 'skx' context has no small/skinny ("sup") kernels: a product BLIS takes whole
// (between the small path's 2^15 and the packed path's 2^21 multiply-adds, Path::blis_sup)
// went down its conventional path, whose packing of the 32-row panels is a reference loop. Its
// 'haswell' context has them, and they beat both that and the packed path at these sizes: on a
// Zen 4 core, 128x40x400 took 90 us on skx through BLIS, 77 us on the packed path, 50 us on
// haswell's sup kernels (128x20x400: 58, 47, 29 us). So the 'skx' set gives those products to
// the 'haswell' context (every CPU with AVX-512 F/DQ/CD/BW/VL has AVX2 and FMA). One of at least
// kHalvedSupWork multiply-adds (the VAE's 128x20x400 and its backward's, nine a step) runs as two
// BLIS calls, the halves of c's longer side, side by side on two threads or one after the other
// on one: the same two calls at every thread count, so results stay the same (Note [Matmul
// threading]). Below that a product is one call on the calling thread.
template <void (*Init)(cntx_t*)> const Kernels& own_kernels(arch_t arch) {
    static const Kernels k = [arch] {
        cntx_t* context = own_context<Init>();
        cntx_t* whole = arch == BLIS_ARCH_SKX ? own_context<bli_cntx_init_haswell>() : context;
        return Kernels{context, bli_arch_string(arch), arch == BLIS_ARCH_SKX, whole};
    }();
    return k;
}
#endif

// The kernel sets WENGERT_GEMM_KERNELS and kern::set_gemm_kernels name, besides "auto".
constexpr std::string_view kKernelSets[] = {"blis", "skx", "haswell", "generic"};

// The kernel set named `name` (one of kKernelSets, or "auto": Note [BLIS kernels]); throws
// when this build or this CPU cannot run it.
const Kernels& kernels_named(std::string_view name) {
    if (name == "auto") {
#if defined(WENGERT_BLIS_ALL_KERNELS)
        bool blis_knows_cpu = blis_kernels().name != std::string_view("generic");
        name = cpu_has_avx512() ? "skx" : !blis_knows_cpu && cpu_has_avx2_fma() ? "haswell" : "blis";
#else
        name = "blis";
#endif
    }
    if (name == "blis") return blis_kernels();
    if (std::find(std::begin(kKernelSets), std::end(kKernelSets), name) == std::end(kKernelSets)) {
        throw Error(fmt::format("gemm kernels '{}' are not one of auto, {}", name, fmt::join(kKernelSets, ", ")));
    }
#if defined(WENGERT_BLIS_ALL_KERNELS)
    if (name == "skx") {
        if (!cpu_has_avx512()) throw Error("gemm kernels 'skx' need AVX-512 F, DQ, CD, BW and VL, which this CPU lacks");
        return own_kernels<bli_cntx_init_skx>(BLIS_ARCH_SKX);
    }
    if (name == "haswell") {
        if (!cpu_has_avx2_fma()) throw Error("gemm kernels 'haswell' need AVX2 and FMA, which this CPU lacks");
        return own_kernels<bli_cntx_init_haswell>(BLIS_ARCH_HASWELL);
    }
    return own_kernels<bli_cntx_init_generic>(BLIS_ARCH_GENERIC);
#else
    throw Error(fmt::format("gemm kernels '{}' need BLIS's static archive, which this build of libwengert was not linked "
                            "with; only 'blis' is available",
                            name));
#endif
}

// The kernels in use: chosen on first use from WENGERT_GEMM_KERNELS (default auto), changed by
// kern::set_gemm_kernels.
std::atomic<const Kernels*>& current_kernels() {
    static std::atomic<const Kernels*> current{[] {
        const char* env = std::getenv("WENGERT_GEMM_KERNELS");
        std::string_view name = env && *env ? env : "auto";
        try {
            return &kernels_named(name);
        } catch (const Error& e) {
            throw Error(fmt::format("WENGERT_GEMM_KERNELS={}: {}", name, e.what()));
        }
    }()};
    return current;
}

const Kernels& kernels() { return *current_kernels().load(std::memory_order_acquire); }

template <class T>
void blis_gemm(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a,
               std::int64_t cs_a, const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c,
               std::int64_t cs_c) {
    // one BLIS call, as BLIS chooses, small/skinny path included: only for products never split
    // over threads (Note [Matmul threading])
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(1, &rntm);
    // BLIS's typed API takes non-const pointers; it never writes a or b.
    T* pa = const_cast<T*>(a);
    T* pb = const_cast<T*>(b);
    if constexpr (std::is_same_v<T, float>) {
        bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &alpha, pa, rs_a, cs_a, pb, rs_b, cs_b, &beta, c,
                     rs_c, cs_c, kernels().whole_context, &rntm);
    } else {
        bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &alpha, pa, rs_a, cs_a, pb, rs_b, cs_b, &beta, c,
                     rs_c, cs_c, kernels().whole_context, &rntm);
    }
}

// Note [Own gemm loops]
// BLIS 0.9's context has packing kernels for micro-panels of at most 31 rows, and the skx
// microkernel for f32 is 32 x 12: BLIS packed its 32-row panels by one scal2v call per column
// (a tenth of the MLP's and the VAE's training step). Products on the packed path run BLIS's
// microkernel for the kernels in use under loops of our own instead: the blocking of BLIS's
// conventional path (NC columns of c, KC of k, MC rows, from the context), zero-padded
// micro-panels, and a microkernel call per MR x NR block of c, edges included (BLIS 0.9's
// microkernels take the block's m and n). Every element of c is the microkernel's sum over
// KC-sized slices of k, in order, wherever it falls: a split over threads changes no bit
// (Note [Matmul threading]).

// A buffer for packed micro-panels, one per thread and operand, kept between products and
// aligned for the microkernels' vector loads.
template <class T> T* pack_buffer(int which, std::size_t elements) {
    struct Buffer {
        T* data = nullptr;
        std::size_t capacity = 0;
        ~Buffer() { std::free(data); }
    };
    thread_local Buffer buffers[2];
    Buffer& buf = buffers[which];
    if (buf.capacity < elements) {
        std::free(buf.data);
        buf.data = nullptr;
        buf.capacity = 0;
        const std::size_t bytes = (elements * sizeof(T) + 4095) / 4096 * 4096;
        buf.data = static_cast<T*>(std::aligned_alloc(4096, bytes));
        if (!buf.data) throw std::bad_alloc();
        buf.capacity = bytes / sizeof(T);
    }
    return buf.data;
}

// Four elements of T in one vector: 16 bytes of float (an SSE register), 32 of double (AVX).
template <class T> struct Quad {
    typedef T type __attribute__((vector_size(4 * sizeof(T))));
};

// One micro-panel: rows (at most R) rows of the (rows, kc) block at src, element (i, p) at
// src[i * s_dim + p * s_k], stored p-major with leading dimension R, the rows past `rows` zero.
// R is a constant, so the copies unroll; reads run along whichever axis is contiguous. Where
// rows run along k (s_k == 1: a row-major operand read across its rows), 4 x 4 tiles are read
// as four row vectors and transposed in registers by eight shuffles (4-6x faster than element
// by element, which was a tenth of the VAE's step).
template <int R, class T>
[[gnu::always_inline]] inline void pack_panel(const T* src, std::int64_t rows, std::int64_t kc, std::int64_t s_dim,
                                              std::int64_t s_k, T* panel) {
    if (s_dim == 1 && rows == R) {
        for (std::int64_t p = 0; p < kc; ++p) std::memcpy(panel + p * R, src + p * s_k, R * sizeof(T));
        return;
    }
    if (s_k == 1 && rows == R) {
        using V = typename Quad<T>::type;
        std::int64_t p = 0;
        for (; p + 4 <= kc; p += 4) {
#pragma GCC unroll 8
            for (int i = 0; i + 4 <= R; i += 4) {
                V r0, r1, r2, r3;
                std::memcpy(&r0, src + (i + 0) * s_dim + p, sizeof(V));
                std::memcpy(&r1, src + (i + 1) * s_dim + p, sizeof(V));
                std::memcpy(&r2, src + (i + 2) * s_dim + p, sizeof(V));
                std::memcpy(&r3, src + (i + 3) * s_dim + p, sizeof(V));
                // t0 = (r0[0] r1[0] r0[1] r1[1]), t1 = (r0[2] r1[2] r0[3] r1[3]); t2, t3 alike of r2, r3
                const V t0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5), t1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
                const V t2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5), t3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
                // column q of the tile: (r0[q] r1[q] r2[q] r3[q])
                const V c0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5), c1 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
                const V c2 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5), c3 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
                std::memcpy(panel + (p + 0) * R + i, &c0, sizeof(V));
                std::memcpy(panel + (p + 1) * R + i, &c1, sizeof(V));
                std::memcpy(panel + (p + 2) * R + i, &c2, sizeof(V));
                std::memcpy(panel + (p + 3) * R + i, &c3, sizeof(V));
            }
            for (int i = R / 4 * 4; i < R; ++i) {
                for (int q = 0; q < 4; ++q) panel[(p + q) * R + i] = src[i * s_dim + p + q];
            }
        }
        for (; p < kc; ++p) {
            for (int i = 0; i < R; ++i) panel[p * R + i] = src[i * s_dim + p];
        }
        return;
    }
    for (std::int64_t p = 0; p < kc; ++p) {
        T* out = panel + p * R;
        for (std::int64_t i = 0; i < rows; ++i) out[i] = src[i * s_dim + p * s_k];
        for (std::int64_t i = rows; i < R; ++i) out[i] = T(0);
    }
}

// The micro-panels of a (dim, kc) block, `ps` elements apart.
template <int R, class T>
[[gnu::always_inline]] inline void pack_block(const T* src, std::int64_t dim, std::int64_t kc, std::int64_t s_dim,
                                              std::int64_t s_k, std::int64_t ps, T* dst) {
    for (std::int64_t i0 = 0; i0 < dim; i0 += R) {
        pack_panel<R>(src + i0 * s_dim, std::min<std::int64_t>(R, dim - i0), kc, s_dim, s_k, dst + (i0 / R) * ps);
    }
}

// pack_block for the panel heights BLIS's contexts use (skx, haswell, zen3, generic; f32 and
// f64), compiled for AVX-512, AVX2 and the baseline; false for any other height.
template <class T>
[[gnu::always_inline]] inline bool pack_block_any(std::int64_t r, const T* src, std::int64_t dim, std::int64_t kc,
                                                  std::int64_t s_dim, std::int64_t s_k, std::int64_t ps, T* dst) {
    switch (r) {
        case 4: pack_block<4>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 6: pack_block<6>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 8: pack_block<8>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 12: pack_block<12>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 14: pack_block<14>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 16: pack_block<16>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 24: pack_block<24>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        case 32: pack_block<32>(src, dim, kc, s_dim, s_k, ps, dst); return true;
        default: return false;
    }
}
[[gnu::target_clones("avx512f", "avx2", "default")]] bool pack_known(std::int64_t r, const float* src, std::int64_t dim,
                                                                   std::int64_t kc, std::int64_t s_dim, std::int64_t s_k,
                                                                   std::int64_t ps, float* dst) {
    return pack_block_any(r, src, dim, kc, s_dim, s_k, ps, dst);
}
[[gnu::target_clones("avx512f", "avx2", "default")]] bool pack_known(std::int64_t r, const double* src, std::int64_t dim,
                                                                   std::int64_t kc, std::int64_t s_dim, std::int64_t s_k,
                                                                   std::int64_t ps, double* dst) {
    return pack_block_any(r, src, dim, kc, s_dim, s_k, ps, dst);
}

// Micro-panels of height r with leading dimension pr (BLIS's packing dimension, at least r).
template <class T>
void pack_panels(const T* src, std::int64_t dim, std::int64_t kc, std::int64_t s_dim, std::int64_t s_k, std::int64_t r,
                 std::int64_t pr, std::int64_t ps, T* dst) {
    if (pr == r && pack_known(r, src, dim, kc, s_dim, s_k, ps, dst)) return;
    for (std::int64_t i0 = 0; i0 < dim; i0 += r) {
        const std::int64_t rows = std::min(r, dim - i0);
        T* panel = dst + (i0 / r) * ps;
        for (std::int64_t p = 0; p < kc; ++p) {
            for (std::int64_t i = 0; i < pr; ++i) panel[p * pr + i] = i < rows ? src[(i0 + i) * s_dim + p * s_k] : T(0);
        }
    }
}

// Note [Own gemm loops]: c (m, n) = alpha a (m, k) @ b (k, n) + beta c.
template <class T>
void packed_gemm(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
                 const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c) {
    constexpr num_t dt = std::is_same_v<T, float> ? BLIS_FLOAT : BLIS_DOUBLE;
    cntx_t* cntx = kernels().context ? kernels().context : bli_gks_query_cntx();   // k > 0: path_of sends k = 0 to the small path
    // a microkernel that stores c by columns runs a row-stored c as c^T = b^T a^T, as BLIS does
    const bool prefers_cols = bli_cntx_l3_nat_ukr_prefers_cols_dt(dt, BLIS_GEMM_UKR, cntx);
    if (prefers_cols ? (cs_c == 1 && rs_c != 1) : (rs_c == 1 && cs_c != 1)) {
        std::swap(m, n);
        std::swap(a, b);
        std::swap(rs_a, cs_b);
        std::swap(cs_a, rs_b);
        std::swap(rs_c, cs_c);
    }
    using Ukr = void (*)(dim_t, dim_t, dim_t, T*, T*, T*, T*, T*, inc_t, inc_t, auxinfo_t*, cntx_t*);
    const auto ukr = reinterpret_cast<Ukr>(bli_cntx_get_l3_nat_ukr_dt(dt, BLIS_GEMM_UKR, cntx));
    const std::int64_t mr = bli_cntx_get_blksz_def_dt(dt, BLIS_MR, cntx), nr = bli_cntx_get_blksz_def_dt(dt, BLIS_NR, cntx);
    const std::int64_t pmr = bli_cntx_get_blksz_max_dt(dt, BLIS_MR, cntx), pnr = bli_cntx_get_blksz_max_dt(dt, BLIS_NR, cntx);
    const std::int64_t kc_max = bli_cntx_get_blksz_def_dt(dt, BLIS_KC, cntx);
    const std::int64_t mc_max = std::max(mr, bli_cntx_get_blksz_def_dt(dt, BLIS_MC, cntx) / mr * mr);
    const std::int64_t nc_max = std::max(nr, bli_cntx_get_blksz_def_dt(dt, BLIS_NC, cntx) / nr * nr);
    // panel strides rounded up to 64 bytes, so that every panel starts aligned
    constexpr std::int64_t align = 64 / sizeof(T);
    const std::int64_t kc_all = std::min(k, kc_max);
    const std::int64_t ps_a = (pmr * kc_all + align - 1) / align * align, ps_b = (pnr * kc_all + align - 1) / align * align;
    const std::int64_t mc_all = std::min(m, mc_max), nc_all = std::min(n, nc_max);
    T* pa = pack_buffer<T>(0, static_cast<std::size_t>((mc_all + mr - 1) / mr * ps_a));
    T* pb = pack_buffer<T>(1, static_cast<std::size_t>((nc_all + nr - 1) / nr * ps_b));
    auxinfo_t aux{};
    bli_auxinfo_set_is_a(1, &aux);
    bli_auxinfo_set_is_b(1, &aux);
    bli_auxinfo_set_ps_a(ps_a, &aux);
    bli_auxinfo_set_ps_b(ps_b, &aux);
    T one = T(1);
    for (std::int64_t jc = 0; jc < n; jc += nc_max) {
        const std::int64_t nc = std::min(nc_max, n - jc);
        for (std::int64_t pc = 0; pc < k; pc += kc_max) {
            const std::int64_t kc = std::min(kc_max, k - pc);
            T* beta_here = pc == 0 ? &beta : &one;   // later slices of k add to c
            pack_panels(b + pc * rs_b + jc * cs_b, nc, kc, cs_b, rs_b, nr, pnr, ps_b, pb);
            for (std::int64_t ic = 0; ic < m; ic += mc_max) {
                const std::int64_t mc = std::min(mc_max, m - ic);
                pack_panels(a + ic * rs_a + pc * cs_a, mc, kc, rs_a, cs_a, mr, pmr, ps_a, pa);
                // the panels' addresses stepped along (no division per microkernel call)
                T* panel_b = pb;
                for (std::int64_t jr = 0; jr < nc; jr += nr, panel_b += ps_b) {
                    T* panel_a = pa;
                    for (std::int64_t ir = 0; ir < mc; ir += mr, panel_a += ps_a) {
                        const bool last_a = ir + mr >= mc;
                        bli_auxinfo_set_next_a(last_a ? pa : panel_a + ps_a, &aux);
                        bli_auxinfo_set_next_b(last_a && jr + nr < nc ? panel_b + ps_b : panel_b, &aux);
                        ukr(std::min(mr, mc - ir), std::min(nr, nc - jr), kc, &alpha, panel_a, panel_b, beta_here,
                            c + (ic + ir) * rs_c + (jc + jr) * cs_c, rs_c, cs_c, &aux, cntx);
                    }
                }
            }
        }
    }
}

// The loop of Note [Small products] (gemm.hpp): c (m, n) = alpha a (m, k) @ b (k, n) + beta c
// without BLIS. Columns of c are taken kSmallCols at a time: that block of b is copied into a
// (k, kSmallCols) buffer padded with zeros (a row at a time where b's rows are contiguous), and
// each group of rows of c sums over p = 0 .. k-1 in order, a row's element of a times the
// buffer's row, in registers. The sums are vectors of VB bytes, a row of the block
// kSmallCols / lanes of them: 32-byte vectors (one AVX2 register) in the AVX2 and baseline
// clones, groups of 8 of them; 64-byte vectors in the function compiled for AVX-512 (its 32
// registers hold 16 rows of a float block). (A 64-byte vector as GCC lowers it for AVX2 kept the
// sums in memory.) Neither the vector width nor the group changes any element's sum: each is
// the same multiplies and adds, in the same order, lane by lane.
constexpr int kSmallCols = 16;

template <int VB, class T> struct SmallVecOf {
    typedef T type __attribute__((vector_size(VB)));
};
template <int VB, class T> using SmallVec = typename SmallVecOf<VB, T>::type;
template <int VB, class T> constexpr int kLanes = static_cast<int>(VB / sizeof(T));
template <int VB, class T> constexpr int kParts = kSmallCols / kLanes<VB, T>;

template <int Rows, int VB, class T>
[[gnu::always_inline]] inline void small_rows(std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
                                              const T* __restrict packed, std::int64_t cols, T beta, T* c, std::int64_t rs_c,
                                              std::int64_t cs_c) {
    using Vec = SmallVec<VB, T>;
    constexpr int lanes = kLanes<VB, T>, parts = kParts<VB, T>;
    // zeroed register by register: `= {}` became a `rep stos` of the whole array, slow to start
    Vec acc[Rows][parts];
#pragma GCC unroll 16
    for (int r = 0; r < Rows; ++r) {
#pragma GCC unroll 4
        for (int q = 0; q < parts; ++q) acc[r][q] = Vec{};
    }
    for (std::int64_t p = 0; p < k; ++p) {
        Vec bp[parts];
#pragma GCC unroll 4
        for (int q = 0; q < parts; ++q) std::memcpy(&bp[q], packed + p * kSmallCols + q * lanes, sizeof(Vec));
#pragma GCC unroll 16
        for (int r = 0; r < Rows; ++r) {
            const T ar = a[r * rs_a + p * cs_a];
#pragma GCC unroll 4
            for (int q = 0; q < parts; ++q) acc[r][q] += ar * bp[q];
        }
    }
    for (int r = 0; r < Rows; ++r) {
        T* out = c + r * rs_c;
        if (cs_c == 1 && cols == kSmallCols) {
            // a whole contiguous row of the block: vector stores (beta 0 never reads c)
            for (int q = 0; q < parts; ++q) {
                Vec row = alpha * acc[r][q];
                if (beta != T(0)) {
                    Vec old;
                    std::memcpy(&old, out + q * lanes, sizeof old);
                    row += beta * old;
                }
                std::memcpy(out + q * lanes, &row, sizeof row);
            }
            continue;
        }
        T sums[kSmallCols];   // every element written below: no zeroing (a `rep stos` per row)
        for (int q = 0; q < parts; ++q) std::memcpy(sums + q * lanes, &acc[r][q], sizeof(Vec));
        for (std::int64_t j = 0; j < cols; ++j) {
            out[j * cs_c] = beta == T(0) ? alpha * sums[j] : alpha * sums[j] + beta * out[j * cs_c];
        }
    }
}

template <int VB, class T>
[[gnu::always_inline]] inline void small_gemm_body(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                                                   std::int64_t rs_a, std::int64_t cs_a, const T* b, std::int64_t rs_b,
                                                   std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c) {
    thread_local std::vector<T> packed;   // reused: attention makes thousands of these per step
    packed.resize(static_cast<std::size_t>(k * kSmallCols));
    // rows of c whose sums fill 8 registers of 32 bytes, or 16 of 64
    constexpr int group = (VB == 64 ? 16 : 8) / kParts<VB, T>;
    for (std::int64_t j0 = 0; j0 < n; j0 += kSmallCols) {
        const std::int64_t cols = std::min<std::int64_t>(kSmallCols, n - j0);
        // A whole contiguous row of the block is copied at a constant size, which GCC does in
        // vector moves; a copy of variable size became a `rep movsq`, whose start-up cost on
        // AMD Zen made these copies a third of the small path's time in attention's 16 x 16
        // products.
        T* const rows_out = packed.data();
        if (cs_b == 1 && cols == kSmallCols) {
            for (std::int64_t p = 0; p < k; ++p) std::memcpy(rows_out + p * kSmallCols, b + p * rs_b + j0, kSmallCols * sizeof(T));
        } else {
            for (std::int64_t p = 0; p < k; ++p) {
                T* row = rows_out + p * kSmallCols;
                for (std::int64_t j = 0; j < cols; ++j) row[j] = b[p * rs_b + (j0 + j) * cs_b];
                for (std::int64_t j = cols; j < kSmallCols; ++j) row[j] = T(0);
            }
        }
        // No lambda here: its body would be a function of its own, compiled for the baseline
        // (SSE2) rather than for the clone's target, with the sums spilled to memory (10x slower).
        std::int64_t i = 0;
        for (; i + group <= m; i += group) {
            small_rows<group, VB>(k, alpha, a + i * rs_a, rs_a, cs_a, packed.data(), cols, beta, c + i * rs_c + j0 * cs_c, rs_c, cs_c);
        }
        for (; i < m; ++i) {
            small_rows<1, VB>(k, alpha, a + i * rs_a, rs_a, cs_a, packed.data(), cols, beta, c + i * rs_c + j0 * cs_c, rs_c, cs_c);
        }
    }
}

// 32-byte vectors compiled for AVX2 and the baseline, picked by the CPU at load time; 64-byte
// ones compiled for AVX-512, taken with the AVX-512 kernel set (small_product), so that
// WENGERT_GEMM_KERNELS and the tests' loop over kernel sets run both on one machine. None of
// these targets enables FMA, so each multiply and add is rounded the same way on every CPU.
#define WG_SMALL_GEMM(attributes, name, vb, T)                                                                                \
    attributes void name(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a,            \
                         std::int64_t cs_a, const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, \
                         std::int64_t cs_c) {                                                                                 \
        small_gemm_body<vb>(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);                               \
    }
WG_SMALL_GEMM([[gnu::target_clones("avx2", "default")]], small_gemm, 32, float)
WG_SMALL_GEMM([[gnu::target_clones("avx2", "default")]], small_gemm, 32, double)
WG_SMALL_GEMM([[gnu::target("avx512f")]], small_gemm_avx512, 64, float)
WG_SMALL_GEMM([[gnu::target("avx512f")]], small_gemm_avx512, 64, double)
#undef WG_SMALL_GEMM

template <class T>
void small_product(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
                   const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c) {
    if (kernels().avx512) {
        small_gemm_avx512(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
    } else {
        small_gemm(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
    }
}

// Which code path a product runs, chosen on the whole product's shape so that every block of a
// split product runs the path the unsplit product would (Note [Matmul threading]).
enum class Path {
    small,              // Note [Small products]
    blis_sup,           // BLIS as it chooses, small/skinny path included: never split
    packed,             // Note [Own gemm loops]: BLIS's microkernel under our loops: may be split over threads
};

Path path_of(std::int64_t m, std::int64_t n, std::int64_t k) {
    if (m * n * k <= kSmallGemmWork || m <= kSmallSide || n <= kSmallSide) return Path::small;
    return m * n * k < kThreadedGemmWork ? Path::blis_sup : Path::packed;
}

// One thread's product, on the path chosen for the whole product: BLIS, or the small path, run
// as c^T = b^T a^T when that costs less (c with few rows and more columns than a block: its few
// rows become the columns the small path blocks, unless that means gathering a strided
// operand). The small path's sums do not depend on the orientation or the block: each element
// is a sum over k, in order, of a products computed lane by lane.
template <class T>
void gemm_one_thread(Path path, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a,
                     std::int64_t cs_a, const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c,
                     std::int64_t cs_c) {
    // The small path pads c's columns to blocks of kSmallCols and copies b's block of them:
    // take the orientation that costs less, counting a multiply-add per padded element of c
    // per k, and a copy of b's block whose rows are strided (a gather) as kGatherCost of them
    // (a contiguous row is a vector copy). On the MLP's 128x10x256 (c = h W, W's rows
    // contiguous) c^T = W^T h^T pads nothing but gathers h^T: 28 us against 12 us on Zen 3.
    constexpr std::int64_t kGatherCost = 24;
    auto padded = [](std::int64_t x) { return (x + kSmallCols - 1) / kSmallCols * kSmallCols; };
    auto small_cost = [&](std::int64_t rows, std::int64_t cols, std::int64_t cs_of_b) {
        return rows * padded(cols) * k + (cs_of_b == 1 ? 1 : kGatherCost) * padded(cols) * k;
    };
    if (path == Path::packed) {
        packed_gemm(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
    } else if (path == Path::blis_sup) {
        blis_gemm(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
    } else if (small_cost(m, n, cs_b) <= small_cost(n, m, rs_a)) {
        small_product(m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
    } else {
        small_product(n, m, k, alpha, b, cs_b, rs_b, a, cs_a, rs_a, beta, c, cs_c, rs_c);
    }
}

}  // namespace

template <class T>
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
          const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c,
          int threads) {
    if (m == 0 || n == 0) return;
    settle_unit_strides(m, k, rs_a, cs_a);
    settle_unit_strides(k, n, rs_b, cs_b);
    settle_unit_strides(m, n, rs_c, cs_c);
    // Note [Small products]: a tiny product runs on the small path whole, on this thread; a
    // larger one with a side of at most kSmallSide takes it block by block. The blocks (Note
    // [Matmul threading]): rows of C, or columns when C is wide, one single-threaded product
    // each; a product of at least kThreadedGemmWork one block per thread, a mid-size one on
    // BLIS's sup path two at every thread count (Note [Mid-size products]), any other one.
    const Path path = path_of(m, n, k);
    const bool halved = path == Path::blis_sup && m * n * k >= kHalvedSupWork;
    if (!halved && (threads <= 1 || m * n * k < kThreadedGemmWork)) {
        gemm_one_thread(path, m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
        return;
    }
    const bool by_rows = m >= n;
    const std::int64_t extent = by_rows ? m : n;
    const std::int64_t blocks = halved ? 2 : std::min<std::int64_t>(threads, extent);
    auto block = [&](std::int64_t i) {
        const std::int64_t lo = extent * i / blocks, hi = extent * (i + 1) / blocks;
        if (by_rows) {
            gemm_one_thread(path, hi - lo, n, k, alpha, a + lo * rs_a, rs_a, cs_a, b, rs_b, cs_b, beta, c + lo * rs_c, rs_c, cs_c);
        } else {
            gemm_one_thread(path, m, hi - lo, k, alpha, a, rs_a, cs_a, b + lo * cs_b, rs_b, cs_b, beta, c + lo * cs_c, rs_c, cs_c);
        }
    };
    if (threads <= 1) {
        for (std::int64_t i = 0; i < blocks; ++i) block(i);
    } else {
        tbb::parallel_for(std::int64_t{0}, blocks, block);
    }
}

template <class T>
void gemm_unsplit(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
                  const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c) {
    if (m == 0 || n == 0) return;
    settle_unit_strides(m, k, rs_a, cs_a);
    settle_unit_strides(k, n, rs_b, cs_b);
    settle_unit_strides(m, n, rs_c, cs_c);
    const Path path = path_of(m, n, k) == Path::small ? Path::small : Path::blis_sup;
    gemm_one_thread(path, m, n, k, alpha, a, rs_a, cs_a, b, rs_b, cs_b, beta, c, rs_c, cs_c);
}

template void gemm_unsplit<float>(std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t, std::int64_t,
                                  const float*, std::int64_t, std::int64_t, float, float*, std::int64_t, std::int64_t);
template void gemm_unsplit<double>(std::int64_t, std::int64_t, std::int64_t, double, const double*, std::int64_t, std::int64_t,
                                   const double*, std::int64_t, std::int64_t, double, double*, std::int64_t, std::int64_t);

template void gemm<float>(std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t, std::int64_t,
                          const float*, std::int64_t, std::int64_t, float, float*, std::int64_t, std::int64_t, int);
template void gemm<double>(std::int64_t, std::int64_t, std::int64_t, double, const double*, std::int64_t, std::int64_t,
                           const double*, std::int64_t, std::int64_t, double, double*, std::int64_t, std::int64_t, int);

void blis_reference_sgemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t rs_a,
                          std::int64_t cs_a, const float* b, std::int64_t rs_b, std::int64_t cs_b, float* c,
                          std::int64_t rs_c, std::int64_t cs_c, int threads) {
    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads(threads, &rntm);
    float one = 1.0f, zero = 0.0f;
    bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one, const_cast<float*>(a), rs_a, cs_a,
                 const_cast<float*>(b), rs_b, cs_b, &zero, c, rs_c, cs_c, kernels().context, &rntm);
}

namespace {

// Whether a batch axis stepping by `step` continues a matrix axis of `extent` and `stride`.
bool continues(std::int64_t extent, std::int64_t stride, std::int64_t step) {
    return step != 0 && (extent == 1 || step == extent * stride);
}

// Folds `axis` into m, n or k when the strides allow; false when it stays a loop.
bool fold(GemmPlan& p, const BatchAxis& axis) {
    std::int64_t e = axis.extent;
    if (axis.b == 0 && axis.c != 0 && continues(p.m, p.rs_a, axis.a) && continues(p.m, p.rs_c, axis.c)) {
        std::int64_t rs_a = p.m == 1 ? axis.a : p.rs_a, rs_c = p.m == 1 ? axis.c : p.rs_c;
        if (!blis_accepts_strides(p.m * e, p.k, rs_a, p.cs_a) || !blis_accepts_strides(p.m * e, p.n, rs_c, p.cs_c)) return false;
        p.m *= e;
        p.rs_a = rs_a;
        p.rs_c = rs_c;
        return true;
    }
    if (axis.a == 0 && axis.c != 0 && continues(p.n, p.cs_b, axis.b) && continues(p.n, p.cs_c, axis.c)) {
        std::int64_t cs_b = p.n == 1 ? axis.b : p.cs_b, cs_c = p.n == 1 ? axis.c : p.cs_c;
        if (!blis_accepts_strides(p.k, p.n * e, p.rs_b, cs_b) || !blis_accepts_strides(p.m, p.n * e, p.rs_c, cs_c)) return false;
        p.n *= e;
        p.cs_b = cs_b;
        p.cs_c = cs_c;
        return true;
    }
    if (axis.c == 0 && continues(p.k, p.cs_a, axis.a) && continues(p.k, p.rs_b, axis.b)) {
        std::int64_t cs_a = p.k == 1 ? axis.a : p.cs_a, rs_b = p.k == 1 ? axis.b : p.rs_b;
        if (!blis_accepts_strides(p.m, p.k * e, p.rs_a, cs_a) || !blis_accepts_strides(p.k * e, p.n, rs_b, p.cs_b)) return false;
        p.k *= e;
        p.cs_a = cs_a;
        p.rs_b = rs_b;
        return true;
    }
    return false;
}

struct Offsets {
    std::int64_t a = 0, b = 0, c = 0;
};

// The element offsets of batch index `index` (row-major over `axes`).
Offsets offsets_of(const std::vector<BatchAxis>& axes, std::int64_t index) {
    Offsets o;
    for (auto it = axes.rbegin(); it != axes.rend(); ++it) {
        std::int64_t i = index % it->extent;
        index /= it->extent;
        o.a += i * it->a;
        o.b += i * it->b;
        o.c += i * it->c;
    }
    return o;
}

std::int64_t count_of(const std::vector<BatchAxis>& axes) {
    std::int64_t n = 1;
    for (const auto& axis : axes) n *= axis.extent;
    return n;
}

template <class T> void run(const GemmPlan& p, const T* a, const T* b, T* c, T alpha, T beta) {
    std::int64_t n_outer = count_of(p.outer), n_summed = count_of(p.summed);
    std::int64_t work = p.m * p.n * p.k;
    auto product = [&](std::int64_t i, int threads) {
        Offsets o = offsets_of(p.outer, i);
        for (std::int64_t r = 0; r < n_summed; ++r) {
            Offsets s = offsets_of(p.summed, r);
            gemm<T>(p.m, p.n, p.k, alpha, a + o.a + s.a, p.rs_a, p.cs_a, b + o.b + s.b, p.rs_b, p.cs_b,
                    r == 0 ? beta : T(1), c + o.c, p.rs_c, p.cs_c, threads);
        }
    };
    // Note [Matmul threading]
    // (the bar is kHalvedSupWork, where a mid-size product's two halves may share threads;
    // gemm runs smaller work and the small path on one thread whatever it is given)
    int threads = max_threads();
    if (threads == 1 || work * n_outer * n_summed < kHalvedSupWork) {
        for (std::int64_t i = 0; i < n_outer; ++i) product(i, 1);
    } else if (n_outer >= threads) {
        tbb::parallel_for(std::int64_t{0}, n_outer, [&](std::int64_t i) { product(i, 1); });
    } else {
        for (std::int64_t i = 0; i < n_outer; ++i) product(i, work >= kHalvedSupWork ? threads : 1);
    }
}

bool matrix_accepted(const Tensor& t) {
    int r = t.ndim();
    return blis_accepts_strides(t.shape()[r - 2], t.shape()[r - 1], t.strides()[r - 2], t.strides()[r - 1]);
}

// The operand itself, or (Note [Strided gemm]) a dense copy when BLIS refuses its strides.
// Broadcast batch axes are narrowed to extent 1 first, so the copy does not expand them.
Tensor blis_operand(const Tensor& t) {
    if (matrix_accepted(t)) return t;
    Tensor narrow = t;
    for (int i = 0; i + 2 < t.ndim(); ++i) {
        if (t.strides()[i] == 0) narrow = narrow.slice(i, 0, 1);
    }
    return narrow.contiguous();
}

// Extent and stride of operand `t` on batch axis `i` of `n_batch`, aligned from the right;
// stride 0 where the operand has extent 1 there (broadcast or summed).
std::pair<std::int64_t, std::int64_t> batch_axis_of(const Tensor& t, int i, int n_batch) {
    int j = i - (n_batch - (t.ndim() - 2));
    if (j < 0 || t.shape()[j] == 1) return {1, 0};
    return {t.shape()[j], t.strides()[j]};
}

std::string operands_str(const Tensor& a, const Tensor& b, const Tensor& c) {
    return fmt::format("a {} x b {} -> c {}", a.shape().str(), b.shape().str(), c.shape().str());
}

// The batch axes of extent > 1 with each operand's stride; `shown` are the operands as the
// caller gave them, for errors.
std::vector<BatchAxis> batch_axes(const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& shown_a,
                                  const Tensor& shown_b) {
    int n_batch = std::max({a.ndim(), b.ndim(), c.ndim()}) - 2;
    std::vector<BatchAxis> axes;
    for (int i = 0; i < n_batch; ++i) {
        auto [ea, sa] = batch_axis_of(a, i, n_batch);
        auto [eb, sb] = batch_axis_of(b, i, n_batch);
        auto [ec, sc] = batch_axis_of(c, i, n_batch);
        std::int64_t e = std::max({ea, eb, ec});
        if ((ea != 1 && ea != e) || (eb != 1 && eb != e) || (ec != 1 && ec != e)) {
            throw ShapeError("gemm", "batch axes do not broadcast: " + operands_str(shown_a, shown_b, c));
        }
        if (e != 1) axes.push_back({e, sa, sb, sc});
    }
    return axes;
}

void check_operands(const Tensor& a, const Tensor& b, const Tensor& c) {
    if (a.ndim() < 2 || b.ndim() < 2 || c.ndim() < 2) {
        throw ShapeError("gemm", "operands need at least two axes: " + operands_str(a, b, c));
    }
    if (a.dtype() != c.dtype() || b.dtype() != c.dtype()) {
        throw ShapeError("gemm", fmt::format("dtypes differ: {} {}, {} {}, {} {}", dtype_name(a.dtype()), a.shape().str(),
                                             dtype_name(b.dtype()), b.shape().str(), dtype_name(c.dtype()), c.shape().str()));
    }
    if (a.size(-2) != c.size(-2) || b.size(-2) != a.size(-1) || b.size(-1) != c.size(-1)) {
        throw ShapeError("gemm", "matrix axes do not fit: " + operands_str(a, b, c));
    }
    for (int i = 0; i < c.ndim(); ++i) {
        if (c.shape()[i] > 1 && c.strides()[i] == 0 && c.numel() > 0) {
            throw ShapeError("gemm", "the output is a broadcast view: " + operands_str(a, b, c));
        }
    }
    batch_axes(a, b, c, a, b);
}

}  // namespace

std::int64_t GemmPlan::calls() const { return count_of(outer) * count_of(summed); }

GemmPlan plan_gemm(const Tensor& a_in, const Tensor& b_in, const Tensor& c) {
    check_operands(a_in, b_in, c);
    Tensor a = blis_operand(a_in), b = blis_operand(b_in);
    std::vector<BatchAxis> axes = batch_axes(a, b, c, a_in, b_in);
    int ra = a.ndim(), rb = b.ndim(), rc = c.ndim();
    GemmPlan plan{a, b, c.size(-2), c.size(-1), a.size(-1),
                  a.strides()[ra - 2], a.strides()[ra - 1], b.strides()[rb - 2], b.strides()[rb - 1],
                  c.strides()[rc - 2], c.strides()[rc - 1], {}, {}};
    for (bool folded = true; folded;) {
        folded = false;
        for (std::size_t i = axes.size(); i-- > 0;) {
            if (fold(plan, axes[i])) {
                axes.erase(axes.begin() + static_cast<std::ptrdiff_t>(i));
                folded = true;
            }
        }
    }
    for (const auto& axis : axes) (axis.c != 0 ? plan.outer : plan.summed).push_back(axis);
    return plan;
}

void batched_gemm(const Tensor& a, const Tensor& b, Tensor& c, double alpha, double beta) {
    check_operands(a, b, c);
    if (c.numel() == 0) return;
    if (!matrix_accepted(c)) {
        Tensor dense = beta == 0.0 ? Tensor::empty(c.shape(), c.dtype()) : c.clone();
        batched_gemm(a, b, dense, alpha, beta);
        c.copy_from(dense);
        return;
    }
    if (a.size(-1) == 0) {
        if (beta == 0.0) c.fill(0.0);
        else kern::scale_(c, beta);
        return;
    }
    GemmPlan plan = plan_gemm(a, b, c);
    dispatch_float(c.dtype(), "gemm", [&](auto tag) {
        using T = decltype(tag);
        run<T>(plan, plan.a.data<T>(), plan.b.data<T>(), c.data<T>(), static_cast<T>(alpha), static_cast<T>(beta));
    });
    c.bump_version();
}

}  // namespace wengert::detail

namespace wengert::kern {

const char* gemm_kernels() { return detail::kernels().name; }

const char* blis_kernels() { return detail::blis_kernels().name; }

const char* blis_version() {
    detail::blis_kernels();
    return bli_info_get_version_str();
}

const char* cpu_vector_isa() {
    if (detail::cpu_has_avx512()) return "AVX-512 (F, DQ, CD, BW, VL)";
    if (detail::cpu_has_avx2_fma()) return "AVX2 + FMA";
    return "neither AVX-512 nor AVX2 + FMA";
}

std::vector<std::string> gemm_kernel_sets() {
    std::vector<std::string> sets;
    for (std::string_view name : detail::kKernelSets) {
        try {
            detail::kernels_named(name);
            sets.emplace_back(name);
        } catch (const Error&) {
        }
    }
    return sets;
}

void set_gemm_kernels(std::string_view name) {
    detail::current_kernels().store(&detail::kernels_named(name), std::memory_order_release);
}

}  // namespace wengert::kern
