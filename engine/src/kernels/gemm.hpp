// Internal: every matrix product in the engine goes through here, to BLIS's typed API.
//
// Note [Strided gemm]
// BLIS takes a row and a column stride for each of A, B and C, so a transposed operand is the
// same memory with its two strides swapped, and a strided view (a slice, a permuted batch)
// goes in as it is. An operand is copied only when BLIS refuses its two matrix strides
// (bli_check_matrix_strides), that is when, after matrix axes of extent 1 are given strides
// BLIS accepts:
//   - a stride is 0 over more than one element (a broadcast view, e.g. the gradient of a sum), or
//   - neither stride is 1 and the larger one is less than the extent times the smaller one,
//     e.g. x[:, ::2] of a 4 x 5 row-major matrix: strides (5, 2) over 3 columns, 3 * 2 > 5.
//     (x[:, ::2] of a 4 x 6 matrix, strides (6, 2), goes in without a copy.)
// The copy is of that operand's own extent (a broadcast batch axis stays unexpanded), once per
// call. The output C is written in place; it must not be a broadcast view.
//
// Batched products broadcast over leading axes as NumPy's matmul does. Before looping, batch
// axes are folded into the product wherever the strides allow, so that fewer, larger gemms run:
//   - an axis over which B is broadcast, along which A and C step by whole row blocks, joins M:
//     (B, T, d) x (d, m) is ONE gemm of (B*T, d) x (d, m);
//   - symmetrically, an axis over which A is broadcast joins N;
//   - an axis summed into C (C has extent 1 there: the gradient of a broadcast operand), along
//     which A and B step by whole column/row blocks, joins K: a dense layer's weight gradient
//     x^T grad_out, (d, B*T) x (B*T, m), is one gemm.
// What remains is a loop over the other axes; summed axes accumulate with beta = 1 in a fixed
// order.
//
// Note [Matmul threading]
// Following Note [Threading] (threading.hpp), BLIS itself always runs single-threaded and TBB
// supplies the parallelism: a batch of at least max_threads() products runs as a
// tbb::parallel_for over the batch; one product (or fewer products than threads) is split into
// max_threads() blocks of rows of C (columns when C is wide), each a single-threaded product
// (BLIS's microkernel under the engine's loops, or the small-path loop) in a TBB task. Work below
// kThreadedGemmWork multiply-adds runs on the calling thread.
// BLIS's own threads spin at barriers: on a loaded two-core machine a descheduled partner
// turned a 0.4 ms training step into 18 ms, so they are never used.
// Results are identical at any thread count by construction, on every kernel set:
//   - no split touches the k loop;
//   - a product's code path is chosen on the whole product's shape (gemm.cpp's path_of), and
//     every block of a split product runs it: the small path; BLIS with its small/skinny
//     ("sup") path allowed, only for products below kThreadedGemmWork, which run as the same
//     calls at every thread count (one call, or from kHalvedSupWork two fixed halves that two
//     threads share: the same two calls at 1 thread and at 64); or, for every
//     product that may be split, the packed path (Note [Own gemm loops] in gemm.cpp): BLIS's
//     microkernel under the engine's own loops, with BLIS's conventional blocking. Its sums
//     do not depend on the block: A and B are packed into zero-padded micro-panels and every
//     element of C is accumulated over KC-sized slices of k, in order, by the same
//     microkernel, wherever the element falls in the block. The sup path does depend on the
//     block (its kernels differ at the edges and between its variants), and BLIS picks sup by
//     each call's own m, n and k, so a split could move a block from one path to the other:
//     with BLIS's 'haswell' or 'zen3' context, 20x30x4000 in one call and as two 15-column
//     calls differ in 33 of 600 elements, 300x250x40 as two 125-column calls in 416; on the
//     conventional path (sup disabled), in none.
// tests/engine/ops/cases_matmul.cpp checks this on every kernel set the CPU can run
// (kern::gemm_kernel_sets).
//
// Note [BLIS kernels]
// BLIS picks its kernels by CPU model, and a BLIS older than the CPU does not recognise it:
// BLIS 0.9.0 (Debian 12) runs AMD Zen 5 on its 'generic' reference kernels, about 33 GFLOP/s
// in f32 where its AVX-512 'skx' kernels run 175-190 GFLOP/s on the same core (the products
// of a 784-256-256-10 MLP step: 4.7 ms against 0.9 ms on one thread), and it calls an
// AVX-512 + AMX Intel Xeon 'haswell' (AVX2 kernels, 115 GFLOP/s at n = 1024 on one thread,
// where 'skx' runs 183). Its override, BLIS_ARCH_TYPE, aborts in 0.9.0, and the shared library
// hides every sub-configuration's context. So where BLIS's static archive is at hand
// (engine/meson.build links it, its symbols kept local to libwengert) the engine builds the
// context itself from what the CPU supports, and passes it to every BLIS call:
//   - AVX-512 F/DQ/CD/BW/VL: 'skx', whatever BLIS detects;
//   - otherwise, a CPU BLIS recognises keeps BLIS's own choice ('haswell', 'zen3', ...: the
//     same AVX2 kernels, with blocksizes BLIS tuned for that CPU);
//   - otherwise AVX2 and FMA: 'haswell';
//   - otherwise BLIS's own ('generic').
// WENGERT_GEMM_KERNELS=auto|blis|skx|haswell|generic forces a set ('blis': BLIS's own choice,
// for comparisons with programs that use the same BLIS, such as PyTorch here: bench/), and
// kern::set_gemm_kernels does the same from code (the tests run every set the CPU can run).
// A set the CPU cannot run is an error, not an illegal instruction. gemm_kernels()
// (wengert/kernels.hpp) names the kernels in use; `wengert --version` and every benchmark
// print it.
#pragma once

#include <cstdint>
#include <vector>

#include "wengert/tensor.hpp"

namespace wengert::detail {

// Multiply-adds up to which a product of any shape skips BLIS, whose fixed cost per call
// (objects, control tree, packing buffers: several microseconds) outweighs the arithmetic;
// attention makes hundreds of these per step, one per batch and head (Note [Small products]).
constexpr std::int64_t kSmallGemmWork = std::int64_t{1} << 15;

// Multiply-adds below which a product (or a batch of them) runs on one thread.
constexpr std::int64_t kThreadedGemmWork = std::int64_t{1} << 21;

// Multiply-adds from which a product BLIS takes whole (below kThreadedGemmWork) runs as two
// calls of half its longer side, at every thread count (Note [Mid-size products] in gemm.cpp).
constexpr std::int64_t kHalvedSupWork = std::int64_t{1} << 19;

// Note [Small products]
// BLIS packs both operands into panels before its kernel runs, which pays for itself over a
// long side and does not when one side is short: a 784-256-256-10 MLP step's three products
// with a side of 10 (128x10x256 and the two in its backward) took 25, 23 and 11 us through
// BLIS's AVX-512 kernels, 59 us for 1M multiply-adds, where the other five run 25M each at
// ~170 GFLOP/s. So a product whose c has at most kSmallSide columns or rows runs on a loop of
// our own (gemm.cpp), as c or as c^T = b^T a^T, whichever pads less of c and gathers less of a
// strided operand (gemm_one_thread's cost): blocks of 16 columns of c, b's block
// copied once into a zero-padded buffer, and 8 rows of c accumulated in vector registers over k
// in order: 8 us each for the two with 10 columns. (A short k, 128x256x10, stays with BLIS: the
// loop writes as much of c and does no better than BLIS's 11 us.) Each element of c is summed
// over k in order whatever the thread split, so results do not depend on the thread count.
constexpr std::int64_t kSmallSide = 16;

// c (m, n) = alpha * a (m, k) @ b (k, n) + beta * c, each matrix given by its row and column
// stride in elements (a transpose swaps them). Strides must be ones BLIS accepts
// (blis_accepts_strides); `threads` is BLIS's thread count for this call. beta = 0 overwrites c.
template <class T>
void gemm(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
          const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c,
          int threads);

// One product on the calling thread, never split: the small path or BLIS as it chooses, its
// small/skinny ("sup") kernels included, whatever the size. For callers that split work into
// blocks of their own whose shapes do not depend on the thread count (conv2d's blocks, Note
// [Blocked im2col]): each block's sums then do not either.
template <class T>
void gemm_unsplit(std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t rs_a, std::int64_t cs_a,
                  const T* b, std::int64_t rs_b, std::int64_t cs_b, T beta, T* c, std::int64_t rs_c, std::int64_t cs_c);

// For bench/gemm.cpp's reference: c = a @ b as one bli_sgemm_ex call on the kernels in use,
// BLIS's own way: `threads` of its own threads and its small/skinny path on.
void blis_reference_sgemm(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t rs_a,
                          std::int64_t cs_a, const float* b, std::int64_t rs_b, std::int64_t cs_b, float* c,
                          std::int64_t rs_c, std::int64_t cs_c, int threads);

// Whether BLIS takes a rows x cols matrix with these strides (its bli_check_matrix_strides).
bool blis_accepts_strides(std::int64_t rows, std::int64_t cols, std::int64_t rs, std::int64_t cs);

// a (..., m, k), b (..., k, n), c (..., m, n), all f32 or all f64, batch axes aligned from the
// right; an operand with extent 1 (or missing) on a batch axis is broadcast over it.
//   c = alpha * (a @ b, summed over the batch axes where c has extent 1) + beta * c
// So c = a @ b is batched_gemm(a, b, c) into a fresh c, and the gradient of a broadcast operand
// is reduced in the same call. Transposes are views (x.transpose(-1, -2)); see Note [Strided
// gemm] and Note [Matmul threading]. Bumps c's version.
void batched_gemm(const Tensor& a, const Tensor& b, Tensor& c, double alpha = 1.0, double beta = 0.0);

// A batch axis left as a loop: its extent and each operand's stride along it (0 where the
// operand is broadcast, or for c, summed).
struct BatchAxis {
    std::int64_t extent, a, b, c;
};

// How batched_gemm runs a product whose c BLIS accepts (Note [Strided gemm]): the operands BLIS
// reads and the gemms left after folding batch axes into m, n and k.
struct GemmPlan {
    Tensor a, b;                       // the given operands, or dense copies BLIS accepts
    std::int64_t m, n, k;
    std::int64_t rs_a, cs_a, rs_b, cs_b, rs_c, cs_c;
    std::vector<BatchAxis> outer;      // each index writes its own slice of c
    std::vector<BatchAxis> summed;     // summed into the same slice of c
    std::int64_t calls() const;        // BLIS calls per batched_gemm
};
GemmPlan plan_gemm(const Tensor& a, const Tensor& b, const Tensor& c);

}  // namespace wengert::detail
