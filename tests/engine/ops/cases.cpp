#include "cases.hpp"

#include <cmath>
#include <cstdlib>

namespace wengert::test {

CaseList& case_list() {
    static CaseList list;
    return list;
}

Tensor random_tensor(const Shape& shape, std::uint64_t seed, double low, double high, DType dtype) {
    Generator gen(seed);
    Tensor t = Tensor::empty(shape, DType::f64);
    gen.fill_uniform(t, low, high);
    return t.to(dtype);
}

Tensor noncontiguous(const Tensor& t) {
    if (t.ndim() < 2) {
        // every other element of a twice-as-long tensor
        Tensor big = Tensor::zeros(Shape{t.numel() * 2}, t.dtype());
        Tensor view = big.slice(0, 0, t.numel() * 2, 2);
        view.copy_from(t.reshape(Shape{t.numel()}));
        return view.reshape(t.shape());
    }
    Tensor transposed = t.transpose(-1, -2).contiguous();
    return transposed.transpose(-1, -2);
}

Tensor spread_tensor(const Shape& shape, std::uint64_t seed, double offset) {
    std::int64_t n = shape.numel();
    Generator gen(seed);
    auto perm = gen.permutation(n);
    std::vector<double> values(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
        double v = static_cast<double>(perm[static_cast<std::size_t>(i)]) - static_cast<double>(n) / 2.0 + 0.5;
        values[static_cast<std::size_t>(i)] = 0.1 * v + offset;
    }
    return Tensor::from(values, shape);
}

void require_close(const Tensor& actual, const std::vector<double>& expected, double tol) {
    auto values = actual.to_doubles();
    REQUIRE(values.size() == expected.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
        INFO("element " << i << ": got " << values[i] << ", expected " << expected[i]);
        if (std::isnan(expected[i])) CHECK(std::isnan(values[i]));
        else if (std::isinf(expected[i])) CHECK(values[i] == expected[i]);
        else CHECK(std::abs(values[i] - expected[i]) <= tol);
    }
}

std::string default_gemm_kernels() {
    const char* env = std::getenv("WENGERT_GEMM_KERNELS");
    return env && *env ? env : "auto";
}

RestoreGemmKernels::~RestoreGemmKernels() { kern::set_gemm_kernels(default_gemm_kernels()); }

}  // namespace wengert::test
