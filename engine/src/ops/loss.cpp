// Losses: cross_entropy (fused with log-softmax), nll, bce, bce_with_logits, mse; and the
// accuracy metric beside them.
// The class axis is the last one. Reduction none keeps one loss per row (cross_entropy, nll)
// or per element (bce, bce_with_logits, mse); sum adds them; mean divides the sum by their count.
//
// Note [Fused cross-entropy]
// cross_entropy never puts log_softmax on the tape. Per row of logits z (C classes) it computes
// lse = max + log(sum(exp(z - max))) and the smoothed target q = (1 - eps) target + eps / C
// (target a one-hot row for class indices: PyTorch's label smoothing), and
//     loss = -sum_c q_c log_softmax(z)_c = sum_c q_c (lse - z_c).
// Its backward is dz = g (softmax(z) sum_c q_c - q): (softmax - target) g for a target that sums
// to one, with g = grad_out / N under mean reduction. exp only ever sees z - max <= 0 or z - lse,
// so no row overflows, and log_softmax is never rounded to -inf and multiplied by a zero target.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "../kernels/elementwise.hpp"
#include "families.hpp"
#include "../kernels/rows.hpp"
#include "../kernels/vmath.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;
using detail::for_rows;
using detail::map2;
using detail::map3;
using detail::choose;
using detail::log_normal;

namespace {

Shape without_last_axis(const Shape& shape) {
    Shape rows = shape;
    rows.erase(rows.size() - 1);
    return rows;
}

// scores (..., C): floating, at least one axis, at least one class.
void check_scores(const char* op, const char* name, const Tensor& scores) {
    if (!is_floating(scores.dtype())) {
        throw ShapeError(op, fmt::format("{} must be f32 or f64, got {} {}", name, dtype_name(scores.dtype()),
                                         scores.shape().str()));
    }
    if (scores.ndim() == 0 || scores.shape().back() == 0) {
        throw ShapeError(op, fmt::format("{} need a class axis (the last) with at least one class, got {}", name,
                                         scores.shape().str()));
    }
}

// labels (...) i64 against scores (..., C).
void check_labels(const char* op, const char* name, const Tensor& scores, const Tensor& labels) {
    if (!(labels.shape() == without_last_axis(scores.shape()))) {
        throw ShapeError(op, fmt::format("class indices must have the {} shape without the class axis: {} {}, target {}",
                                         name, name, scores.shape().str(), labels.shape().str()));
    }
    Tensor flat = labels.contiguous();
    const std::int64_t* y = flat.data<std::int64_t>();
    std::int64_t n_classes = scores.shape().back();
    for (std::int64_t i = 0; i < flat.numel(); ++i) {
        if (y[i] < 0 || y[i] >= n_classes) {
            throw ShapeError(op, fmt::format("label {} at index {} is out of range for {} classes ({} {}, target {})", y[i],
                                             i, n_classes, name, scores.shape().str(), labels.shape().str()));
        }
    }
}

// prediction (...) and target (...): same shape and floating dtype (no broadcasting: a target
// of shape (B, 1) against predictions (B,) is a bug, not a batch of B * B losses).
void check_pair(const char* op, const char* name, const Tensor& prediction, const Tensor& target) {
    if (!is_floating(prediction.dtype()) || prediction.dtype() != target.dtype() ||
        !(prediction.shape() == target.shape())) {
        throw ShapeError(op, fmt::format("{} and target must have the same shape and floating dtype: {} {} {}, target {} {}",
                                         name, name, dtype_name(prediction.dtype()), prediction.shape().str(),
                                         dtype_name(target.dtype()), target.shape().str()));
    }
}

// losses (...) -> () for sum and mean, unchanged for none.
Tensor reduce_loss(const Tensor& losses, Reduction reduction, const char* op) {
    if (reduction == Reduction::none) return losses;
    Tensor total = kern::sum(losses, std::vector<int>{}, false);
    if (reduction == Reduction::sum) return total;
    if (losses.numel() == 0) throw ShapeError(op, fmt::format("mean over an empty batch of losses {}", losses.shape().str()));
    return kern::scale(total, 1.0 / static_cast<double>(losses.numel()));
}

// The gradient of each unreduced loss, a new contiguous tensor of `shape`: grad_out as it is
// (none), spread over every loss (sum), or spread and divided by their count (mean).
Tensor loss_grad(const Tensor& grad_out, const Shape& shape, Reduction reduction) {
    switch (reduction) {
        case Reduction::none: return grad_out.contiguous();
        case Reduction::sum: return grad_out.expand(shape).contiguous();
        case Reduction::mean: return kern::scale(grad_out.expand(shape), 1.0 / static_cast<double>(shape.numel()));
    }
    return grad_out;
}

template <class T> double row_logsumexp(const T* z, std::int64_t n) {
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t c = 0; c < n; ++c) m = detail::max_keeping_nan(m, static_cast<double>(z[c]));   // Note [NaN propagates]
    double shift = std::isfinite(m) ? m : 0.0;
    double s = 0;
    for (std::int64_t c = 0; c < n; ++c) s += std::exp(static_cast<double>(z[c]) - shift);
    return shift + std::log(s);
}

}  // namespace

// ---- cross_entropy --------------------------------------------------------------------------
// logits (..., C), target (...) i64 or (..., C) probabilities -> (...) or () (Note [Fused cross-entropy])
Var cross_entropy(Var logits, Var target, double label_smoothing, Reduction reduction) {
    const char* op = "cross_entropy";
    check_scores(op, "logits", logits.value());
    const bool indices = target.dtype() == DType::i64;
    if (indices) {
        check_labels(op, "logits", logits.value(), target.value());
    } else if (!(target.shape() == logits.shape()) || target.dtype() != logits.dtype()) {
        throw ShapeError(op, fmt::format("target must be i64 class indices of shape {} or {} probabilities of shape {}; got {} {}",
                                         without_last_axis(logits.shape()).str(), dtype_name(logits.dtype()),
                                         logits.shape().str(), dtype_name(target.dtype()), target.shape().str()));
    }
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
        throw ShapeError(op, fmt::format("label_smoothing must be in [0, 1], got {}", label_smoothing));
    }
    const double eps = label_smoothing;
    Tensor z = logits.value().contiguous();
    Tensor t = target.value().contiguous();
    const std::int64_t C = z.shape().back();
    const std::int64_t n_rows = z.numel() / C;
    const Shape rows = without_last_axis(z.shape());
    Tensor lse = Tensor::empty(rows, z.dtype());
    Tensor losses = Tensor::empty(rows, z.dtype());
    dispatch_float(z.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const T* pz = z.data<T>();
        const std::int64_t* labels = indices ? t.data<std::int64_t>() : nullptr;
        const T* probs = indices ? nullptr : t.data<T>();
        T* plse = lse.data<T>();
        T* ploss = losses.data<T>();
        for_rows(n_rows, C, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t r = lo; r < hi; ++r) {
                const T* zr = pz + r * C;
                double l = row_logsumexp(zr, C);
                double loss = 0;
                if (indices) {
                    if (eps < 1) loss = (1 - eps) * (l - zr[labels[r]]);
                    if (eps > 0) {
                        double all = 0;
                        for (std::int64_t c = 0; c < C; ++c) all += l - zr[c];
                        loss += eps / static_cast<double>(C) * all;
                    }
                } else {
                    const T* tr = probs + r * C;
                    for (std::int64_t c = 0; c < C; ++c) {
                        double q = (1 - eps) * tr[c] + eps / static_cast<double>(C);
                        if (q != 0) loss += q * (l - zr[c]);
                    }
                }
                plse[r] = static_cast<T>(l);
                ploss[r] = static_cast<T>(loss);
            }
        });
    });
    Saved sz(z), st(t), slse(lse);
    return tape_of(logits).record(op, reduce_loss(losses, reduction, op), {logits, target},
                                  [sz, st, slse, rows, reduction, eps, indices, C, n_rows, op](BackwardCtx& ctx) {
        // loss = sum_c q_c (lse - z_c);  dz = g (softmax(z) sum_c q_c - q);  dtarget = g (1 - eps) (lse - z)
        Tensor g = loss_grad(ctx.grad_out(), rows, reduction);
        const Tensor& zv = sz.get(op);
        const Tensor& tv = st.get(op);
        dispatch_float(zv.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            const T* pz = zv.data<T>();
            const T* pl = slse.get(op).data<T>();
            const T* pg = g.data<T>();
            const double smooth = eps / static_cast<double>(C);
            if (ctx.needs(0)) {
                Tensor dz = Tensor::empty(zv.shape(), zv.dtype());
                T* pdz = dz.data<T>();
                const std::int64_t* labels = indices ? tv.data<std::int64_t>() : nullptr;
                const T* probs = indices ? nullptr : tv.data<T>();
                for_rows(n_rows, C, [&](std::int64_t lo, std::int64_t hi) {
                    for (std::int64_t r = lo; r < hi; ++r) {
                        const T* zr = pz + r * C;
                        T* dr = pdz + r * C;
                        double gr = pg[r], l = pl[r];
                        if (indices) {
                            for (std::int64_t c = 0; c < C; ++c) {
                                double q = smooth + (c == labels[r] ? 1 - eps : 0.0);
                                dr[c] = static_cast<T>(gr * (std::exp(zr[c] - l) - q));
                            }
                        } else {
                            const T* tr = probs + r * C;
                            double sum_q = 0;
                            for (std::int64_t c = 0; c < C; ++c) sum_q += (1 - eps) * tr[c] + smooth;
                            for (std::int64_t c = 0; c < C; ++c) {
                                double q = (1 - eps) * tr[c] + smooth;
                                dr[c] = static_cast<T>(gr * (std::exp(zr[c] - l) * sum_q - q));
                            }
                        }
                    }
                });
                ctx.add(0, dz);
            }
            if (!indices && ctx.needs(1)) {
                Tensor dt = Tensor::empty(zv.shape(), zv.dtype());
                T* pdt = dt.data<T>();
                for_rows(n_rows, C, [&](std::int64_t lo, std::int64_t hi) {
                    for (std::int64_t r = lo; r < hi; ++r) {
                        for (std::int64_t c = 0; c < C; ++c) {
                            pdt[r * C + c] = static_cast<T>(pg[r] * (1 - eps) * (pl[r] - pz[r * C + c]));
                        }
                    }
                });
                ctx.add(1, dt);
            }
        });
    });
}

// ---- nll ------------------------------------------------------------------------------------
// log_probs (..., C), labels (...) i64 -> (...) or ()
Var nll(Var log_probs, Var labels, Reduction reduction) {
    const char* op = "nll";
    check_scores(op, "log_probs", log_probs.value());
    if (labels.dtype() != DType::i64) {
        throw ShapeError(op, fmt::format("labels must be i64 class indices, got {} {}", dtype_name(labels.dtype()),
                                         labels.shape().str()));
    }
    check_labels(op, "log_probs", log_probs.value(), labels.value());
    Tensor lp = log_probs.value().contiguous();
    Tensor y = labels.value().contiguous();
    const std::int64_t C = lp.shape().back();
    const Shape rows = without_last_axis(lp.shape());
    Tensor losses = Tensor::empty(rows, lp.dtype());
    dispatch_float(lp.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const T* p = lp.data<T>();
        const std::int64_t* py = y.data<std::int64_t>();
        T* out = losses.data<T>();
        for (std::int64_t r = 0; r < losses.numel(); ++r) out[r] = -p[r * C + py[r]];
    });
    Saved sy(y);
    Shape lp_shape = lp.shape();
    return tape_of(log_probs).record(op, reduce_loss(losses, reduction, op), {log_probs, labels},
                                     [sy, lp_shape, rows, reduction, C, op](BackwardCtx& ctx) {
        // loss_r = -log_probs[r, y_r];  dlog_probs[r, y_r] = -g_r, zero elsewhere
        Tensor g = loss_grad(ctx.grad_out(), rows, reduction);
        Tensor dlp = Tensor::zeros(lp_shape, g.dtype());
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            const T* pg = g.data<T>();
            const std::int64_t* py = sy.get(op).data<std::int64_t>();
            T* d = dlp.data<T>();
            for (std::int64_t r = 0; r < g.numel(); ++r) d[r * C + py[r]] = -pg[r];
        });
        ctx.add(0, dlp);
    });
}

// ---- bce ------------------------------------------------------------------------------------
// probs (...), target (...) -> (...) or ();  probabilities in [0, 1], log terms clamped at -100
namespace {

// Note [bce's logarithms]
// bce's forward takes log p and log(1 - p) of every element: in f32, two libm calls an element
// (log1pf alone was 9% of the VAE's training step). For f32 both are computed in double by
// log_normal (Note [Vector math]) and rounded to float: the same bits on every CPU and at any
// thread count. log(1 - p) is log(u) for u = 1 - p, which is exact in double for every float
// p >= 2^-30 (p's 24 bits end at or above 2^-53); below that, -p, within p / 2 relative of
// log(1 - p), so the float is -p rounded. (log1p's identity, log(u) (-p) / (u - 1), gave the
// same with a third division an element.) 0 gives log -709.1 rather than -inf, which the clamp
// at -100 makes -100 as it does -inf. f64 keeps std::log and std::log1p.

// One element of bce's loss, (t - 1) max(log(1 - p), -100) - t max(log p, -100), as PyTorch.
template <class T> [[gnu::always_inline]] inline T bce_element(T p, T t) {
    if constexpr (std::is_same_v<T, float>) {
        const double pd = p, u = 1.0 - pd;
        // both computed, then one chosen (NaN: log_normal(NaN), NaN)
        const double log_p = log_normal(pd), log_q = choose(pd < 0x1p-30, -pd, log_normal(u));
        // max(x, -100) as std::max: -100 only where x < -100, so NaN stays NaN
        const float clamped_p = static_cast<float>(choose(log_p < -100.0, -100.0, log_p));
        const float clamped_q = static_cast<float>(choose(log_q < -100.0, -100.0, log_q));
        return (t - 1) * clamped_q - t * clamped_p;
    } else {
        return (t - 1) * std::max(std::log1p(-p), T(-100)) - t * std::max(std::log(p), T(-100));
    }
}

// bce_element over contiguous f32, compiled for AVX-512, AVX2 and the baseline (Note [bce's
// logarithms]: the clones round alike); true when some p lies outside [0, 1], found in the same
// pass (NaN is not outside).
[[gnu::target_clones("avx512f", "avx2", "default")]] bool bce_f32(const float* p, const float* t, float* out, std::int64_t n) {
    int outside = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        outside |= (p[i] < 0.0f) | (p[i] > 1.0f);
        out[i] = bce_element(p[i], t[i]);
    }
    return outside != 0;
}

// Per-element bce losses of probs and target (same shape, checked); probabilities outside
// [0, 1] are an error that gives their range.
template <class T> Tensor bce_losses(const Tensor& probs, const Tensor& target, const char* op) {
    auto check_range = [&] {
        std::vector<int> all;
        double lowest = kern::min(probs, all, false).item(), highest = kern::max(probs, all, false).item();
        if (lowest < 0 || highest > 1) {
            throw ShapeError(op, fmt::format("probabilities must lie in [0, 1]; probs {} has values in [{}, {}]",
                                             probs.shape().str(), lowest, highest));
        }
    };
    if constexpr (std::is_same_v<T, float>) {
        if (probs.is_contiguous() && target.is_contiguous()) {
            Tensor out = Tensor::empty(probs.shape(), DType::f32);
            const float *p = probs.data<float>(), *t = target.data<float>();
            float* o = out.data<float>();
            std::atomic<bool> outside{false};
            detail::for_elements(out.numel(), [&](std::int64_t lo, std::int64_t hi) {
                if (bce_f32(p + lo, t + lo, o + lo, hi - lo)) outside.store(true, std::memory_order_relaxed);
            });
            // the range, for the message, only when the pass found an element outside it
            if (outside.load()) check_range();
            return out;
        }
    }
    if (probs.numel() > 0) check_range();
    return map2<T, T>(probs, target, op, [](T p, T t) { return bce_element(p, t); });
}

}  // namespace

Var bce(Var probs, Var target, Reduction reduction) {
    const char* op = "bce";
    check_pair(op, "probs", probs.value(), target.value());
    Tensor losses = dispatch_float(probs.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        return bce_losses<T>(probs.value(), target.value(), op);
    });
    Saved sp(probs.value()), st(target.value());
    Shape shape = probs.shape();
    return tape_of(probs).record(op, reduce_loss(losses, reduction, op), {probs, target},
                                 [sp, st, shape, reduction, op](BackwardCtx& ctx) {
        // loss = (t - 1) max(log(1 - p), -100) - t max(log p, -100)
        // dp = g (p - t) / max(p (1 - p), 1e-12), as PyTorch;  dt = g (max(log(1 - p), -100) - max(log p, -100))
        Tensor g = loss_grad(ctx.grad_out(), shape, reduction);
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            const Tensor& p = sp.get(op);
            if (ctx.needs(0)) {
                ctx.add(0, map3<T, T, T, T>(g, p, st.get(op), op, [](T gv, T pv, T tv) {
                    return gv * (pv - tv) / std::max(pv * (1 - pv), T(1e-12));
                }));
            }
            if (ctx.needs(1)) {
                ctx.add(1, map2<T, T>(g, p, op, [](T gv, T pv) {
                    return gv * (std::max(std::log1p(-pv), T(-100)) - std::max(std::log(pv), T(-100)));
                }));
            }
        });
    });
}

// ---- bce_with_logits ------------------------------------------------------------------------
// logits (...), target (...) -> (...) or ();  stable: max(x, 0) - x t + log(1 + exp(-|x|))
Var bce_with_logits(Var logits, Var target, Reduction reduction) {
    const char* op = "bce_with_logits";
    check_pair(op, "logits", logits.value(), target.value());
    Tensor losses = dispatch_float(logits.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        return map2<T, T>(logits.value(), target.value(), op, [](T x, T t) {
            return std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::abs(x)));
        });
    });
    Saved sx(logits.value()), st(target.value());
    Shape shape = logits.shape();
    return tape_of(logits).record(op, reduce_loss(losses, reduction, op), {logits, target},
                                  [sx, st, shape, reduction, op](BackwardCtx& ctx) {
        // loss = max(x, 0) - x t + log(1 + exp(-|x|));  dx = g (sigmoid(x) - t);  dt = -g x
        Tensor g = loss_grad(ctx.grad_out(), shape, reduction);
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            const Tensor& x = sx.get(op);
            if (ctx.needs(0)) {
                ctx.add(0, map3<T, T, T, T>(g, x, st.get(op), op, [](T gv, T xv, T tv) {
                    T e = std::exp(-std::abs(xv));
                    T sigmoid = xv >= 0 ? 1 / (1 + e) : e / (1 + e);
                    return gv * (sigmoid - tv);
                }));
            }
            if (ctx.needs(1)) ctx.add(1, map2<T, T>(g, x, op, [](T gv, T xv) { return -gv * xv; }));
        });
    });
}

// ---- mse ------------------------------------------------------------------------------------
// prediction (...), target (...) -> (...) or ()
Var mse(Var prediction, Var target, Reduction reduction) {
    const char* op = "mse";
    check_pair(op, "prediction", prediction.value(), target.value());
    Tensor diff = kern::sub(prediction.value(), target.value());
    Tensor losses = kern::mul(diff, diff);
    Saved sdiff(diff);
    Shape shape = prediction.shape();
    return tape_of(prediction).record(op, reduce_loss(losses, reduction, op), {prediction, target},
                                      [sdiff, shape, reduction, op](BackwardCtx& ctx) {
        // loss = (p - t)^2;  dp = 2 g (p - t);  dt = -dp
        Tensor dp = kern::mul(kern::scale(loss_grad(ctx.grad_out(), shape, reduction), 2.0), sdiff.get(op));
        if (ctx.needs(0)) ctx.add(0, dp);
        if (ctx.needs(1)) ctx.add(1, kern::neg(dp));
    });
}

// ---- metrics --------------------------------------------------------------------------------

// logits (..., C), labels (...) i64 -> (): the fraction of rows whose argmax is the label
Var accuracy(Var logits, Var labels, DType dtype) {
    const char* op = "accuracy";
    if (logits.ndim() == 0 || labels.dtype() != DType::i64 || !(labels.shape() == without_last_axis(logits.shape()))) {
        throw ShapeError(op, fmt::format("expects logits (..., C) and i64 labels (...) of the same leading shape, got {} {} "
                                         "and {} {}",
                                         dtype_name(logits.dtype()), logits.shape().str(), dtype_name(labels.dtype()),
                                         labels.shape().str()));
    }
    return mean(cast(eq(argmax(logits, -1), labels), dtype));
}

// ---- registry -------------------------------------------------------------------------------
void register_loss(Registry& r) {
    const ArgSpec reduction = arg::string("reduction", "mean");
    r.def("cross_entropy", {arg::tensor("logits"), arg::tensor("target"), arg::number("label_smoothing", 0.0), reduction},
          "softmax cross-entropy over the last axis; target i64 class indices or probabilities", &cross_entropy);
    r.def("nll", {arg::tensor("log_probs"), arg::tensor("labels"), reduction},
          "negative log-likelihood of i64 labels under log-probabilities (class axis last)", &nll);
    r.def("bce", {arg::tensor("probs"), arg::tensor("target"), reduction},
          "binary cross-entropy of probabilities; log terms clamped at -100", &bce);
    r.def("bce_with_logits", {arg::tensor("logits"), arg::tensor("target"), reduction},
          "binary cross-entropy of sigmoid(logits), computed stably", &bce_with_logits);
    r.def("mse", {arg::tensor("prediction"), arg::tensor("target"), reduction}, "squared error (prediction - target)^2", &mse);
    r.def("accuracy", {arg::tensor("logits"), arg::tensor("labels"), arg::dtype()},
          "the fraction of rows whose argmax over the last axis is the i64 label", &accuracy, Gradient::none);
}

}  // namespace wengert
