// f32 gemm through the engine's matmul (recorded on a tape, forward only) beside raw bli_sgemm
// on the same operands in the same run: GFLOP/s and their ratio, for a @ b, a.T @ b, a @ b.T.
// The two are timed in alternating batches of about 0.5 GFLOP; the ratio is the median of the
// per-pair ratios, which follows the load of a shared machine better than a ratio of medians.
// The engine's figure includes allocating each output, as every op does.
#include <blis.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "bench.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

namespace {

Tensor random_matrix(std::int64_t n, std::uint64_t seed) {
    Tensor t = Tensor::empty(Shape{n, n}, DType::f32);
    Generator(seed).fill_uniform(t, -1.0, 1.0);
    return t;
}

struct Layout {
    const char* name;
    bool transpose_a, transpose_b;
};

}  // namespace

int main() {
    constexpr int kPairs = 21;
    fmt::print("gemm f32, {} threads, engine kernels '{}', bli_sgemm's '{}' (Note [BLIS kernels]), median of {} pairs\n",
               max_threads(), kern::gemm_kernels(), bli_arch_string(bli_arch_query_id()), kPairs);
    fmt::print("{:>6}  {:<9} {:>16} {:>16} {:>8}\n", "n", "product", "engine GFLOP/s", "bli_sgemm GFLOP/s", "ratio");
    for (std::int64_t n : {256, 512, 1024}) {
        Tensor a = random_matrix(n, 1), b = random_matrix(n, 2);
        Tensor c = Tensor::empty(Shape{n, n}, DType::f32);
        double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
        int calls = std::max(1, static_cast<int>(5e8 / flops));
        for (Layout layout : {Layout{"a @ b", false, false}, Layout{"a.T @ b", true, false}, Layout{"a @ b.T", false, true}}) {
            Tensor av = layout.transpose_a ? a.transpose(0, 1) : a;
            Tensor bv = layout.transpose_b ? b.transpose(0, 1) : b;
            auto engine = [&] {
                Tape tape;
                Var x = tape.input(av), y = tape.input(bv);
                for (int i = 0; i < calls; ++i) {
                    matmul(x, y);
                    tape.clear();
                    x = tape.input(av);
                    y = tape.input(bv);
                }
            };
            float one = 1.0f, zero = 0.0f;
            auto raw = [&] {
                for (int i = 0; i < calls; ++i) {
                    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, n, n, n, &one, av.data<float>(), av.strides()[0],
                              av.strides()[1], bv.data<float>(), bv.strides()[0], bv.strides()[1], &zero,
                              c.data<float>(), n, 1);
                }
            };
            engine();
            raw();
            std::vector<double> t_engine, t_raw, ratios;
            for (int r = 0; r < kPairs; ++r) {
                double te, tr;
                if (r % 2 == 0) {
                    te = bench::seconds(engine);
                    tr = bench::seconds(raw);
                } else {
                    tr = bench::seconds(raw);
                    te = bench::seconds(engine);
                }
                t_engine.push_back(te);
                t_raw.push_back(tr);
                ratios.push_back(tr / te);
            }
            double g_engine = flops * calls / bench::median(t_engine) * 1e-9;
            double g_raw = flops * calls / bench::median(t_raw) * 1e-9;
            fmt::print("{:>6}  {:<9} {:>16.1f} {:>16.1f} {:>7.1f}%\n", n, layout.name, g_engine, g_raw,
                       100.0 * bench::median(ratios));
        }
    }
}
