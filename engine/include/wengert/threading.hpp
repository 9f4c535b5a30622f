// wengert: one threading policy for the whole engine.
//
// Note [Threading]
// oneTBB runs elementwise and reduction loops over large tensors; BLIS runs matrix products
// with its own threads. The two never nest: a TBB task never calls a multithreaded BLIS
// product (batched products split over TBB call BLIS single-threaded), and BLIS is never
// called from inside a TBB loop with more than one thread. set_num_threads(n) sets both:
// TBB's global parallelism limit and BLIS's thread count. The default is the machine's
// core count, or WENGERT_NUM_THREADS when set.
#pragma once

namespace wengert {

void set_num_threads(int n);
int max_threads();

}  // namespace wengert
