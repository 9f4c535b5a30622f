// Where splitting one product over threads pays (Note [Matmul threading] in
// engine/src/kernels/gemm.hpp): f32 products of the 784-256-256-10 MLP step and square ones
// from 2^15 to 2^24 multiply-adds, each timed through matmul on one thread and on
// max_threads() threads, in alternating batches; the speedup is the median of the per-pair
// ratios. The engine splits a product only above kThreadedGemmWork multiply-adds (2^21); below
// it both columns run the same single call and the speedup is 1 by construction, so the
// figure to read is the split's speedup just above the threshold, and whether products just
// below it would have gained.
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

Tensor random_matrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
    Tensor t = Tensor::empty(Shape{rows, cols}, DType::f32);
    Generator(seed).fill_uniform(t, -1.0, 1.0);
    return t;
}

struct Product {
    const char* name;
    std::int64_t m, n, k;
    bool transpose_a, transpose_b;
};

}  // namespace

int main() {
    constexpr int kPairs = 31;
    const int threads = max_threads();
    std::vector<Product> products = {
        {"x @ W1", 128, 256, 784, false, false},    {"h1 @ W2", 128, 256, 256, false, false},
        {"h2 @ W3", 128, 10, 256, false, false},    {"h2^T @ g3", 256, 10, 128, true, false},
        {"g3 @ W3^T", 128, 256, 10, false, true},   {"h1^T @ g2", 256, 256, 128, true, false},
        {"g2 @ W2^T", 128, 256, 256, false, true},  {"x^T @ g1", 784, 256, 128, true, false},
    };
    for (std::int64_t n : {32, 48, 64, 96, 128, 160, 192, 256}) products.push_back({"square", n, n, n, false, false});

    fmt::print("f32 matmul, gemm kernels '{}', 1 thread against {} threads, median of {} pairs\n", kern::gemm_kernels(),
               threads, kPairs);
    fmt::print("{:<10} {:>5} {:>5} {:>5} {:>10} {:>12} {:>12} {:>8}\n", "product", "m", "n", "k", "MACs", "1 thread us",
               fmt::format("{} threads us", threads), "speedup");
    for (const Product& p : products) {
        Tensor a = random_matrix(p.transpose_a ? p.k : p.m, p.transpose_a ? p.m : p.k, 1);
        Tensor b = random_matrix(p.transpose_b ? p.n : p.k, p.transpose_b ? p.k : p.n, 2);
        Tensor av = p.transpose_a ? a.transpose(0, 1) : a, bv = p.transpose_b ? b.transpose(0, 1) : b;
        std::int64_t macs = p.m * p.n * p.k;
        int calls = static_cast<int>(std::clamp<std::int64_t>((std::int64_t{1} << 26) / macs, 4, 2000));
        auto run = [&] {
            Tape tape;
            Var x = tape.input(av), y = tape.input(bv);
            for (int i = 0; i < calls; ++i) matmul(x, y);
        };
        std::vector<double> one, many, ratio;
        for (int pair = 0; pair < kPairs; ++pair) {
            set_num_threads(1);
            double t1 = bench::seconds(run) / calls;
            set_num_threads(threads);
            double tn = bench::seconds(run) / calls;
            one.push_back(t1);
            many.push_back(tn);
            ratio.push_back(t1 / tn);
        }
        fmt::print("{:<10} {:>5} {:>5} {:>5} {:>10} {:>12.1f} {:>12.1f} {:>7.2f}x\n", p.name, p.m, p.n, p.k, macs,
                   bench::median(one) * 1e6, bench::median(many) * 1e6, bench::median(ratio));
    }
}
