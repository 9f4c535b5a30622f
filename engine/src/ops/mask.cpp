// Band masks on the last two axes: band_part, tril, triu. Square or not; leading axes batch.
//
// Note [Diagonal offsets]
// Each op keeps the elements (m, n) of the last two axes whose diagonal offset d = n - m lies
// in [lowest, highest], either bound optional, and zeroes the rest:
//   band_part(lower, upper): lowest = -lower (none if lower < 0), highest = upper (none if upper < 0),
//     which is SPEC.md section 3's rule: (lower < 0 or m - n <= lower) and (upper < 0 or n - m <= upper);
//   tril(k): highest = k (NumPy: keeps j <= i + k);
//   triu(k): lowest = k (NumPy: keeps j >= i + k).
// The kept elements are selected, not multiplied by a 0/1 mask, so an infinite value outside
// the band still becomes 0. Backward applies the same band to the gradient.
#include <fmt/format.h>

#include <optional>

#include "../kernels/elementwise.hpp"
#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_all;
using detail::map2;

namespace {

struct Band {
    std::optional<std::int64_t> lowest, highest;
    bool keeps(std::int64_t m, std::int64_t n) const {
        std::int64_t d = n - m;
        return (!lowest || d >= *lowest) && (!highest || d <= *highest);
    }
};

// x (..., M, N) -> (..., M, N), zero outside the band
Tensor apply_band(const Tensor& x, const Band& band, const char* op) {
    std::int64_t rows = x.size(-2), cols = x.size(-1);
    return dispatch_all(x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        Tensor keep = Tensor::empty(Shape{rows, cols}, x.dtype());
        T* k = keep.data<T>();
        for (std::int64_t m = 0; m < rows; ++m) {
            for (std::int64_t n = 0; n < cols; ++n) k[m * cols + n] = band.keeps(m, n) ? T(1) : T(0);
        }
        return map2<T, T>(x, keep, op, [](T v, T kept) { return kept ? v : T(0); });
    });
}

Var band_op(Var x, Band band, const char* op) {
    if (x.ndim() < 2) throw ShapeError(op, fmt::format("expected at least 2 axes, got {}", x.shape().str()));
    Tensor out = apply_band(x.value(), band, op);
    return x.tape()->record(op, std::move(out), {x}, [band, op](BackwardCtx& ctx) {
        // out = x inside the band, 0 outside
        ctx.add(0, apply_band(ctx.grad_out(), band, op));
    });
}

}  // namespace

Var band_part(Var x, std::int64_t lower, std::int64_t upper) {
    Band band;
    if (lower >= 0) band.lowest = -lower;
    if (upper >= 0) band.highest = upper;
    return band_op(x, band, "band_part");
}

Var tril(Var x, std::int64_t k) { return band_op(x, Band{std::nullopt, k}, "tril"); }
Var triu(Var x, std::int64_t k) { return band_op(x, Band{k, std::nullopt}, "triu"); }

void register_mask(Registry& r) {
    r.def("band_part", {arg::tensor("x"), arg::integer("lower"), arg::integer("upper")},
          "keeps lower diagonals below and upper above the main one (negative: all), last two axes", &band_part);
    r.def("tril", {arg::tensor("x"), arg::integer("k", 0)}, "lower triangle: keeps (i, j) with j <= i + k, last two axes", &tril);
    r.def("triu", {arg::tensor("x"), arg::integer("k", 0)}, "upper triangle: keeps (i, j) with j >= i + k, last two axes", &triu);
}

}  // namespace wengert
