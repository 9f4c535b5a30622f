// Convolutions and pooling over images: conv2d, max_pool2d, avg_pool2d, global_avg_pool2d.
//
// Note [Image layout]
// An image batch is (N, H, W, C), channels last, as Keras lays it out by default and as
// fashion_mnist(layout = "image") yields it; a conv2d kernel is (KH, KW, C / groups, F), as
// Keras stores a Conv2D kernel. Channels last because it makes a convolution one matrix
// product with nothing moved around it: an output pixel's receptive field is KH runs of
// KW * C contiguous values, the kernel read as a (KH KW C, F) matrix is the kernel itself, the
// product's output (N OH OW, F) is the NHWC output, and the bias and the activation then run
// over contiguous rows of F, as in a dense layer (Note [Fused linear]). Channels first
// (PyTorch's NCHW) needs a transpose of the output or of every receptive field instead.
// Porting weights: a PyTorch Conv2d weight (F, C / groups, KH, KW) is permute(w, (2, 3, 1, 0))
// here, and an NCHW batch permute(x, (0, 2, 3, 1)); a Keras kernel needs nothing.
//
// Note [Blocked im2col]
// conv2d as a product: row r of a "column" matrix holds output pixel r's receptive field,
// tap by tap with channels innermost ((i, j, c), the kernel's own order: KH KW Cg values for
// Cg = C / groups), and y = col @ w. Materialising col whole (im2col) copies the input KH KW
// times, 9x for 3x3. Here col is gathered a block at a time: kBlockElems values, R rows with
// R fixed by the shape, into a buffer of the calling thread that stays in its cache, and each
// block is one single-threaded gemm (BLIS packs it again into its panels, in cache too).
// Blocks run in parallel; since R depends on the shape alone and each row is computed by one
// gemm call over all of k, results do not depend on the thread count. So a block's product may
// run on BLIS's small/skinny ("sup") kernels at any size (gemm_unsplit; Note [Matmul threading]
// keeps them from products it splits itself): with a side of 32 or 64 filters they run the
// convnet's second layer at twice the conventional path's speed.
//   forward   y[rows] = act(col[rows] @ w + b), bias and activation on the block while it
//             is in cache
//   backward  g' = g [y > 0] (relu), db = sum over rows of g' (bias_activation_backward);
//             dw = sum over blocks of col[rows]^T @ g'[rows]: blocks accumulate (beta = 1) in
//             order within at most kWeightChunks chunks, fixed by the shape, whose sums are
//             then added in order;
//             dx = the transposed convolution, itself a conv2d of g' gathered the same way:
//             dx[n, h, w, c] = sum over taps (i, j) and filters f of g'[n, o, p, f] w[i, j, c, f]
//             where o s - pad + i d = h, that is a convolution of g' spread out by the stride
//             (zeros between its pixels), padded by (KH - 1) d - pad, with the kernel flipped
//             (i -> KH - 1 - i) and its channel axes swapped. A gather like the forward: no two
//             blocks write one element, so no scatter, no atomics, no order to fix.
// The groups of a grouped (or depthwise) convolution are separate products over the same
// gathered block, each reading its Cg channels and writing its F / groups columns.
// tests/engine/ops/cases_conv.cpp compares every case with a direct loop over the definition.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <tuple>
#include <vector>

#include "../kernels/bias_activation.hpp"
#include "../kernels/gemm.hpp"
#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

using detail::dispatch_float;

namespace {

constexpr std::int64_t kBlockElems = std::int64_t{1} << 17;   // a gathered block: 512 KiB in f32
constexpr std::int64_t kWeightChunks = 16;

// ---------------------------------------------------------------- geometry

// One spatial axis of a window op: `in` positions, a window of `kernel` taps `dilation` apart,
// moved by `stride`, starting at -pad_lo.
struct Axis {
    std::int64_t in, kernel, stride, dilation, pad_lo, pad_hi, out;
};

// The output extent along an axis, or a ShapeError naming the rule (`what` describes the op's
// operands for the message).
Axis make_axis(const char* op, const char* name, std::int64_t in, std::int64_t kernel, std::int64_t stride, std::int64_t dilation,
               std::int64_t pad_lo, std::int64_t pad_hi, bool same, bool ceil_mode, const std::string& what) {
    if (kernel < 1 || stride < 1 || dilation < 1) {
        throw ShapeError(op, fmt::format("kernel, stride and dilation must be positive, got {} {}, {}, {}: {}", name, kernel, stride,
                                         dilation, what));
    }
    const std::int64_t span = dilation * (kernel - 1) + 1;
    if (same) {
        std::int64_t out = (in + stride - 1) / stride;
        std::int64_t total = std::max<std::int64_t>((out - 1) * stride + span - in, 0);
        pad_lo = total / 2;
        pad_hi = total - pad_lo;
    }
    if (pad_lo < 0 || pad_hi < 0) throw ShapeError(op, fmt::format("padding must not be negative: {}", what));
    const std::int64_t padded = in + pad_lo + pad_hi;
    if (padded < span) {
        throw ShapeError(op, fmt::format("the kernel is larger than the input: its {} spans {} (kernel {}, dilation {}) where the "
                                         "padded input has {}: {}",
                                         name, span, kernel, dilation, padded, what));
    }
    std::int64_t out = (padded - span) / stride + 1;
    // PyTorch's ceil_mode: one more window where the last starts inside the input or its left padding
    if (ceil_mode && (padded - span) % stride != 0 && out * stride < in + pad_lo) ++out;
    return {in, kernel, stride, dilation, pad_lo, pad_hi, out};
}

std::string pads_str(const Padding2d& p) {
    return p.same ? std::string("\"same\"") : fmt::format("({}, {}, {}, {})", p.top, p.bottom, p.left, p.right);
}

// A convolution gathered from a contiguous (N, H, W, C) image: rows are the output pixels
// (N, OH, OW) and each row's (KH, KW, Cg) taps read the image at
//   u = o * stride - pad_lo + i * dilation   (in the image spread out by `spread`: its pixel
//   h sits at h * spread, zeros between; spread > 1 only for the input gradient)
struct ConvGeometry {
    std::int64_t n, c, groups;
    Axis y, x;
    std::int64_t spread_y = 1, spread_x = 1;
    std::int64_t h() const { return y.in; }
    std::int64_t w() const { return x.in; }
    std::int64_t cg() const { return c / groups; }
    std::int64_t rows() const { return n * y.out * x.out; }
    std::int64_t width() const { return y.kernel * x.kernel * cg(); }
    std::int64_t block_rows() const { return std::clamp<std::int64_t>(kBlockElems / std::max<std::int64_t>(width(), 1), 16, 4096); }
    std::int64_t blocks() const { return (rows() + block_rows() - 1) / block_rows(); }
};

// The position in the (unspread) image a tap reads along one axis, or -1 for padding (or a
// zero between spread pixels).
inline std::int64_t source(const Axis& a, std::int64_t spread, std::int64_t o, std::int64_t tap) {
    std::int64_t u = o * a.stride - a.pad_lo + tap * a.dilation;
    if (u < 0) return -1;
    if (spread != 1) {
        if (u % spread != 0) return -1;
        u /= spread;
    }
    return u < a.in ? u : -1;
}

// col (r1 - r0, KH KW Cg): rows r0..r1 of group g's column matrix (Note [Blocked im2col]).
// Where a tap row's KW taps are one contiguous run of the image (one group, dilation 1, no
// spread, no padding in the row), it is one copy.
template <class T> void gather(const ConvGeometry& geo, const T* image, std::int64_t group, std::int64_t r0, std::int64_t r1, T* col) {
    const std::int64_t cg = geo.cg(), width = geo.width(), per_image = geo.y.out * geo.x.out, kw = geo.x.kernel;
    const bool runs = geo.groups == 1 && geo.x.dilation == 1 && geo.spread_x == 1;
    // runs are short (a tap's channels, or a row of taps): fixed-size copies, which the compiler
    // inlines, rather than a memcpy call per run
    auto copy = [](const T* from, std::int64_t count, T* to) {
        constexpr std::int64_t chunk = 32 / sizeof(T);
        for (; count >= chunk; count -= chunk, from += chunk, to += chunk) std::memcpy(to, from, chunk * sizeof(T));
        for (std::int64_t i = 0; i < count; ++i) to[i] = from[i];
    };
    // row r is output pixel (n, oy, ox): divided out once, then counted along
    std::int64_t n = r0 / per_image, oy = r0 % per_image / geo.x.out, ox = r0 % geo.x.out;
    for (std::int64_t r = r0; r < r1; ++r, ++ox) {
        if (ox == geo.x.out) {
            ox = 0;
            if (++oy == geo.y.out) {
                oy = 0;
                ++n;
            }
        }
        const std::int64_t first_column = ox * geo.x.stride - geo.x.pad_lo;
        T* dst = col + (r - r0) * width;
        for (std::int64_t i = 0; i < geo.y.kernel; ++i) {
            const std::int64_t u = source(geo.y, geo.spread_y, oy, i);
            if (u < 0) {
                std::fill(dst, dst + kw * cg, T(0));
                dst += kw * cg;
                continue;
            }
            const T* image_row = image + (n * geo.h() + u) * geo.w() * geo.c + group * cg;
            if (runs && first_column >= 0 && first_column + kw <= geo.w()) {
                copy(image_row + first_column * geo.c, kw * cg, dst);
                dst += kw * cg;
            } else {
                for (std::int64_t j = 0; j < kw; ++j, dst += cg) {
                    const std::int64_t v = source(geo.x, geo.spread_x, ox, j);
                    if (v < 0) std::fill(dst, dst + cg, T(0));
                    else copy(image_row + v * geo.c, cg, dst);
                }
            }
        }
    }
}

// A buffer of the calling thread for one gathered block.
template <class T> T* block_buffer(std::int64_t elems) {
    static thread_local std::vector<T> buffer;
    if (buffer.size() < static_cast<std::size_t>(elems)) buffer.resize(static_cast<std::size_t>(elems));
    return buffer.data();
}

// Runs f(block) over [0, blocks), in parallel when the work is large enough to share.
template <class F> void for_blocks(std::int64_t blocks, std::int64_t work, F&& f) {
    if (blocks == 1 || work < detail::kThreadedGemmWork || max_threads() == 1) {
        for (std::int64_t b = 0; b < blocks; ++b) f(b);
        return;
    }
    tbb::parallel_for(std::int64_t{0}, blocks, [&](std::int64_t b) { f(b); });
}

// y (rows, f) = act(col @ w + bias): w (KH KW Cg, f) with group g's filters in columns
// [g f/groups, (g + 1) f/groups); bias null for none.
template <class T>
void conv_forward(const ConvGeometry& geo, const T* image, const T* w, std::int64_t f, const T* bias, Activation activation, T* y) {
    const std::int64_t width = geo.width(), rows_per = geo.block_rows(), fg = f / geo.groups;
    for_blocks(geo.blocks(), geo.rows() * width * fg, [&](std::int64_t b) {
        const std::int64_t r0 = b * rows_per, r1 = std::min(geo.rows(), r0 + rows_per);
        T* col = block_buffer<T>(rows_per * width);
        for (std::int64_t g = 0; g < geo.groups; ++g) {
            gather(geo, image, g, r0, r1, col);
            detail::gemm_unsplit<T>(r1 - r0, fg, width, T(1), col, width, 1, w + g * fg, f, 1, T(0), y + r0 * f + g * fg, f, 1);
        }
        if (bias || activation != Activation::none) {
            for (std::int64_t r = r0; r < r1; ++r) detail::bias_activation(y + r * f, bias, f, activation);
        }
    });
}

// dw (KH KW Cg, f) = col^T @ gy over every row, gy (rows, f) (Note [Blocked im2col])
template <class T> void conv_weight_grad(const ConvGeometry& geo, const T* image, const T* gy, std::int64_t f, T* dw) {
    const std::int64_t width = geo.width(), rows_per = geo.block_rows(), fg = f / geo.groups, blocks = geo.blocks();
    const std::int64_t per_chunk = (blocks + kWeightChunks - 1) / kWeightChunks, chunks = (blocks + per_chunk - 1) / per_chunk;
    const std::int64_t size = width * f;
    if (blocks == 0) {
        std::fill(dw, dw + size, T(0));
        return;
    }
    // the chunks' sums, in a tensor so that the engine's storage cache reuses it step after step
    Tensor partials = chunks > 1 ? Tensor::empty(Shape{chunks * size}, dtype_of<T>()) : Tensor();
    T* partial = chunks > 1 ? partials.data<T>() : nullptr;
    for_blocks(chunks, geo.rows() * width * fg, [&](std::int64_t chunk) {
        T* sums = chunks > 1 ? partial + chunk * size : dw;
        T* col = block_buffer<T>(rows_per * width);
        for (std::int64_t b = chunk * per_chunk; b < std::min(blocks, (chunk + 1) * per_chunk); ++b) {
            const std::int64_t r0 = b * rows_per, r1 = std::min(geo.rows(), r0 + rows_per);
            const T beta = b == chunk * per_chunk ? T(0) : T(1);
            for (std::int64_t g = 0; g < geo.groups; ++g) {
                gather(geo, image, g, r0, r1, col);
                detail::gemm_unsplit<T>(width, fg, r1 - r0, T(1), col, 1, width, gy + r0 * f + g * fg, f, 1, beta, sums + g * fg, f, 1);
            }
        }
    });
    if (chunks == 1) return;
    std::copy(partial, partial + size, dw);
    for (std::int64_t chunk = 1; chunk < chunks; ++chunk) {
        const T* sums = partial + chunk * size;
        for (std::int64_t e = 0; e < size; ++e) dw[e] += sums[e];
    }
}

// The transposed convolution's kernel (KH, KW, F / groups, C) from w (KH, KW, Cg, F): flipped,
// with group g's channel axes swapped (Note [Blocked im2col]).
template <class T> std::vector<T> transposed_kernel(const T* w, std::int64_t kh, std::int64_t kw, std::int64_t cg, std::int64_t f, std::int64_t groups) {
    const std::int64_t fg = f / groups, c = cg * groups;
    std::vector<T> out(static_cast<std::size_t>(kh * kw * fg * c));
    for (std::int64_t i = 0; i < kh; ++i)
        for (std::int64_t j = 0; j < kw; ++j)
            for (std::int64_t g = 0; g < groups; ++g)
                for (std::int64_t ch = 0; ch < cg; ++ch)
                    for (std::int64_t k = 0; k < fg; ++k)
                        out[static_cast<std::size_t>(((i * kw + j) * fg + k) * c + g * cg + ch)] =
                            w[(((kh - 1 - i) * kw + (kw - 1 - j)) * cg + ch) * f + g * fg + k];
    return out;
}

// The geometry of dx's convolution of gy (N, OH, OW, F) back onto (N, H, W, C).
ConvGeometry input_grad_geometry(const ConvGeometry& geo, std::int64_t f) {
    auto back = [](const Axis& a) {
        const std::int64_t pad = (a.kernel - 1) * a.dilation - a.pad_lo;
        return Axis{a.out, a.kernel, 1, a.dilation, pad, 0, a.in};
    };
    ConvGeometry t{geo.n, f, geo.groups, back(geo.y), back(geo.x)};
    t.spread_y = geo.y.stride;
    t.spread_x = geo.x.stride;
    return t;
}

}  // namespace

Padding2d parse_padding(const std::string& name, const char* op) {
    if (name == "valid") return {};
    if (name == "same") return {true};
    throw ShapeError(op, fmt::format("padding must be \"valid\", \"same\" or explicit pads, got \"{}\"", name));
}

Padding2d explicit_padding(const std::vector<std::int64_t>& pads, const char* op) {
    for (std::int64_t p : pads) {
        if (p < 0) throw ShapeError(op, fmt::format("padding must not be negative, got {}", p));
    }
    switch (pads.size()) {
        case 1: return {false, pads[0], pads[0], pads[0], pads[0]};
        case 2: return {false, pads[0], pads[0], pads[1], pads[1]};
        case 4: return {false, pads[0], pads[1], pads[2], pads[3]};
        default:
            throw ShapeError(op, fmt::format("explicit padding is p, (p_h, p_w) or (top, bottom, left, right); got {} values", pads.size()));
    }
}

// x (N, H, W, C), w (KH, KW, C / groups, F), b (F) -> (N, OH, OW, F)  (Note [Blocked im2col])
Var conv2d(Var x, Var w, std::optional<Var> b, const Conv2dOptions& o) {
    const char* op = "conv2d";
    std::string what = fmt::format("x {}, w {}{}, stride ({}, {}), padding {}, dilation ({}, {}), groups {}", x.shape().str(), w.shape().str(),
                                   b ? ", b " + b->shape().str() : "", o.stride_h, o.stride_w, pads_str(o.padding), o.dilation_h,
                                   o.dilation_w, o.groups);
    if (!is_floating(x.dtype()) || w.dtype() != x.dtype() || (b && b->dtype() != x.dtype())) {
        throw ShapeError(op, fmt::format("expected f32 or f64 operands of one dtype, got x {}, w {}{}: {}", dtype_name(x.dtype()),
                                         dtype_name(w.dtype()), b ? fmt::format(", b {}", dtype_name(b->dtype())) : "", what));
    }
    if (x.ndim() != 4) throw ShapeError(op, fmt::format("x must be an image batch (N, H, W, C): {}", what));
    if (w.ndim() != 4) throw ShapeError(op, fmt::format("w must be a kernel (KH, KW, C / groups, F): {}", what));
    const std::int64_t n = x.shape()[0], c = x.shape()[3], cg = w.shape()[2], f = w.shape()[3];
    if (o.groups < 1) throw ShapeError(op, fmt::format("groups must be positive: {}", what));
    if (c % o.groups != 0 || f % o.groups != 0) {
        throw ShapeError(op, fmt::format("groups must divide the channels {} and the filters {}: {}", c, f, what));
    }
    if (cg * o.groups != c) {
        throw ShapeError(op, fmt::format("x has {} channels but w takes {} per group x {} group{} = {}: {}", c, cg, o.groups,
                                         o.groups == 1 ? "" : "s", cg * o.groups, what));
    }
    if (b && !(b->shape() == Shape{f})) throw ShapeError(op, fmt::format("b must have shape [{}], one per filter: {}", f, what));
    const Padding2d& p = o.padding;
    ConvGeometry geo{n, c, o.groups,
                     make_axis(op, "height", x.shape()[1], w.shape()[0], o.stride_h, o.dilation_h, p.top, p.bottom, p.same, false, what),
                     make_axis(op, "width", x.shape()[2], w.shape()[1], o.stride_w, o.dilation_w, p.left, p.right, p.same, false, what)};

    Tensor image = x.value().contiguous(), kernel = w.value().contiguous();
    Tensor bias = b ? b->value().contiguous() : Tensor();
    Tensor out = Tensor::empty(Shape{n, geo.y.out, geo.x.out, f}, x.dtype());
    dispatch_float(x.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        conv_forward<T>(geo, image.data<T>(), kernel.data<T>(), f, b ? bias.data<T>() : nullptr, o.activation, out.data<T>());
    });

    // Only what each gradient reads: the image for dw, the kernel for dx, y for the relu's mask.
    Saved saved_x = w.requires_grad() ? Saved(image) : Saved();
    Saved saved_w = x.requires_grad() ? Saved(kernel) : Saved();
    Saved saved_y = o.activation == Activation::relu ? Saved(out) : Saved();
    std::vector<Var> inputs{x, w};
    if (b) inputs.push_back(*b);
    const bool has_b = b.has_value();
    const Shape x_shape = x.shape(), w_shape = w.shape();
    const Activation activation = o.activation;
    return x.tape()->record(op, out, inputs, [saved_x, saved_w, saved_y, geo, x_shape, w_shape, f, has_b, activation, op](BackwardCtx& ctx) {
        // y = act(conv(x, w) + b);  g' = g [y > 0] (relu);  db = sum of g';  dw = col^T g';
        // dx = the transposed convolution of g'
        Tensor g = ctx.grad_out().contiguous();
        const bool want_db = has_b && ctx.needs(2);
        const std::int64_t rows = geo.rows();
        if (activation == Activation::relu || want_db) {
            Tensor masked = activation == Activation::relu ? Tensor::empty(g.shape(), g.dtype()) : g;
            Tensor db = want_db ? Tensor::empty(Shape{f}, g.dtype()) : Tensor();
            dispatch_float(g.dtype(), op, [&](auto tag) {
                using T = decltype(tag);
                detail::bias_activation_backward(g.data<T>(), activation == Activation::relu ? saved_y.get(op).data<T>() : nullptr,
                                                 masked.data<T>(), want_db ? db.data<T>() : nullptr, rows, f);
            });
            g = masked;
            if (want_db) ctx.add(2, db);
        }
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            if (ctx.needs(1)) {
                Tensor dw = Tensor::empty(w_shape, g.dtype());
                conv_weight_grad<T>(geo, saved_x.get(op).data<T>(), g.data<T>(), f, dw.data<T>());
                ctx.add(1, dw);
            }
            if (ctx.needs(0)) {
                std::vector<T> flipped = transposed_kernel<T>(saved_w.get(op).data<T>(), w_shape[0], w_shape[1], w_shape[2], f, geo.groups);
                Tensor dx = Tensor::empty(x_shape, g.dtype());
                conv_forward<T>(input_grad_geometry(geo, f), g.data<T>(), flipped.data(), geo.c, nullptr, Activation::none, dx.data<T>());
                ctx.add(0, dx);
            }
        });
    });
}

// ---------------------------------------------------------------- pooling

namespace {

struct PoolGeometry {
    std::int64_t n, c;
    Axis y, x;
};

PoolGeometry pool_geometry(const char* op, const Var& x, const Pool2dOptions& o) {
    const Padding2d& p = o.padding;
    std::string what = fmt::format("x {}, kernel ({}, {}), stride ({}, {}), padding {}{}", x.shape().str(), o.kernel_h, o.kernel_w,
                                   o.stride_h ? o.stride_h : o.kernel_h, o.stride_w ? o.stride_w : o.kernel_w, pads_str(p),
                                   o.ceil_mode ? ", ceil_mode" : "");
    if (!is_floating(x.dtype())) throw ShapeError(op, fmt::format("expected an f32 or f64 image batch, got {}: {}", dtype_name(x.dtype()), what));
    if (x.ndim() != 4) throw ShapeError(op, fmt::format("x must be an image batch (N, H, W, C): {}", what));
    if (!p.same && (2 * std::max(p.top, p.bottom) > o.kernel_h || 2 * std::max(p.left, p.right) > o.kernel_w)) {
        throw ShapeError(op, fmt::format("padding may be at most half the kernel: {}", what));
    }
    return {x.shape()[0], x.shape()[3],
            make_axis(op, "height", x.shape()[1], o.kernel_h, o.stride_h ? o.stride_h : o.kernel_h, 1, p.top, p.bottom, p.same, o.ceil_mode, what),
            make_axis(op, "width", x.shape()[2], o.kernel_w, o.stride_w ? o.stride_w : o.kernel_w, 1, p.left, p.right, p.same, o.ceil_mode, what)};
}

// The window of output o along an axis, clipped to the input: taps [lo, hi) of the input.
struct Window {
    std::int64_t lo, hi;
};
inline Window window(const Axis& a, std::int64_t o) {
    std::int64_t start = o * a.stride - a.pad_lo;
    return {std::max<std::int64_t>(start, 0), std::min(start + a.kernel, a.in)};
}

// Runs f(n, oy) over every output row, in parallel over images when large; a whole image is
// one task, so the backward's adds into an image's gradient run in order.
template <class F> void for_pool_rows(const PoolGeometry& geo, F&& f) {
    auto image = [&](std::int64_t n) {
        for (std::int64_t oy = 0; oy < geo.y.out; ++oy) f(n, oy);
    };
    if (geo.n * geo.y.in * geo.x.in * geo.c < detail::kParallelGrain || geo.n == 1 || max_threads() == 1) {
        for (std::int64_t n = 0; n < geo.n; ++n) image(n);
        return;
    }
    tbb::parallel_for(std::int64_t{0}, geo.n, image);
}

// Calls f(n, at, wy, wx, oy, ox) for every window: its image, the offset of its output
// element's first channel, its taps along each axis and its position (for_pool_rows' order).
template <class F> void for_windows(const PoolGeometry& geo, F&& f) {
    for_pool_rows(geo, [&](std::int64_t n, std::int64_t oy) {
        const Window wy = window(geo.y, oy);
        for (std::int64_t ox = 0; ox < geo.x.out; ++ox) f(n, ((n * geo.y.out + oy) * geo.x.out + ox) * geo.c, wy, window(geo.x, ox), oy, ox);
    });
}

// One tap of a max-pool window over c channels: where v beats best (or is NaN), best = v and
// from = its offset. Pointers that do not alias, so that it vectorises.
template <class T>
void max_step(const T* __restrict v, T* __restrict best, std::int32_t* __restrict from, std::int32_t offset, std::int64_t c) {
    for (std::int64_t ch = 0; ch < c; ++ch) {
        const bool take = v[ch] > best[ch] || v[ch] != v[ch];
        best[ch] = take ? v[ch] : best[ch];
        from[ch] = take ? offset + static_cast<std::int32_t>(ch) : from[ch];
    }
}

}  // namespace

// x (N, H, W, C) -> (N, OH, OW, C), the largest value of each window
Var max_pool2d(Var x, const Pool2dOptions& o) {
    const char* op = "max_pool2d";
    PoolGeometry geo = pool_geometry(op, x, o);
    Tensor in = x.value().contiguous();
    Tensor out = Tensor::empty(Shape{geo.n, geo.y.out, geo.x.out, geo.c}, x.dtype());
    // for each output element, the input element (offset within its image) it came from
    auto argmax = std::make_shared<std::vector<std::int32_t>>(static_cast<std::size_t>(out.numel()));
    const std::int64_t image_size = geo.y.in * geo.x.in * geo.c;
    if (image_size > std::numeric_limits<std::int32_t>::max()) throw ShapeError(op, fmt::format("an image of {} values is too large", image_size));
    dispatch_float(x.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const T* px = in.data<T>();
        T* py = out.data<T>();
        for_windows(geo, [&](std::int64_t n, std::int64_t at, Window wy, Window wx, std::int64_t, std::int64_t) {
            T* best = py + at;
            std::int32_t* from = argmax->data() + at;
            // PyTorch's rule: the first largest value; a NaN replaces anything (Note [NaN propagates])
            const T* image = px + n * image_size;
            const std::int64_t first = (wy.lo * geo.x.in + wx.lo) * geo.c;
            for (std::int64_t ch = 0; ch < geo.c; ++ch) {
                best[ch] = image[first + ch];
                from[ch] = static_cast<std::int32_t>(first + ch);
            }
            for (std::int64_t iy = wy.lo; iy < wy.hi; ++iy) {
                for (std::int64_t ix = iy == wy.lo ? wx.lo + 1 : wx.lo; ix < wx.hi; ++ix) {
                    const std::int64_t offset = (iy * geo.x.in + ix) * geo.c;
                    max_step(image + offset, best, from, static_cast<std::int32_t>(offset), geo.c);
                }
            }
        });
    });
    const Shape x_shape = x.shape();
    return x.tape()->record(op, out, {x}, [argmax, geo, x_shape, image_size, op](BackwardCtx& ctx) {
        // dx[argmax] += g
        Tensor g = ctx.grad_out().contiguous();
        Tensor dx = Tensor::zeros(x_shape, g.dtype());
        const std::int64_t per_image = geo.y.out * geo.x.out * geo.c;
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            const T* pg = g.data<T>();
            T* pdx = dx.data<T>();
            for_pool_rows(geo, [&](std::int64_t n, std::int64_t oy) {
                const std::int64_t start = n * per_image + oy * geo.x.out * geo.c;
                for (std::int64_t e = start; e < start + geo.x.out * geo.c; ++e) pdx[n * image_size + (*argmax)[static_cast<std::size_t>(e)]] += pg[e];
            });
        });
        ctx.add(0, dx);
    });
}

// x (N, H, W, C) -> (N, OH, OW, C), each window's sum over its divisor
Var avg_pool2d(Var x, const Pool2dOptions& o) {
    const char* op = "avg_pool2d";
    PoolGeometry geo = pool_geometry(op, x, o);
    // PyTorch's divisor: the window clipped to the padded input, or (count_include_pad = false,
    // and always for "same", as TensorFlow) to the input itself
    const bool count_pad = o.count_include_pad && !o.padding.same;
    auto divisor = [geo, count_pad](std::int64_t oy, std::int64_t ox) {
        auto extent = [count_pad](const Axis& a, std::int64_t out) {
            std::int64_t start = out * a.stride - a.pad_lo;
            if (count_pad) return std::min(start + a.kernel, a.in + a.pad_hi) - start;
            Window w = window(a, out);
            return w.hi - w.lo;
        };
        return static_cast<double>(extent(geo.y, oy) * extent(geo.x, ox));
    };
    Tensor in = x.value().contiguous();
    Tensor out = Tensor::empty(Shape{geo.n, geo.y.out, geo.x.out, geo.c}, x.dtype());
    dispatch_float(x.dtype(), op, [&](auto tag) {
        using T = decltype(tag);
        const T* px = in.data<T>();
        T* py = out.data<T>();
        for_windows(geo, [&](std::int64_t n, std::int64_t at, Window wy, Window wx, std::int64_t oy, std::int64_t ox) {
            T* mean = py + at;
            std::fill(mean, mean + geo.c, T(0));
            for (std::int64_t iy = wy.lo; iy < wy.hi; ++iy) {
                for (std::int64_t ix = wx.lo; ix < wx.hi; ++ix) {
                    const T* v = px + ((n * geo.y.in + iy) * geo.x.in + ix) * geo.c;
                    for (std::int64_t ch = 0; ch < geo.c; ++ch) mean[ch] += v[ch];
                }
            }
            const T d = static_cast<T>(divisor(oy, ox));
            for (std::int64_t ch = 0; ch < geo.c; ++ch) mean[ch] /= d;   // divided, as PyTorch does
        });
    });
    const Shape x_shape = x.shape();
    return x.tape()->record(op, out, {x}, [geo, divisor, x_shape, op](BackwardCtx& ctx) {
        // dx[window] += g / divisor
        Tensor g = ctx.grad_out().contiguous();
        Tensor dx = Tensor::zeros(x_shape, g.dtype());
        dispatch_float(g.dtype(), op, [&](auto tag) {
            using T = decltype(tag);
            const T* pg = g.data<T>();
            T* pdx = dx.data<T>();
            for_windows(geo, [&](std::int64_t n, std::int64_t at, Window wy, Window wx, std::int64_t oy, std::int64_t ox) {
                const T* gv = pg + at;
                const T d = static_cast<T>(divisor(oy, ox));
                for (std::int64_t iy = wy.lo; iy < wy.hi; ++iy) {
                    for (std::int64_t ix = wx.lo; ix < wx.hi; ++ix) {
                        T* dxv = pdx + ((n * geo.y.in + iy) * geo.x.in + ix) * geo.c;
                        for (std::int64_t ch = 0; ch < geo.c; ++ch) dxv[ch] += gv[ch] / d;   // as PyTorch: g / divisor
                    }
                }
            });
        });
        ctx.add(0, dx);
    });
}

// x (N, H, W, C) -> (N, C)
Var global_avg_pool2d(Var x) {
    if (x.ndim() != 4) throw ShapeError("global_avg_pool2d", fmt::format("x must be an image batch (N, H, W, C), got {}", x.shape().str()));
    return mean(x, {1, 2});
}

namespace {

// The pools' settings as the registry reads them (Note [Registering an op]); stride: the kernel's
// when absent.
Pool2dOptions pool_options(Pair2d kernel, std::optional<Pair2d> stride, Padding2d padding, bool ceil_mode) {
    Pool2dOptions o{.kernel_h = kernel.h, .kernel_w = kernel.w, .padding = padding, .ceil_mode = ceil_mode};
    if (stride) {
        if (stride->h < 1 || stride->w < 1) throw ArgumentError("stride must be positive");
        o.stride_h = stride->h;
        o.stride_w = stride->w;
    }
    return o;
}

}  // namespace

void register_conv(Registry& r) {
    const ArgSpec padding = arg::padding("padding", "valid");
    r.def("conv2d",
          {arg::tensor("x"), arg::tensor("w"), arg::tensor("b", arg::none), arg::ints("stride", {1}), padding,
           arg::ints("dilation", {1}), arg::integer("groups", 1), arg::string("activation", "none")},
          "activation(conv(x, w) + b) over NHWC images: x (N, H, W, C), w (KH, KW, C / groups, F), b (F) -> (N, OH, OW, F); "
          "`padding` `\"valid\"`, `\"same\"` or explicit pads; `activation` `none` or `relu`, inside the op ([docs/conv.md](conv.md))",
          [](Var x, Var w, std::optional<Var> b, Pair2d stride, Padding2d pads, Pair2d dilation, std::int64_t groups,
             Activation activation) {
              return conv2d(x, w, b,
                            {.stride_h = stride.h, .stride_w = stride.w, .padding = pads, .dilation_h = dilation.h,
                             .dilation_w = dilation.w, .groups = groups, .activation = activation});
          });
    const std::vector<ArgSpec> window = {arg::tensor("x"), arg::ints("kernel_size"), arg::ints("stride", arg::none), padding,
                                         arg::boolean("ceil_mode", false)};
    r.def("max_pool2d", window,
          "the largest value of each window of NHWC images, stride the kernel's when none; explicit padding at most half the "
          "kernel, never chosen; the gradient goes to the window's first largest value, a NaN counting as largest (the last "
          "NaN), as PyTorch",
          [](Var x, Pair2d kernel, std::optional<Pair2d> stride, Padding2d pads, bool ceil_mode) {
              return max_pool2d(x, pool_options(kernel, stride, pads, ceil_mode));
          });
    std::vector<ArgSpec> averaged = window;
    averaged.push_back(arg::boolean("count_include_pad", true));
    r.def("avg_pool2d", averaged,
          "the mean of each window of NHWC images, divided as PyTorch's `avg_pool2d`: by the window clipped to the padded "
          "input, or (`count_include_pad = false`, and always with `\"same\"`, as TensorFlow) to the input itself",
          [](Var x, Pair2d kernel, std::optional<Pair2d> stride, Padding2d pads, bool ceil_mode, bool count_include_pad) {
              Pool2dOptions o = pool_options(kernel, stride, pads, ceil_mode);
              o.count_include_pad = count_include_pad;
              return avg_pool2d(x, o);
          });
    r.def("global_avg_pool2d", {arg::tensor("x")}, "the mean over height and width: (N, H, W, C) -> (N, C)", &global_avg_pool2d);
}

}  // namespace wengert
