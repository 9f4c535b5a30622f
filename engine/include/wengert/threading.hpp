// wengert: one threading policy for the whole engine.
//
// Note [Threading]
// oneTBB is the only thread pool: it runs elementwise and reduction loops over large tensors,
// and splits matrix products into single-threaded BLIS calls (Note [Matmul threading] in
// src/kernels/gemm.hpp). BLIS's own OpenMP threads are never used, so nothing oversubscribes
// the cores and no thread spins at a BLIS barrier. set_num_threads(n) sets TBB's global
// parallelism limit. The default is the machine's core count, or WENGERT_NUM_THREADS.
#pragma once

namespace wengert {

void set_num_threads(int n);
int max_threads();

}  // namespace wengert
