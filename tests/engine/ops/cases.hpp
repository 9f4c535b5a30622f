// Gradient-check and forward cases, one file per op family, collected for the registry sweep
// (test_gradcheck_sweep.cpp): every registered op needs at least one case here.
#pragma once

#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

#include "wengert/gradcheck.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"
#include "wengert/registry.hpp"

namespace wengert::test {

struct GradCase {
    std::string op;
    std::string label;
    std::function<Var(std::span<const Var>)> f;
    std::vector<Tensor> inputs;
    std::vector<bool> needs_grad;   // empty: every floating input
    GradCheckOptions options;
};

// A check for an op with no gradient (comparisons, argmax, creation): Catch assertions inside.
struct ForwardCase {
    std::string op;
    std::string label;
    std::function<void()> check;
};

struct CaseList {
    std::vector<GradCase> grad;
    std::vector<ForwardCase> forward;
    void add_grad(std::string op, std::string label, std::function<Var(std::span<const Var>)> f,
                  std::vector<Tensor> inputs, std::vector<bool> needs_grad = {}, GradCheckOptions options = {}) {
        grad.push_back({std::move(op), std::move(label), std::move(f), std::move(inputs), std::move(needs_grad), options});
    }
    void add_forward(std::string op, std::string label, std::function<void()> check) {
        forward.push_back({std::move(op), std::move(label), std::move(check)});
    }
};

CaseList& case_list();

struct CaseAdder {
    explicit CaseAdder(void (*f)(CaseList&)) { f(case_list()); }
};

#define WG_CASES(ident)                              \
    static void ident(::wengert::test::CaseList&);   \
    static ::wengert::test::CaseAdder ident##_adder(ident); \
    static void ident(::wengert::test::CaseList& cases)

// f64 tensor with values uniform in [low, high), reproducible from `seed`.
Tensor random_tensor(const Shape& shape, std::uint64_t seed, double low = -1.0, double high = 1.0,
                     DType dtype = DType::f64);
// The same values, as a non-contiguous view (built transposed, then transposed back).
Tensor noncontiguous(const Tensor& t);
// Values bounded away from each other and from zero: for max/abs/relu-like kinks.
Tensor spread_tensor(const Shape& shape, std::uint64_t seed, double offset = 0.0);

// The kernel set this process started with (WENGERT_GEMM_KERNELS, else "auto"), to restore
// after a test changes it.
std::string default_gemm_kernels();
// Restores default_gemm_kernels() when it leaves scope, thrown out of or not. Not
// kern::gemm_kernels(): that names the sub-configuration ("zen3" where auto keeps BLIS's own
// choice), which is no name kern::set_gemm_kernels takes.
struct RestoreGemmKernels {
    RestoreGemmKernels() = default;
    RestoreGemmKernels(const RestoreGemmKernels&) = delete;
    RestoreGemmKernels& operator=(const RestoreGemmKernels&) = delete;
    ~RestoreGemmKernels();
};

// Compare element by element, within tolerance; an expected NaN needs a NaN, an expected
// infinity that infinity.
void require_close(const Tensor& actual, const std::vector<double>& expected, double tol = 1e-6);

}  // namespace wengert::test
