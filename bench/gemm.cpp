// f32 gemm through the engine's matmul (recorded on a tape, forward only, the engine's own
// thread split) beside one bli_sgemm_ex call on the same operands with the same kernels, BLIS's
// own threads and its small/skinny path (detail::blis_reference_sgemm), in the same run, at 1
// thread and at max_threads(): GFLOP/s and their ratio, for square products in three layouts
// and the MLP's and attention's real shapes. The two are timed in alternating batches of about
// 0.5 GFLOP; the ratio is the median of the per-pair ratios, which follows the load of a
// shared machine better than a ratio of medians. The engine's figure includes allocating each
// output, as every op does.
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../engine/src/kernels/gemm.hpp"
#include "bench.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

namespace {

struct Product {
    const char* name;
    std::int64_t m, n, k;
    bool transpose_a, transpose_b;
};

Tensor operand(std::int64_t rows, std::int64_t cols, bool transpose, std::uint64_t seed) {
    Tensor t = Tensor::empty(transpose ? Shape{cols, rows} : Shape{rows, cols}, DType::f32);
    Generator(seed).fill_uniform(t, -1.0, 1.0);
    return transpose ? t.transpose(0, 1) : t;
}

}  // namespace

int main() {
    constexpr int kPairs = 21;
    const int most = max_threads();
    fmt::print("gemm f32: the engine's matmul (its own thread split) against one bli_sgemm_ex call on the same kernels "
               "with BLIS's own threads and sup path; kernels '{}' ({}; BLIS {} detects '{}'), median of {} pairs\n",
               kern::gemm_kernels(), kern::cpu_vector_isa(), kern::blis_version(), kern::blis_kernels(), kPairs);
    std::vector<Product> products;
    for (std::int64_t n : {256, 512, 1024}) {
        products.push_back({"a @ b", n, n, n, false, false});
        products.push_back({"a.T @ b", n, n, n, true, false});
        products.push_back({"a @ b.T", n, n, n, false, true});
    }
    // the MLP step's products that BLIS runs (batch 128, 784-256-256-10) and attention's
    // projections (B 32 x T 128 rows, d 256)
    products.push_back({"mlp x @ W1", 128, 256, 784, false, false});
    products.push_back({"mlp g2 @ W2.T", 128, 256, 256, false, true});
    products.push_back({"mlp x.T @ g1", 784, 256, 128, true, false});
    products.push_back({"attn x @ Wq", 4096, 256, 256, false, false});
    products.push_back({"attn x.T @ g", 256, 256, 4096, true, false});
    // the sort model's (batch 64 x 16 tokens = 1024 rows, d 64, feed-forward 256): the
    // projections and the feed-forward layers, forward, and the weights' gradients
    products.push_back({"sort x @ Wqkv", 1024, 192, 64, false, false});
    products.push_back({"sort x @ Wo", 1024, 64, 64, false, false});
    products.push_back({"sort x @ W1", 1024, 256, 64, false, false});
    products.push_back({"sort h @ W2", 1024, 64, 256, false, false});
    products.push_back({"sort g @ W1.T", 1024, 64, 256, false, true});
    products.push_back({"sort x.T @ g1", 64, 256, 1024, true, false});
    for (int threads : {1, most}) {
        if (threads == 1 && most == 1) continue;
        set_num_threads(threads);
        fmt::print("{} thread{}\n", threads, threads == 1 ? "" : "s");
        fmt::print("{:<16} {:>15} {:>16} {:>17} {:>8}\n", "product", "m x n x k", "engine GFLOP/s", "bli_sgemm GFLOP/s", "ratio");
        for (const Product& p : products) {
            Tensor av = operand(p.m, p.k, p.transpose_a, 1), bv = operand(p.k, p.n, p.transpose_b, 2);
            Tensor c = Tensor::empty(Shape{p.m, p.n}, DType::f32);
            double flops = 2.0 * static_cast<double>(p.m) * static_cast<double>(p.n) * static_cast<double>(p.k);
            int calls = std::max(1, static_cast<int>(5e8 / flops));
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
            auto raw = [&] {
                for (int i = 0; i < calls; ++i) {
                    detail::blis_reference_sgemm(p.m, p.n, p.k, av.data<float>(), av.strides()[0], av.strides()[1],
                                                 bv.data<float>(), bv.strides()[0], bv.strides()[1], c.data<float>(), p.n, 1,
                                                 threads);
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
            fmt::print("{:<16} {:>15} {:>16.1f} {:>17.1f} {:>7.1f}%\n", p.name, fmt::format("{}x{}x{}", p.m, p.n, p.k), g_engine,
                       g_raw, 100.0 * bench::median(ratios));
        }
    }
}
