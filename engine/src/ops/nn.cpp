// Layers with their own kernels: dropout and layer norm.
//
// Note [Fused layer norm]
// Per row of x (D features): mu = mean(x), var = mean((x - mu)^2) (biased, as PyTorch),
// rstd = 1 / sqrt(var + eps), xhat = (x - mu) rstd, y = xhat gamma + beta. The forward keeps
// xhat and rstd; the backward needs nothing else:
//     dxhat = dy gamma
//     dx    = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
//     dgamma = sum over rows of dy xhat,  dbeta = sum over rows of dy.
// The composition mean / var / sub / div / mul / add gives the same values and gradients
// (tests/engine/ops/cases_nn.cpp checks both against each other) with six tape nodes and
// five full-size temporaries instead of one node and one.
// Each row's sums (mu, var; the backward's two means) run in double over 8 interleaved partial
// sums (lane_sum, kernels/vmath.hpp), element c into part c % 8, combined in lane order: no
// chain of dependent adds, so the loops vectorise in each clone of the row kernels, and the
// order is fixed by the source, so every clone and every thread count gives the same bits.
#include <fmt/format.h>

#include <cmath>
#include <cstdint>

#include "../kernels/elementwise.hpp"
#include "families.hpp"
#include "../kernels/rows.hpp"
#include "../kernels/vmath.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::for_rows;
using detail::lane_sum;
using detail::map3;

namespace {

// value where mask, else zero, times scale
template <class T> Tensor masked_scale(const Tensor& value, const Tensor& mask, double scale) {
    return map3<T, T, std::uint8_t, T>(value, mask, Tensor::scalar(scale, dtype_of<T>()), "dropout",
                                       [](T v, std::uint8_t m, T s) { return m ? v * s : T(0); });
}

// Rows [lo, hi) of layer norm's forward (Note [Fused layer norm])
template <class T>
[[gnu::always_inline]] inline void ln_forward_rows(const T* px, const T* pg, const T* pb, T* ph, T* pr, T* py,
                                                   std::int64_t lo, std::int64_t hi, std::int64_t D, double eps) {
    for (std::int64_t r = lo; r < hi; ++r) {
        const T* xr = px + r * D;
        const double mu = lane_sum(D, [&](std::int64_t c) { return static_cast<double>(xr[c]); }) / static_cast<double>(D);
        const double var = lane_sum(D, [&](std::int64_t c) {
            const double d = xr[c] - mu;
            return d * d;
        }) / static_cast<double>(D);
        const double rs = 1.0 / std::sqrt(var + eps);
        pr[r] = static_cast<T>(rs);
        T* hr = ph + r * D;
        T* yr = py + r * D;
        for (std::int64_t c = 0; c < D; ++c) {
            const T h = static_cast<T>((xr[c] - mu) * rs);
            hr[c] = h;
            yr[c] = (pg ? h * pg[c] : h) + (pb ? pb[c] : T(0));
        }
    }
}

// Rows [lo, hi) of layer norm's dx: rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
template <class T>
[[gnu::always_inline]] inline void ln_backward_rows(const T* pdy, const T* ph, const T* pr, const T* pg, T* pdx,
                                                    std::int64_t lo, std::int64_t hi, std::int64_t D) {
    for (std::int64_t r = lo; r < hi; ++r) {
        const T* dyr = pdy + r * D;
        const T* hr = ph + r * D;
        auto dh = [&](std::int64_t c) { return static_cast<double>(pg ? dyr[c] * pg[c] : dyr[c]); };
        const double mean_dh = lane_sum(D, dh) / static_cast<double>(D);
        const double mean_dh_h = lane_sum(D, [&](std::int64_t c) { return dh(c) * hr[c]; }) / static_cast<double>(D);
        T* dxr = pdx + r * D;
        for (std::int64_t c = 0; c < D; ++c) dxr[c] = static_cast<T>(pr[r] * (dh(c) - mean_dh - hr[c] * mean_dh_h));
    }
}

// The row kernels compiled for AVX-512, AVX2 and the baseline (no FMA in any: the same bits)
#define WG_LN_CLONES [[gnu::target_clones("avx512f", "avx2", "default")]]
WG_LN_CLONES void ln_forward(const float* px, const float* pg, const float* pb, float* ph, float* pr, float* py,
                             std::int64_t lo, std::int64_t hi, std::int64_t D, double eps) {
    ln_forward_rows(px, pg, pb, ph, pr, py, lo, hi, D, eps);
}
WG_LN_CLONES void ln_forward(const double* px, const double* pg, const double* pb, double* ph, double* pr, double* py,
                             std::int64_t lo, std::int64_t hi, std::int64_t D, double eps) {
    ln_forward_rows(px, pg, pb, ph, pr, py, lo, hi, D, eps);
}
WG_LN_CLONES void ln_backward(const float* pdy, const float* ph, const float* pr, const float* pg, float* pdx,
                              std::int64_t lo, std::int64_t hi, std::int64_t D) {
    ln_backward_rows(pdy, ph, pr, pg, pdx, lo, hi, D);
}
WG_LN_CLONES void ln_backward(const double* pdy, const double* ph, const double* pr, const double* pg, double* pdx,
                              std::int64_t lo, std::int64_t hi, std::int64_t D) {
    ln_backward_rows(pdy, ph, pr, pg, pdx, lo, hi, D);
}
#undef WG_LN_CLONES

}  // namespace

// ---- dropout --------------------------------------------------------------------------------
// x (...) -> (...): each element kept with probability 1 - p and scaled by 1 / (1 - p)
Var dropout(Var x, double p) {
    if (!(p >= 0.0 && p < 1.0)) throw ShapeError("dropout", fmt::format("p must be in [0, 1), got {}", p));
    if (!is_floating(x.dtype())) {
        throw ShapeError("dropout", fmt::format("expected f32 or f64, got {} {}", dtype_name(x.dtype()), x.shape().str()));
    }
    if (current_mode() != Mode::train || p == 0.0) return x;
    Tensor mask = Tensor::empty(x.shape(), DType::u8);
    default_generator().fill_bernoulli(mask, 1.0 - p);
    const double scale = 1.0 / (1.0 - p);
    Tensor out = dispatch_float(x.dtype(), "dropout", [&](auto tag) {
        return masked_scale<decltype(tag)>(x.value(), mask, scale);
    });
    return tape_of(x).record("dropout", std::move(out), {x}, [mask, scale](BackwardCtx& ctx) {
        // out = x mask / (1 - p);  dx = grad_out mask / (1 - p)
        ctx.add(0, dispatch_float(ctx.grad_out().dtype(), "dropout", [&](auto tag) {
            return masked_scale<decltype(tag)>(ctx.grad_out(), mask, scale);
        }));
    });
}

// ---- layer_norm -----------------------------------------------------------------------------
// x (..., D), gamma (D), beta (D) -> (..., D)  (Note [Fused layer norm])
Var layer_norm(Var x, std::optional<Var> gamma, std::optional<Var> beta, double eps) {
    const char* op = "layer_norm";
    if (!is_floating(x.dtype()) || x.ndim() == 0) {
        throw ShapeError(op, fmt::format("x must be f32 or f64 with at least one axis, got {} {}", dtype_name(x.dtype()),
                                         x.shape().str()));
    }
    const std::int64_t D = x.shape().back();
    for (const auto& [name, affine] : {std::pair{"gamma", gamma}, std::pair{"beta", beta}}) {
        if (affine && (!(affine->shape() == Shape{D}) || affine->dtype() != x.dtype())) {
            throw ShapeError(op, fmt::format("{} must be {} of shape [{}] for x {}, got {} {}", name, dtype_name(x.dtype()), D,
                                             x.shape().str(), dtype_name(affine->dtype()), affine->shape().str()));
        }
    }
    if (!(eps >= 0.0)) throw ShapeError(op, fmt::format("eps must not be negative, got {}", eps));

    Tensor xc = x.value().contiguous();
    const std::int64_t n_rows = D == 0 ? 0 : xc.numel() / D;
    Shape rows_shape = xc.shape();
    rows_shape[rows_shape.size() - 1] = 1;
    Tensor xhat = Tensor::empty(xc.shape(), xc.dtype());
    Tensor rstd = Tensor::empty(rows_shape, xc.dtype());
    Tensor out = Tensor::empty(xc.shape(), xc.dtype());
    Tensor g = gamma ? gamma->value().contiguous() : Tensor();
    Tensor b = beta ? beta->value().contiguous() : Tensor();
    dispatch_float(xc.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const T* px = xc.data<T>();
        const T* pg = gamma ? g.data<T>() : nullptr;
        const T* pb = beta ? b.data<T>() : nullptr;
        T* ph = xhat.data<T>();
        T* pr = rstd.data<T>();
        T* py = out.data<T>();
        for_rows(n_rows, D, [&](std::int64_t lo, std::int64_t hi) { ln_forward(px, pg, pb, ph, pr, py, lo, hi, D, eps); });
    });

    std::vector<Var> inputs{x};
    if (gamma) inputs.push_back(*gamma);
    if (beta) inputs.push_back(*beta);
    const int gamma_k = gamma ? 1 : -1;
    const int beta_k = beta ? (gamma ? 2 : 1) : -1;
    Saved sxhat(xhat), srstd(rstd), sgamma(g);
    return tape_of(x).record(op, std::move(out), inputs,
                             [sxhat, srstd, sgamma, gamma_k, beta_k, n_rows, D, op](BackwardCtx& ctx) {
        // y = xhat gamma + beta, xhat = (x - mu) rstd
        const Tensor dy = ctx.grad_out().contiguous();
        const Tensor& h = sxhat.get(op);
        auto sum_rows = [&dy](const Tensor& t) {
            std::vector<int> row_axes;
            for (int a = 0; a + 1 < dy.ndim(); ++a) row_axes.push_back(a);
            return row_axes.empty() ? t : kern::sum(t, row_axes, false);
        };
        if (ctx.needs(0)) {
            // dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)),  dxhat = dy gamma
            Tensor dx = Tensor::empty(h.shape(), h.dtype());
            dispatch_float(h.dtype(), op, [&](auto tag) {
                using T = decltype(tag);
                const T* pdy = dy.data<T>();
                const T* ph = h.data<T>();
                const T* pr = srstd.get(op).data<T>();
                const T* pg = gamma_k >= 0 ? sgamma.get(op).data<T>() : nullptr;
                T* pdx = dx.data<T>();
                for_rows(n_rows, D, [&](std::int64_t lo, std::int64_t hi) { ln_backward(pdy, ph, pr, pg, pdx, lo, hi, D); });
            });
            ctx.add(0, dx);
        }
        // dgamma = sum_rows(dy xhat);  dbeta = sum_rows(dy)
        if (gamma_k >= 0 && ctx.needs(gamma_k)) ctx.add(gamma_k, sum_rows(kern::mul(dy, h)));
        if (beta_k >= 0 && ctx.needs(beta_k)) ctx.add(beta_k, sum_rows(dy));
    });
}

// ---- registry -------------------------------------------------------------------------------
void register_nn(Registry& r) {
    r.def("dropout", {arg::tensor("x"), arg::number("p")}, "inverted dropout with drop probability p; the identity outside train mode",
          &dropout);
    r.def("layer_norm", {arg::tensor("x"), arg::tensor("gamma", arg::none), arg::tensor("beta", arg::none), arg::number("eps", 1e-5)},
          "normalise over the last axis (biased variance), then scale by gamma and shift by beta", &layer_norm);
}

}  // namespace wengert
