#include "cases.hpp"

#include "../../../engine/src/kernels/gemm.hpp"
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "wengert/kernels.hpp"
#include "wengert/threading.hpp"

namespace wengert::test {

namespace {

// out[..., i, j] = sum_p a[..., i, p] b[..., p, j] in doubles, batch axes broadcast; a and b 2-D or more.
std::vector<double> naive_matmul(const Tensor& a, const Tensor& b) {
    int nb = std::max(a.ndim(), b.ndim()) - 2;
    std::int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
    std::vector<std::int64_t> batch(static_cast<std::size_t>(nb)), ea(batch.size()), eb(batch.size());
    for (int i = 0; i < nb; ++i) {
        int ia = i - (nb - (a.ndim() - 2)), ib = i - (nb - (b.ndim() - 2));
        ea[i] = ia < 0 ? 1 : a.shape()[ia];
        eb[i] = ib < 0 ? 1 : b.shape()[ib];
        batch[i] = std::max(ea[i], eb[i]);
    }
    auto va = a.to_doubles(), vb = b.to_doubles();
    std::int64_t count = 1;
    for (auto e : batch) count *= e;
    std::vector<double> out;
    for (std::int64_t t = 0; t < count; ++t) {
        std::int64_t rem = t, oa = 0, ob = 0, sa = 1, sb = 1;
        for (int i = nb - 1; i >= 0; --i) {
            std::int64_t idx = rem % batch[i];
            rem /= batch[i];
            oa += (ea[i] == 1 ? 0 : idx) * sa;
            ob += (eb[i] == 1 ? 0 : idx) * sb;
            sa *= ea[i];
            sb *= eb[i];
        }
        for (std::int64_t i = 0; i < n; ++i) {
            for (std::int64_t j = 0; j < m; ++j) {
                double s = 0;
                for (std::int64_t p = 0; p < k; ++p) {
                    s += va[static_cast<std::size_t>(oa * n * k + i * k + p)] * vb[static_cast<std::size_t>(ob * k * m + p * m + j)];
                }
                out.push_back(s);
            }
        }
    }
    return out;
}

// Every other column: strides (cols, 2) over (cols + 1) / 2 columns.
Tensor every_other_column(const Tensor& t) { return t.slice(-1, 0, t.size(-1), 2); }

Tensor product(const Tensor& a, const Tensor& b) {
    Tape tape;
    return matmul(tape.input(a), tape.input(b)).value();
}

void check_against_naive(const Tensor& a, const Tensor& b, double tol) {
    Tensor out = product(a, b);
    require_close(out, naive_matmul(a, b), tol);
}

// The value and both gradients of sum(matmul(a, b) * weights), at the current thread count.
std::vector<std::vector<double>> value_and_grads(const Tensor& a, const Tensor& b) {
    Tape tape;
    Var x = tape.leaf(a), y = tape.leaf(b);
    Var out = matmul(x, y);
    Var weights = tape.input(random_tensor(out.shape(), 99, -1.0, 1.0, out.dtype()));
    tape.backward(sum(out * weights));
    return {out.value().to_doubles(), x.grad().to_doubles(), y.grad().to_doubles()};
}

}  // namespace

WG_CASES(matmul_cases) {
    auto mm = [](auto x) { return matmul(x[0], x[1]); };
    cases.add_grad("matmul", "2-D", mm, {random_tensor(Shape{3, 4}, 1), random_tensor(Shape{4, 5}, 2)});
    cases.add_grad("matmul", "batched with broadcast (2,1,3,4) x (5,4,2)", mm,
                   {random_tensor(Shape{2, 1, 3, 4}, 3), random_tensor(Shape{5, 4, 2}, 4)});
    cases.add_grad("matmul", "dense (B,T,d) x (d,m)", mm, {random_tensor(Shape{2, 3, 4}, 5), random_tensor(Shape{4, 5}, 6)});
    cases.add_grad("matmul", "attention (B,H,Lq,d) x (B,H,d,Lk)", mm,
                   {random_tensor(Shape{2, 2, 3, 4}, 7), random_tensor(Shape{2, 2, 4, 5}, 8)});
    cases.add_grad("matmul", "matrix broadcast over b's batch (n,k) x (B,k,m)", mm,
                   {random_tensor(Shape{3, 4}, 9), random_tensor(Shape{2, 4, 5}, 10)});
    cases.add_grad("matmul", "rank-1 x matrix", mm, {random_tensor(Shape{4}, 11), random_tensor(Shape{4, 3}, 12)});
    cases.add_grad("matmul", "matrix x rank-1", mm, {random_tensor(Shape{3, 4}, 13), random_tensor(Shape{4}, 14)});
    cases.add_grad("matmul", "rank-1 x rank-1 (dot)", mm, {random_tensor(Shape{4}, 15), random_tensor(Shape{4}, 16)});
    cases.add_grad("matmul", "batched x rank-1", mm, {random_tensor(Shape{2, 3, 4}, 17), random_tensor(Shape{4}, 18)});
    cases.add_grad("matmul", "rank-1 x batched", mm, {random_tensor(Shape{4}, 19), random_tensor(Shape{2, 4, 3}, 20)});
    cases.add_grad("matmul", "only b needs a gradient", mm, {random_tensor(Shape{3, 4}, 21), random_tensor(Shape{4, 2}, 22)},
                   {false, true});
    cases.add_grad("matmul", "gradient arrives as a broadcast view", [](auto x) { return sum(matmul(x[0], x[1])); },
                   {random_tensor(Shape{2, 3, 4}, 23), random_tensor(Shape{4, 2}, 24)});
    cases.add_grad("matmul", "same value on both sides", [](auto x) { return matmul(x[0], x[0]); },
                   {random_tensor(Shape{3, 3}, 25)});
}

TEST_CASE("matmul matches a naive triple loop in f32 and f64", "[matmul]") {
    for (DType dtype : {DType::f32, DType::f64}) {
        double tol = dtype == DType::f32 ? 1e-4 : 1e-10;
        INFO(dtype_name(dtype));
        auto r = [dtype](Shape s, std::uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, dtype); };
        check_against_naive(r(Shape{7, 5}, 1), r(Shape{5, 9}, 2), tol);
        check_against_naive(r(Shape{2, 1, 3, 4}, 3), r(Shape{5, 4, 2}, 4), tol);
        check_against_naive(r(Shape{3, 6, 8}, 5), r(Shape{8, 4}, 6), tol);
        check_against_naive(r(Shape{6, 8}, 7), r(Shape{3, 8, 4}, 8), tol);
        check_against_naive(r(Shape{2, 3, 5, 8}, 9), r(Shape{2, 3, 8, 5}, 10), tol);
        check_against_naive(r(Shape{97, 130}, 11), r(Shape{130, 75}, 12), tol);
        check_against_naive(r(Shape{2, 4, 96, 40}, 15), r(Shape{2, 4, 40, 96}, 16), tol);
        // transposed views, each side and both
        Tensor at = r(Shape{9, 7}, 17).transpose(0, 1), bt = r(Shape{11, 9}, 18).transpose(0, 1);
        check_against_naive(at, r(Shape{9, 11}, 19), tol);
        check_against_naive(r(Shape{7, 9}, 20), bt, tol);
        check_against_naive(at, bt, tol);
        // a permuted batch: (T, B, d) viewed as (B, T, d)
        check_against_naive(r(Shape{5, 3, 8}, 21).transpose(0, 1), r(Shape{8, 6}, 22), tol);
        // general strides BLIS takes (strides (6, 2)) and ones it refuses (strides (5, 2))
        check_against_naive(every_other_column(r(Shape{4, 6}, 23)), r(Shape{3, 5}, 24), tol);
        check_against_naive(every_other_column(r(Shape{4, 5}, 25)), r(Shape{3, 5}, 26), tol);
        check_against_naive(r(Shape{5, 4}, 27), every_other_column(r(Shape{4, 5}, 28)), tol);
        // broadcast views (stride 0) as operands
        check_against_naive(r(Shape{1, 6}, 29).expand(Shape{4, 6}), r(Shape{6, 3}, 30), tol);
        check_against_naive(r(Shape{4, 6}, 31).unsqueeze(0).expand(Shape{3, 4, 6}), r(Shape{3, 6, 2}, 32), tol);
    }
}

TEST_CASE("products with at most 16 columns or rows of c (Note [Small products]) match a naive loop", "[matmul]") {
    for (DType dtype : {DType::f32, DType::f64}) {
        double tol = dtype == DType::f32 ? 1e-4 : 1e-10;
        INFO(dtype_name(dtype));
        auto r = [dtype](Shape s, std::uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, dtype); };
        check_against_naive(r(Shape{40, 7}, 1), r(Shape{7, 16}, 2), tol);          // 16 columns: whole vector rows
        check_against_naive(r(Shape{17, 30}, 3), r(Shape{30, 10}, 4), tol);        // 8 + 8 + 1 rows, 10 columns
        check_against_naive(r(Shape{33, 3}, 5), r(Shape{3, 1}, 6), tol);           // one column
        check_against_naive(r(Shape{10, 30}, 7), r(Shape{30, 50}, 8), tol);        // 10 rows: run as c^T = b^T a^T
        check_against_naive(r(Shape{300, 20}, 9), r(Shape{20, 12}, 10), tol);
        check_against_naive(r(Shape{20, 300}, 11).transpose(0, 1), r(Shape{12, 20}, 12).transpose(0, 1), tol);
        check_against_naive(r(Shape{3, 9, 6}, 13), r(Shape{6, 40}, 14), tol);      // folded batch, 40 columns, 27 rows
        // c = alpha a @ b + beta c, into a transposed (non-unit column stride) c and a dense one
        for (bool transposed_c : {false, true}) {
            INFO("transposed c: " << transposed_c);
            Tensor a = r(Shape{19, 23}, 15), b = r(Shape{23, 13}, 16), c0 = r(Shape{19, 13}, 17);
            Tensor c = transposed_c ? c0.transpose(0, 1).contiguous().transpose(0, 1) : c0.clone();
            detail::batched_gemm(a, b, c, 0.5, 2.0);
            std::vector<double> ab = naive_matmul(a, b), before = c0.to_doubles(), expected;
            for (std::size_t i = 0; i < ab.size(); ++i) expected.push_back(0.5 * ab[i] + 2.0 * before[i]);
            require_close(c, expected, tol);
        }
    }
}

TEST_CASE("small products round as a scalar loop does, on every CPU: no multiply-add fused", "[matmul]") {
    // Note [Small products]: each element is the sum over k, in order, of rounded products. The
    // path runs a loop compiled for AVX-512 with the AVX-512 kernel set (AVX2 or the baseline
    // with the others), whose FMA instructions would round each multiply-add once (the engine
    // builds with -ffp-contract=off), so on such a CPU this fails when any is fused. Every
    // kernel set the CPU can run, f32 and f64, b contiguous and transposed (two ways of
    // copying its block).
    const RestoreGemmKernels restore;
    for (const std::string& set : kern::gemm_kernel_sets()) {
        kern::set_gemm_kernels(set);
        for (DType dtype : {DType::f32, DType::f64}) {
            for (bool transposed : {false, true}) {
                for (auto [m, n, k] : {std::array<std::int64_t, 3>{40, 16, 7}, {17, 10, 30}, {10, 50, 30}, {128, 10, 256}, {1, 1, 9}}) {
                    INFO("kernels " << set << ", " << dtype_name(dtype) << (transposed ? ", b transposed, " : ", ") << m << "x"
                                    << n << "x" << k);
                    Tensor a = random_tensor(Shape{m, k}, 1, -1.0, 1.0, dtype);
                    Tensor b = transposed ? random_tensor(Shape{n, k}, 2, -1.0, 1.0, dtype).transpose(0, 1)
                                          : random_tensor(Shape{k, n}, 2, -1.0, 1.0, dtype);
                    Tape tape;
                    const std::vector<double> c = matmul(tape.input(a), tape.input(b)).value().to_doubles();
                    const std::vector<double> va = a.to_doubles(), vb = b.contiguous().to_doubles();
                    std::int64_t differing = 0;
                    for (std::int64_t i = 0; i < m; ++i) {
                        for (std::int64_t j = 0; j < n; ++j) {
                            auto sum_in = [&](auto zero) {
                                decltype(zero) sum = 0;
                                for (std::int64_t p = 0; p < k; ++p) {
                                    // rounded on its own
                                    volatile decltype(zero) product = static_cast<decltype(zero)>(va[static_cast<std::size_t>(i * k + p)]) *
                                                                      static_cast<decltype(zero)>(vb[static_cast<std::size_t>(p * n + j)]);
                                    sum += product;
                                }
                                return static_cast<double>(sum);
                            };
                            const double want = dtype == DType::f32 ? sum_in(0.0f) : sum_in(0.0);
                            if (std::bit_cast<std::uint64_t>(want) != std::bit_cast<std::uint64_t>(c[static_cast<std::size_t>(i * n + j)])) {
                                ++differing;
                            }
                        }
                    }
                    CHECK(differing == 0);
                }
            }
        }
    }
}

TEST_CASE("matmul promotes and drops rank-1 operands as NumPy does", "[matmul]") {
    Tape tape;
    Var v = tape.input(Tensor::from(std::vector<double>{1, 2}, Shape{2}));
    Var m = tape.input(Tensor::from(std::vector<double>{1, 2, 3, 4, 5, 6}, Shape{2, 3}));
    Var mt = tape.input(Tensor::from(std::vector<double>{1, 2, 3, 4, 5, 6}, Shape{3, 2}));
    Var batch = tape.input(Tensor::from(std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}, Shape{2, 2, 2}));
    Var dot = matmul(v, v);
    CHECK(dot.ndim() == 0);
    require_close(dot.value(), {5});
    CHECK(matmul(v, m).shape() == Shape{3});
    require_close(matmul(v, m).value(), {9, 12, 15});
    CHECK(matmul(mt, v).shape() == Shape{3});
    require_close(matmul(mt, v).value(), {5, 11, 17});
    CHECK(matmul(batch, v).shape() == Shape{2, 2});
    require_close(matmul(batch, v).value(), {5, 11, 17, 23});
    CHECK(matmul(v, batch).shape() == Shape{2, 2});
    require_close(matmul(v, batch).value(), {7, 10, 19, 22});
}

TEST_CASE("matmul of empty operands", "[matmul]") {
    Tape tape;
    Var a = tape.leaf(Tensor::zeros(Shape{2, 0}, DType::f64));
    Var b = tape.leaf(Tensor::zeros(Shape{0, 3}, DType::f64));
    Var c = matmul(a, b);
    CHECK(c.shape() == Shape{2, 3});
    require_close(c.value(), {0, 0, 0, 0, 0, 0});
    tape.backward(sum(c));
    CHECK(a.grad().shape() == Shape{2, 0});
    CHECK(b.grad().shape() == Shape{0, 3});
    CHECK(matmul(tape.input(Tensor::zeros(Shape{0, 2}, DType::f64)), c).shape() == Shape{0, 3});
}

TEST_CASE("non-contiguous operands give the values and gradients of their contiguous copies", "[matmul]") {
    auto same = [](const Tensor& a, const Tensor& b) {
        auto view = value_and_grads(a, b);
        auto dense = value_and_grads(a.contiguous(), b.contiguous());
        for (std::size_t i = 0; i < view.size(); ++i) {
            REQUIRE(view[i].size() == dense[i].size());
            for (std::size_t j = 0; j < view[i].size(); ++j) CHECK(std::abs(view[i][j] - dense[i][j]) <= 1e-12);
        }
    };
    same(random_tensor(Shape{5, 4}, 1).transpose(0, 1), random_tensor(Shape{6, 5}, 2).transpose(0, 1));
    same(random_tensor(Shape{3, 2, 4}, 3).transpose(0, 1), random_tensor(Shape{2, 5, 4}, 4).transpose(1, 2));
    same(every_other_column(random_tensor(Shape{3, 7}, 5)), random_tensor(Shape{4, 2}, 6));
    same(random_tensor(Shape{3, 4}, 7), every_other_column(random_tensor(Shape{4, 6}, 8)));
}

TEST_CASE("the packed path (Note [Own gemm loops]) matches a naive loop on every kernel set", "[matmul][gemm]") {
    // products of at least 2^21 multiply-adds: edges in m and n (no multiple of any MR or NR),
    // k over several KC slices, transposed operands (each packing order), c accumulated into
    // with beta, f32 and f64
    const RestoreGemmKernels restore;
    for (const std::string& set : kern::gemm_kernel_sets()) {
        kern::set_gemm_kernels(set);
        for (DType dtype : {DType::f32, DType::f64}) {
            INFO("kernels " << set << ", " << dtype_name(dtype));
            const double tol = dtype == DType::f32 ? 2e-3 : 1e-10;
            auto r = [dtype](Shape s, std::uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, dtype); };
            check_against_naive(r(Shape{131, 1100}, 1), r(Shape{1100, 73}, 2), tol);                            // k: 3+ slices
            check_against_naive(r(Shape{700, 97}, 3).transpose(0, 1), r(Shape{700, 181}, 4), tol);              // a^T
            check_against_naive(r(Shape{97, 700}, 5), r(Shape{181, 700}, 6).transpose(0, 1), tol);              // b^T
            check_against_naive(r(Shape{300, 150}, 7).transpose(0, 1), r(Shape{70, 300}, 8).transpose(0, 1), tol);
            Tensor a = r(Shape{150, 333}, 9), b = r(Shape{333, 61}, 10), c0 = r(Shape{150, 61}, 11);
            Tensor c = c0.clone();
            detail::batched_gemm(a, b, c, 0.5, 2.0);
            std::vector<double> ab = naive_matmul(a, b), old = c0.to_doubles(), want;
            for (std::size_t i = 0; i < ab.size(); ++i) want.push_back(0.5 * ab[i] + 2.0 * old[i]);
            require_close(c, want, tol);
        }
    }
}

TEST_CASE("matmul gives identical results at 1 and 2 threads on every kernel set", "[matmul][threads]") {
    int before = max_threads();
    auto r = [](Shape s, std::uint64_t seed) { return random_tensor(s, seed, -1.0, 1.0, DType::f32); };
    std::vector<std::pair<Tensor, Tensor>> problems = {
        {r(Shape{160, 200}, 1), r(Shape{200, 180}, 2)},                  // one big product
        {r(Shape{6, 64, 48}, 3), r(Shape{6, 48, 80}, 4)},                // a batch over TBB
        {r(Shape{4, 50, 64}, 5), r(Shape{64, 70}, 6)},                   // dense, folded into one gemm
        {r(Shape{2, 1, 70, 60}, 7), r(Shape{3, 60, 90}, 8)},             // broadcast batch, summed gradient
        {r(Shape{20, 4000}, 9), r(Shape{4000, 30}, 10)},                 // split into blocks of 15 columns
        {r(Shape{12, 1000}, 11), r(Shape{1000, 200}, 12)},               // 12 rows: the small path, split
        {r(Shape{128, 784}, 13), r(Shape{784, 256}, 14)},                // an MLP layer, batch 128
        {r(Shape{300, 40}, 15), r(Shape{40, 250}, 16)},                  // skinny k: BLIS's sup territory
        {r(Shape{128, 400}, 17), r(Shape{400, 20}, 18)},                 // mid-size (the VAE's): two halves of rows
        {r(Shape{20, 128}, 19), r(Shape{128, 400}, 20)},                 // and of columns
        {r(Shape{20, 1500}, 21), r(Shape{1500, 30}, 22)},                // halves whose sums differ from one call's
        {r(Shape{300, 7}, 23), r(Shape{7, 250}, 24)},                    // mid-size with a short k
    };
    std::vector<std::string> sets = kern::gemm_kernel_sets();
    REQUIRE(!sets.empty());
    for (const std::string& set : sets) {
        kern::set_gemm_kernels(set);
        INFO("kernels " << set << " (" << kern::gemm_kernels() << ")");
        for (std::size_t i = 0; i < problems.size(); ++i) {
            INFO("problem " << i);
            const auto& [a, b] = problems[i];
            set_num_threads(1);
            auto one = value_and_grads(a, b);
            set_num_threads(2);
            auto two = value_and_grads(a, b);
            CHECK(one == two);
            // and the same again: no state carried between runs
            CHECK(value_and_grads(a, b) == two);
        }
    }
    kern::set_gemm_kernels(default_gemm_kernels());
    set_num_threads(before);
}

TEST_CASE("every kernel set computes the same products to rounding", "[matmul][gemm]") {
    std::string before = kern::gemm_kernels();
    Tensor a = random_tensor(Shape{70, 90}, 1, -1.0, 1.0, DType::f32), b = random_tensor(Shape{90, 50}, 2, -1.0, 1.0, DType::f32);
    Tensor a64 = a.to(DType::f64), b64 = b.to(DType::f64);
    for (const std::string& set : kern::gemm_kernel_sets()) {
        kern::set_gemm_kernels(set);
        INFO("kernels " << set);
        Tape tape;
        std::vector<double> c = matmul(tape.input(a), tape.input(b)).value().to_doubles();
        std::vector<double> c64 = matmul(tape.input(a64), tape.input(b64)).value().to_doubles();
        std::vector<double> want = naive_matmul(a64, b64);
        REQUIRE(c.size() == want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            CHECK(std::abs(c[i] - want[i]) <= 1e-4);
            CHECK(std::abs(c64[i] - want[i]) <= 1e-12);
        }
    }
    kern::set_gemm_kernels(default_gemm_kernels());
    CHECK(before == kern::gemm_kernels());
}

TEST_CASE("gemm kernels are chosen from the CPU and refuse what it cannot run", "[matmul][gemm]") {
    std::vector<std::string> sets = kern::gemm_kernel_sets();
    auto has = [&](const char* name) { return std::find(sets.begin(), sets.end(), name) != sets.end(); };
    CHECK(has("blis"));
    kern::set_gemm_kernels("blis");
    CHECK(std::string(kern::gemm_kernels()) == kern::blis_kernels());
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512cd") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (has("generic")) {   // a build with BLIS's archive: the engine may choose for itself
        CHECK(has("skx") == avx512);
        CHECK(has("haswell") == avx2);
        kern::set_gemm_kernels("auto");
        if (avx512) CHECK(std::string(kern::gemm_kernels()) == "skx");
        else if (avx2 && std::string(kern::blis_kernels()) == "generic") CHECK(std::string(kern::gemm_kernels()) == "haswell");
        if (!avx512) {
            CHECK_THROWS_WITH(kern::set_gemm_kernels("skx"),
                              "gemm kernels 'skx' need AVX-512 F, DQ, CD, BW and VL, which this CPU lacks");
        }
    }
    CHECK_THROWS_WITH(kern::set_gemm_kernels("zen9"), "gemm kernels 'zen9' are not one of auto, blis, skx, haswell, generic");
    kern::set_gemm_kernels(default_gemm_kernels());
}

TEST_CASE("matmul errors name both shapes and the rule", "[matmul]") {
    Tape tape;
    auto in = [&](Shape s, DType dtype = DType::f32) { return tape.input(Tensor::zeros(s, dtype)); };
    CHECK_THROWS_WITH(matmul(in(Shape{2, 3}), in(Shape{4, 5})), "matmul: inner dimensions differ: [2, 3] x [4, 5] (3 vs 4)");
    CHECK_THROWS_WITH(matmul(in(Shape{3}), in(Shape{4, 2})), "matmul: inner dimensions differ: [3] x [4, 2] (3 vs 4)");
    CHECK_THROWS_WITH(matmul(in(Shape{2, 3, 4}), in(Shape{3, 4, 2})),
                      "matmul: batch dimensions do not broadcast: [2, 3, 4] x [3, 4, 2] (2 vs 3)");
    CHECK_THROWS_WITH(matmul(in(Shape{}), in(Shape{3})), "matmul: operands need at least one axis: [] x [3]");
    CHECK_THROWS_WITH(matmul(in(Shape{2, 3}), in(Shape{3, 4}, DType::f64)),
                      "matmul: expected two f32 or two f64 operands, got f32 [2, 3] x f64 [3, 4]");
    CHECK_THROWS_WITH(matmul(in(Shape{2, 3}, DType::i64), in(Shape{3, 4}, DType::i64)),
                      "matmul: expected two f32 or two f64 operands, got i64 [2, 3] x i64 [3, 4]");
}

TEST_CASE("gemm folds batch axes into one product where the strides allow", "[matmul][gemm]") {
    using detail::plan_gemm;
    Tensor x = random_tensor(Shape{4, 5, 6}, 1), w = random_tensor(Shape{6, 3}, 2), y = Tensor::empty(Shape{4, 5, 3}, DType::f64);
    auto dense = plan_gemm(x, w, y);
    CHECK(dense.calls() == 1);
    CHECK(dense.m == 20);
    // the weight gradient x^T grad_out: the batch axis is summed inside one gemm's k
    Tensor dw = Tensor::empty(Shape{6, 3}, DType::f64);
    auto weight_grad = plan_gemm(x.transpose(-1, -2), y, dw);
    CHECK(weight_grad.calls() == 1);
    CHECK(weight_grad.k == 20);
    // a matrix broadcast over b's batch joins n only when b's and c's batch steps allow it: here they do not
    Tensor z = Tensor::empty(Shape{4, 2, 3}, DType::f64);
    CHECK(plan_gemm(random_tensor(Shape{2, 6}, 3), random_tensor(Shape{4, 6, 3}, 4), z).calls() == 4);
    // attention: one product per (batch, head)
    Tensor logits = Tensor::empty(Shape{2, 3, 5, 5}, DType::f64);
    CHECK(plan_gemm(random_tensor(Shape{2, 3, 5, 4}, 5), random_tensor(Shape{2, 3, 4, 5}, 6), logits).calls() == 6);
    // (2,1,3,4) x (5,4,2) gradient for a: 2 products, each summing 5
    Tensor da = Tensor::empty(Shape{2, 1, 3, 4}, DType::f64);
    auto broadcast_grad = plan_gemm(random_tensor(Shape{2, 5, 3, 2}, 7), random_tensor(Shape{5, 4, 2}, 8).transpose(-1, -2), da);
    CHECK(broadcast_grad.calls() == 10);
    CHECK(broadcast_grad.summed.size() == 1);
}

TEST_CASE("gemm copies an operand only when BLIS refuses its strides", "[matmul][gemm]") {
    using detail::plan_gemm;
    Tensor c = Tensor::empty(Shape{3, 3}, DType::f64);
    Tensor transposed = random_tensor(Shape{4, 3}, 1).transpose(0, 1);
    CHECK(plan_gemm(transposed, random_tensor(Shape{4, 3}, 2), c).a.storage() == transposed.storage());
    Tensor fits = every_other_column(random_tensor(Shape{3, 8}, 3));        // strides (8, 2), 4 columns
    CHECK(plan_gemm(fits, random_tensor(Shape{4, 3}, 4), c).a.storage() == fits.storage());
    Tensor interleaved = every_other_column(random_tensor(Shape{3, 7}, 5)); // strides (7, 2), 4 columns
    CHECK(plan_gemm(interleaved, random_tensor(Shape{4, 3}, 6), c).a.storage() != interleaved.storage());
    Tensor broadcast = random_tensor(Shape{3, 1}, 7).expand(Shape{3, 4});
    CHECK(plan_gemm(broadcast, random_tensor(Shape{4, 3}, 8), c).a.storage() != broadcast.storage());
    // a broadcast batch axis is not expanded by the copy
    Tensor batch_broadcast = every_other_column(random_tensor(Shape{3, 7}, 9)).unsqueeze(0).expand(Shape{5, 3, 4});
    Tensor cb = Tensor::empty(Shape{5, 3, 3}, DType::f64);
    CHECK(plan_gemm(batch_broadcast, random_tensor(Shape{5, 4, 3}, 10), cb).a.numel() == 12);
}

TEST_CASE("gemm scales, accumulates and writes strided outputs", "[matmul][gemm]") {
    Tensor a = Tensor::from(std::vector<double>{1, 2, 3, 4}, Shape{2, 2});
    Tensor b = Tensor::from(std::vector<double>{5, 6, 7, 8}, Shape{2, 2});
    Tensor c = Tensor::from(std::vector<double>{1, 1, 1, 1}, Shape{2, 2});
    detail::batched_gemm(a, b, c, 2.0, 3.0);     // 2 * [[19, 22], [43, 50]] + 3
    require_close(c, {41, 47, 89, 103});
    // an output BLIS refuses (strides (5, 2) over 3 columns) is computed aside and copied in
    Tensor big = Tensor::zeros(Shape{2, 5}, DType::f64);
    Tensor out = every_other_column(big);
    detail::batched_gemm(a, Tensor::from(std::vector<double>{1, 0, 2, 0, 1, 3}, Shape{2, 3}), out);
    require_close(big, {1, 0, 2, 0, 8, 3, 0, 4, 0, 18});
    // k = 0: the product is zero, so c becomes beta * c
    Tensor empty_a = Tensor::zeros(Shape{2, 0}, DType::f64), empty_b = Tensor::zeros(Shape{0, 2}, DType::f64);
    detail::batched_gemm(empty_a, empty_b, c, 1.0, 0.5);
    require_close(c, {20.5, 23.5, 44.5, 51.5});
    Tensor broadcast_out = Tensor::zeros(Shape{1, 2}, DType::f64).expand(Shape{2, 2});
    CHECK_THROWS_WITH(detail::batched_gemm(a, b, broadcast_out),
                      "gemm: the output is a broadcast view: a [2, 2] x b [2, 2] -> c [2, 2]");
}

}  // namespace wengert::test
