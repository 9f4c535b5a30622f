// Matrix products: NumPy's matmul on tape values. Forward and backward are each one
// batched_gemm (kernels/gemm.hpp) on strided views: no operand is transposed by a copy, and the
// gradient of a broadcast operand is summed over its batch axes inside the same call.
#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "../kernels/gemm.hpp"
#include "families.hpp"
#include "wengert/ops.hpp"

namespace wengert {

namespace {

// The batch shapes of lhs (..., n, k) and rhs (..., k, m) broadcast, as NumPy does.
Shape broadcast_batch(const Tensor& lhs, const Tensor& rhs, const std::string& shapes) {
    int n_batch = std::max(lhs.ndim(), rhs.ndim()) - 2;
    Shape batch;
    for (int i = 0; i < n_batch; ++i) {
        int il = i - (n_batch - (lhs.ndim() - 2)), ir = i - (n_batch - (rhs.ndim() - 2));
        std::int64_t el = il < 0 ? 1 : lhs.shape()[il], er = ir < 0 ? 1 : rhs.shape()[ir];
        if (el != er && el != 1 && er != 1) {
            throw ShapeError("matmul", fmt::format("batch dimensions do not broadcast: {} ({} vs {})", shapes, el, er));
        }
        batch.push_back(std::max(el, er));
    }
    return batch;
}

}  // namespace

// a (..., n, k), b (..., k, m) -> (..., n, m), batch axes broadcast. a (k) acts as (1, k) and
// b (k) as (k, 1); the axis added is dropped from the result, as in NumPy.
Var matmul(Var a, Var b) {
    std::string shapes = fmt::format("{} x {}", a.shape().str(), b.shape().str());
    if (a.ndim() == 0 || b.ndim() == 0) throw ShapeError("matmul", "operands need at least one axis: " + shapes);
    if (!is_floating(a.dtype()) || a.dtype() != b.dtype()) {
        throw ShapeError("matmul", fmt::format("expected two f32 or two f64 operands, got {} {} x {} {}", dtype_name(a.dtype()),
                                               a.shape().str(), dtype_name(b.dtype()), b.shape().str()));
    }
    bool a_vector = a.ndim() == 1, b_vector = b.ndim() == 1;
    Tensor lhs = a_vector ? a.value().unsqueeze(0) : a.value();
    Tensor rhs = b_vector ? b.value().unsqueeze(1) : b.value();
    if (lhs.size(-1) != rhs.size(-2)) {
        throw ShapeError("matmul", fmt::format("inner dimensions differ: {} ({} vs {})", shapes, lhs.size(-1), rhs.size(-2)));
    }
    Shape out_shape = broadcast_batch(lhs, rhs, shapes);
    out_shape.push_back(lhs.size(-2));
    out_shape.push_back(rhs.size(-1));
    Tensor out = Tensor::empty(out_shape, a.dtype());
    detail::batched_gemm(lhs, rhs, out);
    if (b_vector) out = out.squeeze(out.ndim() - 1);
    if (a_vector) out = out.squeeze(out.ndim() - (b_vector ? 1 : 2));

    // Only what each gradient reads: lhs for db, rhs for da.
    Saved saved_lhs = b.requires_grad() ? Saved(lhs) : Saved();
    Saved saved_rhs = a.requires_grad() ? Saved(rhs) : Saved();
    Shape lhs_shape = lhs.shape(), rhs_shape = rhs.shape();
    return a.tape()->record("matmul", std::move(out), {a, b}, [=](BackwardCtx& ctx) {
        // out = a @ b;  da = grad_out @ b^T;  db = a^T @ grad_out, each summed over the batch
        // axes its operand was broadcast over (inside batched_gemm)
        Tensor grad_out = ctx.grad_out();
        if (b_vector) grad_out = grad_out.unsqueeze(grad_out.ndim());
        if (a_vector) grad_out = grad_out.unsqueeze(grad_out.ndim() - 1);
        if (ctx.needs(0)) {
            Tensor da = Tensor::empty(lhs_shape, grad_out.dtype());
            detail::batched_gemm(grad_out, saved_rhs.get("matmul").transpose(-1, -2), da);
            ctx.add(0, a_vector ? da.squeeze(0) : da);
        }
        if (ctx.needs(1)) {
            Tensor db = Tensor::empty(rhs_shape, grad_out.dtype());
            detail::batched_gemm(saved_lhs.get("matmul").transpose(-1, -2), grad_out, db);
            ctx.add(1, b_vector ? db.squeeze(1) : db);
        }
    });
}

void register_matmul(Registry& r) {
    r.def("matmul", {arg::tensor("a"), arg::tensor("b")},
          "NumPy matmul: (..., n, k) x (..., k, m) -> (..., n, m), batch axes broadcast, rank-1 operands promoted", &matmul);
}

}  // namespace wengert
