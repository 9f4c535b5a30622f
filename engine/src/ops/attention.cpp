// Attention: Trax's PureAttention as one fused op (SPEC.md section 1), and the distance
// penalties and ALiBi biases that go with it (SPEC.md section 3).
//
// Note [Fused attention]
// For each (batch, head) pair, with Q, K, V that head's columns of q, k, v (head h owns the
// features [h d_head, (h + 1) d_head), as reshape(B, L, h, d_head) then transpose(0, 2, 1, 3)
// gives), the forward is
//     S  = Q K^T / sqrt(d_head) + bias           (Lq, Lk)
//     S  = where(mask, S, -1e9)                  replaced, not added: a fully masked row is uniform
//     P  = softmax(S)                            over keys (Note [Stable softmax])
//     P' = P M / (1 - p)                         M the dropout mask, in train mode with p > 0
//     O  = P' V                                  written straight into y's columns of head h
// and the backward reads P and M and nothing else of size Lq x Lk:
//     dP' = dO V^T;   dV = P'^T dO
//     dP  = dP' M / (1 - p)
//     dS  = P (dP - sum_keys(dP P)), 0 where masked
//     dQ  = dS K / sqrt(d_head);   dK = dS^T Q / sqrt(d_head);   dbias = dS
// So the node keeps P (in q's dtype) and M (u8, drawn by fill_bernoulli over (B, h, Lq, Lk):
// the very draws dropout() makes on the unfused weights), while the composition it replaces
// (reshape / permute / matmul / mul / add / where / softmax / dropout / matmul) keeps up to six
// tensors of that size on the tape (logits, scaled, biased, masked, weights, dropped weights)
// and its backward allocates as many gradients: at B h = 32, Lq = Lk = 1024 in f32, 210 MB
// against 827 MB at the peak of a forward and backward with dropout (bench/attention.cpp). The backward rebuilds P' and the gradients in
// two (Lq, Lk) buffers of the thread's, kept between pairs and calls (pair_scratch). When no
// input needs a gradient, P too lives in such a buffer and nothing of size (B, h, Lq, Lk)
// outlives the call. A bias that needs a gradient is the one
// exception: dS of every pair is written into a (B, h, Lq, Lk) tensor that ctx.add sums down
// to the bias's shape.
//
// Every pair makes its own BLIS calls (detail::gemm on strided head columns, no copies): with
// at least as many pairs as threads the pairs run over TBB with each call single-threaded,
// otherwise one after another with BLIS threaded (Note [Matmul threading]); a call too small
// to share (kParallelPairWork) runs its pairs on the calling thread. A pair's result does not
// depend on the thread that runs it.
#include <fmt/format.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <variant>
#include <vector>

#include "../kernels/gemm.hpp"
#include "../kernels/vmath.hpp"
#include "families.hpp"
#include "../kernels/rows.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert {

using detail::dispatch_float;

namespace {

constexpr double kMaskedLogit = -1e9;

// The sizes of one pure_attention call.
struct Dims {
    std::int64_t batch, n_heads, lq, lk, d, d_head;
    std::int64_t n_pairs() const { return batch * n_heads; }
    std::int64_t map_size() const { return lq * lk; }   // one pair's (Lq, Lk) map
    Shape maps() const { return Shape{batch, n_heads, lq, lk}; }
};

// A tensor broadcast to (B, h, Lq, Lk), read one (batch, head) pair at a time.
template <class T> struct MapView {
    const T* data = nullptr;
    std::int64_t stride[4] = {};
    explicit operator bool() const { return data != nullptr; }
    const T* pair(std::int64_t b, std::int64_t h) const { return data + b * stride[0] + h * stride[1]; }
};

template <class T> MapView<T> map_view(const Tensor& t, const Shape& maps) {
    if (!t.defined()) return {};
    Tensor e = t.expand(maps);
    return {e.data<T>(), {e.strides()[0], e.strides()[1], e.strides()[2], e.strides()[3]}};
}

bool broadcasts_to(const Shape& s, const Shape& target) {
    if (s.size() > target.size()) return false;
    int lead = target.size() - s.size();
    for (int i = 0; i < s.size(); ++i) {
        if (s[i] != 1 && s[i] != target[lead + i]) return false;
    }
    return true;
}

// Pairs run over TBB when one of the call's products, over all pairs, has at least this many
// multiply-adds. A pair does more than that product (forward two of them and a softmax,
// backward four and the softmax's backward), so the bar is well below a single product's
// kThreadedGemmWork: at that bar the sort model's pairs (256 of 16 x 16 x 16 a call) ran on
// one thread while the other waited, a fifth of the step's time on the calling thread.
constexpr std::int64_t kParallelPairWork = std::int64_t{1} << 16;

// Runs body(pair, blis_threads) for every (batch, head) pair (Note [Fused attention]).
template <class F> void for_each_pair(const Dims& dims, F&& body) {
    const int threads = max_threads();
    const std::int64_t work = dims.n_pairs() * dims.map_size() * dims.d_head;
    if (threads == 1 || work < kParallelPairWork) {
        for (std::int64_t p = 0; p < dims.n_pairs(); ++p) body(p, 1);
    } else if (dims.n_pairs() >= threads) {
        tbb::parallel_for(std::int64_t{0}, dims.n_pairs(), [&](std::int64_t p) { body(p, 1); });
    } else {
        // isolated: while its threaded products wait, this thread runs none of the caller's
        // other tasks, so no other pair starts on it mid-pair (pair_scratch)
        for (std::int64_t p = 0; p < dims.n_pairs(); ++p) tbb::this_task_arena::isolate([&] { body(p, threads); });
    }
}

// Everything of one call the kernels read, typed.
template <class T> struct Operands {
    Dims dims;
    T scale;                         // 1 / sqrt(d_head)
    T keep_scale;                    // 1 / (1 - p)
    const T* q;                      // contiguous (B, Lq, d)
    const T* k;                      // contiguous (B, Lk, d)
    const T* v;                      // contiguous (B, Lk, d)
    MapView<std::uint8_t> mask;      // attention mask, True = keep
    MapView<T> bias;
    const std::uint8_t* dropped;     // contiguous (B, h, Lq, Lk) dropout mask, or null

    // Offsets of pair p's head columns in a (B, L, d) tensor, and of its map.
    std::int64_t rows_at(std::int64_t p, std::int64_t len) const {
        return (p / dims.n_heads) * len * dims.d + (p % dims.n_heads) * dims.d_head;
    }
    std::int64_t map_at(std::int64_t p) const { return p * dims.map_size(); }
};

// A (Lq, Lk) buffer of this thread's, `which` of two, kept between pairs and calls: a pair
// runs start to end on one thread, and no other pair runs inside it (for_each_pair: pairs
// over TBB make single-threaded products; one pair at a time with threaded products runs
// isolated).
template <class T> T* pair_scratch(int which, std::int64_t size) {
    thread_local std::vector<T> buffers[2];
    std::vector<T>& buffer = buffers[which];
    if (buffer.size() < static_cast<std::size_t>(size)) buffer.resize(static_cast<std::size_t>(size));
    return buffer.data();
}

// P' = P M / (1 - p) for pair p, into `out`
template <class T> void apply_dropout(const Operands<T>& o, std::int64_t p, const T* weights, T* out) {
    const std::uint8_t* m = o.dropped + o.map_at(p);
    for (std::int64_t e = 0; e < o.dims.map_size(); ++e) out[e] = m[e] ? weights[e] * o.keep_scale : T(0);
}

// One pair's P = softmax(where(mask, S + bias, -1e9)) over keys, in place on S (lq, lk); mask
// and bias (either null) read at (i, j) with their strides. Each row: the bias added, masked
// logits replaced, the max (NaN kept: Note [NaN propagates]; 0 when not finite), e^(s - max), the
// sum in double by lane_sum, a scale by its inverse. In f32, e^x comes from exp_clamped in double,
// rounded to float (Note [Vector math]): the loops vectorise in each clone, where expf was a
// libm call per element; every clone rounds alike. f64 keeps std::exp.
template <class T>
[[gnu::always_inline]] inline void pair_softmax_body(T* weights, std::int64_t lq, std::int64_t lk, const std::uint8_t* mask,
                                                     std::int64_t ms_i, std::int64_t ms_j, const T* bias, std::int64_t bs_i,
                                                     std::int64_t bs_j) {
    for (std::int64_t i = 0; i < lq; ++i) {
        T* s = weights + i * lk;
        if (bias) {
            for (std::int64_t j = 0; j < lk; ++j) s[j] += bias[i * bs_i + j * bs_j];
        }
        if (mask) {
            for (std::int64_t j = 0; j < lk; ++j) s[j] = mask[i * ms_i + j * ms_j] ? s[j] : T(kMaskedLogit);
        }
        T m = -INFINITY;
        if constexpr (std::is_same_v<T, float>) {
            m = detail::max_keeping_nan_f32(s, lk);
        } else {
            for (std::int64_t j = 0; j < lk; ++j) m = detail::max_keeping_nan(m, s[j]);
        }
        if (!std::isfinite(m)) m = T(0);
        for (std::int64_t j = 0; j < lk; ++j) {
            if constexpr (std::is_same_v<T, float>) {
                s[j] = static_cast<float>(detail::exp_clamped(static_cast<double>(s[j] - m)));
            } else {
                s[j] = std::exp(s[j] - m);
            }
        }
        const T inv = static_cast<T>(1.0 / detail::lane_sum(lk, [&](std::int64_t j) { return static_cast<double>(s[j]); }));
        for (std::int64_t j = 0; j < lk; ++j) s[j] *= inv;
    }
}
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_softmax(float* weights, std::int64_t lq, std::int64_t lk,
                                                                     const std::uint8_t* mask, std::int64_t ms_i,
                                                                     std::int64_t ms_j, const float* bias, std::int64_t bs_i,
                                                                     std::int64_t bs_j) {
    pair_softmax_body(weights, lq, lk, mask, ms_i, ms_j, bias, bs_i, bs_j);
}
void pair_softmax(double* weights, std::int64_t lq, std::int64_t lk, const std::uint8_t* mask, std::int64_t ms_i,
                  std::int64_t ms_j, const double* bias, std::int64_t bs_i, std::int64_t bs_j) {
    pair_softmax_body(weights, lq, lk, mask, ms_i, ms_j, bias, bs_i, bs_j);
}

// One pair's dS from dP' in place (ds, lq x lk) and P (weights): dP = dP' M / (1 - p) where
// dropped is given; dS = P (dP - sum_keys(dP P)), the sum in double by lane_sum; 0 where
// masked. Cloned for f32 like pair_softmax.
template <class T>
[[gnu::always_inline]] inline void pair_softmax_backward_body(T* ds, const T* weights, std::int64_t lq, std::int64_t lk,
                                                              const std::uint8_t* dropped, T keep_scale, const std::uint8_t* mask,
                                                              std::int64_t ms_i, std::int64_t ms_j) {
    for (std::int64_t i = 0; i < lq; ++i) {
        T* row = ds + i * lk;
        const T* w = weights + i * lk;
        // P' = P M / (1 - p);  dP = dP' M / (1 - p)
        if (dropped) {
            const std::uint8_t* kept = dropped + i * lk;
            for (std::int64_t j = 0; j < lk; ++j) row[j] = kept[j] ? row[j] * keep_scale : T(0);
        }
        // P = softmax(S);  dS = P (dP - sum(dP P))
        const T dot = static_cast<T>(
            detail::lane_sum(lk, [&](std::int64_t j) { return static_cast<double>(row[j]) * static_cast<double>(w[j]); }));
        for (std::int64_t j = 0; j < lk; ++j) row[j] = w[j] * (row[j] - dot);
        // S = where(mask, S, -1e9): no gradient where masked
        if (mask) {
            for (std::int64_t j = 0; j < lk; ++j) row[j] = mask[i * ms_i + j * ms_j] ? row[j] : T(0);
        }
    }
}
[[gnu::target_clones("avx512f", "avx2", "default")]] void pair_softmax_backward(float* ds, const float* weights, std::int64_t lq,
                                                                              std::int64_t lk, const std::uint8_t* dropped,
                                                                              float keep_scale, const std::uint8_t* mask,
                                                                              std::int64_t ms_i, std::int64_t ms_j) {
    pair_softmax_backward_body(ds, weights, lq, lk, dropped, keep_scale, mask, ms_i, ms_j);
}
void pair_softmax_backward(double* ds, const double* weights, std::int64_t lq, std::int64_t lk, const std::uint8_t* dropped,
                           double keep_scale, const std::uint8_t* mask, std::int64_t ms_i, std::int64_t ms_j) {
    pair_softmax_backward_body(ds, weights, lq, lk, dropped, keep_scale, mask, ms_i, ms_j);
}

// One pair's forward: P into `weights` (Lq, Lk), O into its head columns of y.
template <class T> void forward_pair(const Operands<T>& o, std::int64_t p, T* weights, T* y, int threads) {
    const Dims& n = o.dims;
    const std::int64_t b = p / n.n_heads, h = p % n.n_heads;
    // S = Q K^T / sqrt(d_head)
    detail::gemm<T>(n.lq, n.lk, n.d_head, o.scale, o.q + o.rows_at(p, n.lq), n.d, 1, o.k + o.rows_at(p, n.lk), 1, n.d,
                    T(0), weights, n.lk, 1, threads);
    const std::uint8_t* mask = o.mask ? o.mask.pair(b, h) : nullptr;
    const T* bias = o.bias ? o.bias.pair(b, h) : nullptr;
    // S += bias; S = where(mask, S, -1e9); P = exp(S - logsumexp(S))
    pair_softmax(weights, n.lq, n.lk, mask, mask ? o.mask.stride[2] : 0, mask ? o.mask.stride[3] : 0, bias,
                 bias ? o.bias.stride[2] : 0, bias ? o.bias.stride[3] : 0);
    // O = P' V
    const T* used = weights;
    if (o.dropped) {
        T* dropped = pair_scratch<T>(0, n.map_size());
        apply_dropout(o, p, weights, dropped);
        used = dropped;
    }
    detail::gemm<T>(n.lq, n.d_head, n.lk, T(1), used, n.lk, 1, o.v + o.rows_at(p, n.lk), n.d, 1, T(0),
                    y + o.rows_at(p, n.lq), n.d, 1, threads);
}

// Gradients one pair writes: each pointer null when not needed.
template <class T> struct Grads {
    const T* grad_out;   // contiguous (B, Lq, d)
    T* q;
    T* k;
    T* v;
    T* bias;             // (B, h, Lq, Lk)
};

// One pair's backward (Note [Fused attention]).
template <class T> void backward_pair(const Operands<T>& o, const T* weights_all, const Grads<T>& g, std::int64_t p,
                                      int threads) {
    const Dims& n = o.dims;
    const std::int64_t b = p / n.n_heads, h = p % n.n_heads;
    const T* weights = weights_all + o.map_at(p);
    const T* grad_out = g.grad_out + o.rows_at(p, n.lq);
    if (g.v) {
        // O = P' V;  dV = P'^T dO
        const T* used = weights;
        if (o.dropped) {
            T* dropped = pair_scratch<T>(0, n.map_size());
            apply_dropout(o, p, weights, dropped);
            used = dropped;
        }
        detail::gemm<T>(n.lk, n.d_head, n.lq, T(1), used, 1, n.lk, grad_out, n.d, 1, T(0), g.v + o.rows_at(p, n.lk),
                        n.d, 1, threads);
    }
    if (!g.q && !g.k && !g.bias) return;
    // dP' = dO V^T
    T* ds = pair_scratch<T>(1, n.map_size());   // written whole by the product (beta 0)
    detail::gemm<T>(n.lq, n.lk, n.d_head, T(1), grad_out, n.d, 1, o.v + o.rows_at(p, n.lk), 1, n.d, T(0), ds, n.lk,
                    1, threads);
    const std::uint8_t* dropped = o.dropped ? o.dropped + o.map_at(p) : nullptr;
    const std::uint8_t* mask = o.mask ? o.mask.pair(b, h) : nullptr;
    pair_softmax_backward(ds, weights, n.lq, n.lk, dropped, o.keep_scale, mask, mask ? o.mask.stride[2] : 0,
                          mask ? o.mask.stride[3] : 0);
    // S = Q K^T / sqrt(d_head) + bias
    if (g.bias) std::copy(ds, ds + n.map_size(), g.bias + o.map_at(p));
    if (g.q) {
        detail::gemm<T>(n.lq, n.d_head, n.lk, o.scale, ds, n.lk, 1, o.k + o.rows_at(p, n.lk), n.d, 1, T(0),
                        g.q + o.rows_at(p, n.lq), n.d, 1, threads);
    }
    if (g.k) {
        detail::gemm<T>(n.lk, n.d_head, n.lq, o.scale, ds, 1, n.lk, o.q + o.rows_at(p, n.lq), n.d, 1, T(0),
                        g.k + o.rows_at(p, n.lk), n.d, 1, threads);
    }
}

// The typed view of one call's tensors; an undefined tensor gives a null pointer.
template <class T>
Operands<T> operands(const Dims& dims, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask,
                     const Tensor& bias, const Tensor& dropped, double dropout) {
    auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
    return {dims,
            static_cast<T>(1.0 / std::sqrt(static_cast<double>(dims.d_head))),
            static_cast<T>(1.0 / (1.0 - dropout)),
            ptr(q),
            ptr(k),
            ptr(v),
            map_view<std::uint8_t>(mask, dims.maps()),
            map_view<T>(bias, dims.maps()),
            dropped.defined() ? dropped.data<std::uint8_t>() : nullptr};
}

std::string operands_str(Var q, Var k, Var v, const std::optional<Var>& mask, const std::optional<Var>& bias) {
    std::string s = fmt::format("q {}, k {}, v {}", q.shape().str(), k.shape().str(), v.shape().str());
    if (mask) s += fmt::format(", mask {}", mask->shape().str());
    if (bias) s += fmt::format(", bias {}", bias->shape().str());
    return s;
}

// The shape rule: throws ShapeError naming every operand; returns the sizes.
Dims check_attention(Var q, Var k, Var v, const std::optional<Var>& mask, std::int64_t n_heads, double dropout,
                     const std::optional<Var>& bias) {
    const char* op = "pure_attention";
    const std::string shapes = operands_str(q, k, v, mask, bias);
    if (n_heads < 1) throw ShapeError(op, fmt::format("n_heads must be positive, got {}", n_heads));
    if (!(dropout >= 0.0 && dropout < 1.0)) throw ShapeError(op, fmt::format("dropout must be in [0, 1), got {}", dropout));
    if (q.ndim() != 3 || k.ndim() != 3 || v.ndim() != 3) {
        throw ShapeError(op, "q, k and v must be (B, L, d): " + shapes);
    }
    if (!is_floating(q.dtype()) || k.dtype() != q.dtype() || v.dtype() != q.dtype() ||
        (bias && bias->dtype() != q.dtype())) {
        throw ShapeError(op, fmt::format("q, k, v{} must share one dtype, f32 or f64, got {} {}, {} {}, {} {}{}",
                                         bias ? " and bias" : "", dtype_name(q.dtype()), q.shape().str(),
                                         dtype_name(k.dtype()), k.shape().str(), dtype_name(v.dtype()), v.shape().str(),
                                         bias ? fmt::format(", {} {}", dtype_name(bias->dtype()), bias->shape().str()) : ""));
    }
    const Dims dims{q.size(0), n_heads, q.size(1), k.size(1), q.size(2), q.size(2) / n_heads};
    if (k.size(0) != dims.batch || v.size(0) != dims.batch || v.size(1) != dims.lk || k.size(2) != dims.d ||
        v.size(2) != dims.d) {
        throw ShapeError(op, "expected q (B, Lq, d), k and v (B, Lk, d): " + shapes);
    }
    if (dims.lk == 0) throw ShapeError(op, "there are no keys to attend to: " + shapes);
    if (dims.d == 0 || dims.d % n_heads != 0) {
        throw ShapeError(op, fmt::format("d = {} does not split into {} heads: {}", dims.d, n_heads, shapes));
    }
    if (mask && mask->dtype() != DType::u8) {
        throw ShapeError(op, fmt::format("mask must be u8 (True = keep), got {}: {}", dtype_name(mask->dtype()), shapes));
    }
    for (const auto& [name, t] : {std::pair{"mask", mask}, std::pair{"bias", bias}}) {
        if (t && !broadcasts_to(t->shape(), dims.maps())) {
            throw ShapeError(op, fmt::format("{} does not broadcast to (B, n_heads, Lq, Lk) = {}: {}", name,
                                             dims.maps().str(), shapes));
        }
    }
    return dims;
}

}  // namespace

// ---- pure_attention -------------------------------------------------------------------------
// q (B, Lq, d), k (B, Lk, d), v (B, Lk, d), mask and bias broadcast to (B, h, Lq, Lk)
//   -> y (B, Lq, d)  (Note [Fused attention])
Var pure_attention(Var q, Var k, Var v, std::optional<Var> mask, std::int64_t n_heads, double dropout,
                   std::optional<Var> bias) {
    const char* op = "pure_attention";
    const Dims dims = check_attention(q, k, v, mask, n_heads, dropout, bias);
    std::vector<Var> inputs{q, k, v};
    const int bias_k = bias ? 3 : -1;
    if (bias) inputs.push_back(*bias);
    if (mask) inputs.push_back(*mask);
    Tape& tape = *q.tape();
    const bool recording = tape.wants_grad(inputs);

    Tensor qc = q.value().contiguous(), kc = k.value().contiguous(), vc = v.value().contiguous();
    Tensor mask_value = mask ? mask->value() : Tensor();
    Tensor bias_value = bias ? bias->value() : Tensor();
    Tensor dropped;
    if (current_mode() == Mode::train && dropout > 0.0) {
        dropped = Tensor::empty(dims.maps(), DType::u8);
        default_generator().fill_bernoulli(dropped, 1.0 - dropout);
    }
    Tensor weights = recording ? Tensor::empty(dims.maps(), q.dtype()) : Tensor();
    Tensor y = Tensor::empty(Shape{dims.batch, dims.lq, dims.d}, q.dtype());

    dispatch_float(q.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const Operands<T> o = operands<T>(dims, qc, kc, vc, mask_value, bias_value, dropped, dropout);
        T* out = y.data<T>();
        for_each_pair(dims, [&](std::int64_t p, int threads) {
            if (recording) {
                forward_pair(o, p, weights.data<T>() + o.map_at(p), out, threads);
            } else {
                // P in this thread's buffer 1 (forward_pair's dropout uses buffer 0)
                forward_pair(o, p, pair_scratch<T>(1, dims.map_size()), out, threads);
            }
        });
    });
    if (!recording) return tape.record(op, std::move(y), inputs, nullptr);

    // What the backward reads: dQ needs K, dK needs Q, every gradient but dV needs V.
    const bool q_grad = q.requires_grad(), k_grad = k.requires_grad();
    const bool logits_grad = q_grad || k_grad || (bias && bias->requires_grad());
    Saved sq = k_grad ? Saved(qc) : Saved(), sk = q_grad ? Saved(kc) : Saved(), sv = logits_grad ? Saved(vc) : Saved();
    Saved smask = mask ? Saved(mask_value) : Saved(), sweights(weights);
    return tape.record(op, std::move(y), inputs, [=](BackwardCtx& ctx) {
        // y = merge_heads(dropout(softmax(where(mask, Q K^T / sqrt(d_head) + bias, -1e9))) V)
        const Tensor grad_out = ctx.grad_out().contiguous();
        const bool need_bias = bias_k >= 0 && ctx.needs(bias_k);
        Tensor dq = ctx.needs(0) ? Tensor::empty(Shape{dims.batch, dims.lq, dims.d}, grad_out.dtype()) : Tensor();
        Tensor dk = ctx.needs(1) ? Tensor::empty(Shape{dims.batch, dims.lk, dims.d}, grad_out.dtype()) : Tensor();
        Tensor dv = ctx.needs(2) ? Tensor::empty(Shape{dims.batch, dims.lk, dims.d}, grad_out.dtype()) : Tensor();
        Tensor dbias = need_bias ? Tensor::empty(dims.maps(), grad_out.dtype()) : Tensor();
        dispatch_float(grad_out.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            auto saved = [&](const Saved& s, bool needed) { return needed ? s.get(op) : Tensor(); };
            const Operands<T> o = operands<T>(dims, saved(sq, dk.defined()), saved(sk, dq.defined()),
                                              saved(sv, dq.defined() || dk.defined() || need_bias),
                                              saved(smask, mask.has_value()), Tensor(), dropped, dropout);
            auto ptr = [](const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
            const Grads<T> g{grad_out.data<T>(), ptr(dq), ptr(dk), ptr(dv), ptr(dbias)};
            const T* w = sweights.get(op).data<T>();
            for_each_pair(dims, [&](std::int64_t p, int threads) { backward_pair(o, w, g, p, threads); });
        });
        if (dq.defined()) ctx.add(0, dq);
        if (dk.defined()) ctx.add(1, dk);
        if (dv.defined()) ctx.add(2, dv);
        if (need_bias) ctx.add(bias_k, dbias);
    });
}

// ---- distance penalties and ALiBi (SPEC.md section 3) ---------------------------------------
//
// Note [Penalties belong in the logits]
// Speech-Transformer asks for a bigger penalty on more distant position pairs. The seed adds it
// to the post-softmax weights and renormalises linearly (penalize_weights). Adding -scale * D
// to the scaled logits instead (distance_penalty as pure_attention's bias) is the better
// default, for four reasons:
//   - The weights stay a distribution: softmax(S - scale D) is the weights multiplied by
//     exp(-scale D) and renormalised (SPEC.md section 3), positive and summing to 1 for any
//     scale. Added to the weights, a penalty larger than a weight drives it negative, so it must
//     be clamped, and a row the penalty empties has nothing left to renormalise (0 / 0: NaN).
//   - The penalty is relative: exp(-scale D) scales every weight by the same factor at a given
//     distance, however peaked the row. An additive penalty on the weights barely dents a large
//     weight and wipes out every small one.
//   - Gradients stay smooth: the clamp passes no gradient to the weights it zeroed, so those
//     pairs can never learn their way back.
//   - It costs nothing: a bias inside the fused kernel, not three more (B, h, Lq, Lk) tensors on
//     the tape; ALiBi is the same mechanism with one slope per head.

Alignment parse_alignment(const std::string& name, const char* op) {
    if (name == "top_left") return Alignment::top_left;
    if (name == "bottom_right") return Alignment::bottom_right;
    if (name == "proportional") return Alignment::proportional;
    throw ShapeError(op, fmt::format("unknown alignment '{}'; expected top_left, bottom_right or proportional", name));
}

namespace {

// A value on the current tape, without gradient.
Var constant(const char* op, Tensor value) { return Tape::current().record(op, std::move(value), {}, nullptr); }

// A new tensor of `shape` with element (r, j) = f(r, j), r the flat row over the leading axes
// and j the last axis; rows in parallel.
template <class F> Tensor tabulate(const Shape& shape, DType dtype, const char* op, F f) {
    Tensor out = Tensor::empty(shape, dtype);
    const std::int64_t cols = shape.back(), rows = cols == 0 ? 0 : shape.numel() / cols;
    dispatch_float(dtype, op, [&](auto tag) {
        using T = decltype(tag);
        T* p = out.data<T>();
        detail::for_rows(rows, cols, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t r = lo; r < hi; ++r) {
                for (std::int64_t j = 0; j < cols; ++j) p[r * cols + j] = static_cast<T>(f(r, j));
            }
        });
    });
    return out;
}

std::vector<double> slopes(std::int64_t n_heads) {
    std::vector<double> m;
    if (std::has_single_bit(static_cast<std::uint64_t>(n_heads))) {
        for (std::int64_t k = 1; k <= n_heads; ++k) m.push_back(std::exp2(-8.0 * static_cast<double>(k) / n_heads));
        return m;
    }
    const auto c = static_cast<std::int64_t>(std::bit_floor(static_cast<std::uint64_t>(n_heads)));
    m = slopes(c);
    const std::vector<double> finer = slopes(2 * c);
    for (std::size_t i = 0; static_cast<std::int64_t>(m.size()) < n_heads; i += 2) m.push_back(finer[i]);
    return m;
}

void check_heads(std::int64_t n_heads, const char* op) {
    if (n_heads < 1) throw ShapeError(op, fmt::format("n_heads must be positive, got {}", n_heads));
}

void check_lengths(std::int64_t lq, std::int64_t lk, const char* op) {
    if (lq < 0 || lk < 0) throw ShapeError(op, fmt::format("lengths must not be negative, got Lq = {}, Lk = {}", lq, lk));
}

}  // namespace

// -> (Lq, Lk): -scale * D[i, j], D = min(max(0, |i' - j| - width), clip if clip > 0)
Var distance_penalty(std::int64_t lq, std::int64_t lk, double scale, double width, double clip, Alignment align,
                     DType dtype) {
    const char* op = "distance_penalty";
    check_lengths(lq, lk, op);
    if (!(width >= 0.0)) throw ShapeError(op, fmt::format("width must not be negative, got {}", width));
    if (!(clip >= 0.0)) throw ShapeError(op, fmt::format("clip must not be negative, got {}", clip));
    auto query_position = [=](std::int64_t i) {
        const auto row = static_cast<double>(i);
        switch (align) {
            case Alignment::bottom_right: return row + static_cast<double>(lk - lq);
            case Alignment::proportional: return row * static_cast<double>(lk) / static_cast<double>(lq);
            case Alignment::top_left: break;
        }
        return row;
    };
    return constant(op, tabulate(Shape{lq, lk}, dtype, op, [=](std::int64_t i, std::int64_t j) {
        double distance = std::max(0.0, std::abs(query_position(i) - static_cast<double>(j)) - width);
        if (clip > 0.0) distance = std::min(distance, clip);
        return -scale * distance;
    }));
}

// weights (..., Lk), penalty broadcast to it -> (..., Lk)  (Note [Penalties belong in the logits])
Var penalize_weights(Var weights, Var penalty) {
    const char* op = "penalize_weights";
    if (!is_floating(weights.dtype()) || penalty.dtype() != weights.dtype() || weights.ndim() == 0) {
        throw ShapeError(op, fmt::format("expected f32 or f64 weights with at least one axis and a penalty of the same "
                                         "dtype, got {} {} and {} {}",
                                         dtype_name(weights.dtype()), weights.shape().str(), dtype_name(penalty.dtype()),
                                         penalty.shape().str()));
    }
    if (!broadcasts_to(penalty.shape(), weights.shape())) {
        throw ShapeError(op, fmt::format("penalty {} does not broadcast to weights {}", penalty.shape().str(),
                                         weights.shape().str()));
    }
    // The seed lifts every weight by |min| over the whole batch; the clamp keeps rows independent.
    Var kept = clamp(add(weights, penalty), 0.0, std::nullopt);
    return div(kept, sum(kept, {-1}, true));
}

// -> (n_heads,)
Var alibi_slopes(std::int64_t n_heads, DType dtype) {
    const char* op = "alibi_slopes";
    check_heads(n_heads, op);
    ElementLimit::check(Shape{n_heads});   // before the slopes' own table (Note [Element limit])
    const std::vector<double> m = slopes(n_heads);
    return constant(op, tabulate(Shape{n_heads}, dtype, op, [&](std::int64_t, std::int64_t h) { return m[h]; }));
}

// -> (n_heads, Lq, Lk): -m_h |i - j|, or causal -m_h (i - j) for j <= i and the masked logit
// (-1e9, as a mask gives) beyond, so that causal ALiBi hides the future by itself, with or
// without a causal mask. It needs no alignment: the -m_h i part is constant along a row, and
// softmax ignores it.
Var alibi_bias(std::int64_t n_heads, std::int64_t lq, std::int64_t lk, bool causal, DType dtype) {
    const char* op = "alibi_bias";
    check_heads(n_heads, op);
    check_lengths(lq, lk, op);
    ElementLimit::check(Shape{n_heads, lq, lk});   // before the slopes' own table (Note [Element limit])
    const std::vector<double> m = slopes(n_heads);
    return constant(op, tabulate(Shape{n_heads, lq, lk}, dtype, op, [&](std::int64_t r, std::int64_t j) {
        const std::int64_t h = r / lq, i = r % lq;
        if (causal && j > i) return kMaskedLogit;
        return -m[static_cast<std::size_t>(h)] * static_cast<double>(std::abs(i - j));
    }));
}

// ---- attention with a penalty ---------------------------------------------------------------
//
// Note [Penalty on the weights]
// The Speech-Transformer seed adds its penalty to the post-softmax weights and renormalises
// linearly (on = weights). That path cannot use the fused kernel: penalized_attention composes
// primitive ops, the weights of attention_weights penalised by penalize_weights, dropout, and
// the product with V. A penalty on the logits (the default, Note [Penalties belong in the
// logits]) is a bias inside the fused op.

PenaltyOn parse_penalty_on(const std::string& name, const char* op) {
    if (name == "logits") return PenaltyOn::logits;
    if (name == "weights") return PenaltyOn::weights;
    throw ShapeError(op, fmt::format("on must be \"logits\" or \"weights\", got \"{}\"", name));
}

namespace {

bool on_weights(const AttentionPenalty& penalty) {
    const auto* distance = std::get_if<DistancePenalty>(&penalty);
    return distance && distance->on == PenaltyOn::weights;
}

// -> (Lq, Lk) or (n_heads, Lq, Lk): the additive bias a penalty gives, no gradient
Var penalty_bias(const AttentionPenalty& penalty, std::int64_t n_heads, std::int64_t lq, std::int64_t lk, DType dtype) {
    if (const auto* alibi = std::get_if<AlibiPenalty>(&penalty)) return alibi_bias(n_heads, lq, lk, alibi->causal, dtype);
    const auto& distance = std::get<DistancePenalty>(penalty);
    return distance_penalty(lq, lk, distance.scale, distance.width, distance.clip, distance.align, dtype);
}

// `bias` with a penalty on the logits added to it
std::optional<Var> with_logit_penalty(std::optional<Var> bias, const AttentionPenalty& penalty, std::int64_t n_heads,
                                      std::int64_t lq, std::int64_t lk, DType dtype) {
    if (std::holds_alternative<std::monostate>(penalty) || on_weights(penalty)) return bias;
    Var extra = penalty_bias(penalty, n_heads, lq, lk, dtype);
    return bias ? *bias + extra : extra;
}

}  // namespace

// q (B, Lq, d), k (B, Lk, d), mask and bias broadcast to (B, h, Lq, Lk) -> weights (B, h, Lq, Lk)
Var attention_weights(Var q, Var k, std::optional<Var> mask, std::int64_t n_heads, std::optional<Var> bias,
                      const AttentionPenalty& penalty) {
    const char* op = "attention_weights";
    if (q.ndim() != 3 || k.ndim() != 3 || q.shape()[0] != k.shape()[0] || q.shape()[2] != k.shape()[2]) {
        throw ShapeError(op, fmt::format("expects q (B, Lq, d) and k (B, Lk, d), got {} and {}", q.shape().str(), k.shape().str()));
    }
    const std::int64_t batch = q.shape()[0], lq = q.shape()[1], lk = k.shape()[1], d = q.shape()[2];
    if (n_heads < 1 || d % n_heads != 0) throw ShapeError(op, fmt::format("d = {} is not divisible by n_heads = {}", d, n_heads));
    const std::int64_t d_head = d / n_heads;
    // (B, L, d) -> (B, h, L, d_head): head h owns features [h d_head, (h + 1) d_head)
    auto split_heads = [&](Var x) { return permute(reshape(x, Shape{batch, x.shape()[1], n_heads, d_head}), {0, 2, 1, 3}); };
    Var logits = matmul(split_heads(q), transpose(split_heads(k), -2, -1)) * (1.0 / std::sqrt(static_cast<double>(d_head)));
    bias = with_logit_penalty(bias, penalty, n_heads, lq, lk, q.dtype());
    if (bias) logits = logits + *bias;
    if (mask) logits = where(*mask, logits, full(Shape{}, kMaskedLogit, logits.dtype()));
    Var weights = softmax(logits, -1);
    if (!on_weights(penalty)) return weights;
    return penalize_weights(weights, penalty_bias(penalty, n_heads, lq, lk, weights.dtype()));
}

// q (B, Lq, d), k and v (B, Lk, d) -> (B, Lq, d)
Var penalized_attention(Var q, Var k, Var v, std::optional<Var> mask, std::int64_t n_heads, double dropout_rate,
                        const AttentionPenalty& penalty, std::optional<Var> bias) {
    if (!on_weights(penalty)) {
        // a rank the fused op refuses is its error to report, with every operand's shape
        if (q.ndim() == 3 && k.ndim() == 3) bias = with_logit_penalty(bias, penalty, n_heads, q.shape()[1], k.shape()[1], q.dtype());
        return pure_attention(q, k, v, mask, n_heads, dropout_rate, bias);
    }
    // Note [Penalty on the weights]: out = merge_heads(dropout(penalised weights) V)
    Var weights = dropout(attention_weights(q, k, mask, n_heads, bias, penalty), dropout_rate);
    const std::int64_t batch = q.shape()[0], lq = q.shape()[1], lk = k.shape()[1], d = q.shape()[2], d_head = d / n_heads;
    Var heads_of_v = permute(reshape(v, Shape{batch, lk, n_heads, d_head}), {0, 2, 1, 3});
    return reshape(permute(matmul(weights, heads_of_v), {0, 2, 1, 3}), Shape{batch, lq, d});
}

// ---- registry -------------------------------------------------------------------------------
void register_attention(Registry& r) {
    r.def("pure_attention",
          {arg::tensor("q"), arg::tensor("k"), arg::tensor("v"), arg::tensor("mask", arg::none), arg::integer("n_heads", 1),
           arg::number("dropout", 0.0), arg::tensor("bias", arg::none)},
          "Trax's PureAttention, fused: multi-head softmax(q k^T / sqrt(d_head) + bias, mask) v with dropout on the weights "
          "in train mode",
          &pure_attention);
    r.def("distance_penalty",
          {arg::integer("lq"), arg::integer("lk"), arg::number("scale", 1.0), arg::number("width", 0.0), arg::number("clip", 0.0),
           arg::string("align", "top_left"), arg::dtype()},
          "-scale * distance between query and key positions (free band width, clipped at clip > 0), an attention bias",
          &distance_penalty, Gradient::none);
    r.def("penalize_weights", {arg::tensor("weights"), arg::tensor("penalty")},
          "adds a penalty to attention weights, clamps at 0 and renormalises linearly over the last axis", &penalize_weights);
    r.def("alibi_slopes", {arg::integer("n_heads"), arg::dtype()}, "ALiBi's slope per head", &alibi_slopes, Gradient::none);
    r.def("alibi_bias", {arg::integer("n_heads"), arg::integer("lq"), arg::integer("lk"), arg::boolean("causal", false), arg::dtype()},
          "ALiBi's attention bias -m_h |i - j| per head (causal: -m_h (i - j) for j <= i, the masked logit -1e9 above)",
          &alibi_bias, Gradient::none);
}

}  // namespace wengert
