// Note [Gradient buckets] in grad_reducer.hpp.
#include "grad_reducer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "wengert/error.hpp"

namespace wengert::dsl {

void GradReducer::begin(ParamStore& params, double share) {
    std::vector<Parameter*> trainable;
    for (Parameter* p : params.all()) {
        if (p->trainable) trainable.push_back(p);
    }
    if (trainable != layout_) {
        layout_ = trainable;
        buckets_.clear();
        where_.clear();
        bytes_ = 0;
        for (auto it = trainable.rbegin(); it != trainable.rend(); ++it) {
            Parameter* p = *it;
            const DType dtype = p->value.dtype();
            if (dtype != DType::f32 && dtype != DType::f64) throw Error(fmt::format("parameter '{}' is not f32 or f64", p->name));
            const std::int64_t bytes = p->value.numel() * static_cast<std::int64_t>(dtype_size(dtype));
            if (buckets_.empty() || buckets_.back().dtype != dtype ||
                (buckets_.back().elements > 0 &&
                 (buckets_.back().elements * static_cast<std::int64_t>(dtype_size(dtype)) + bytes > kBucketBytes))) {
                buckets_.emplace_back();
                buckets_.back().dtype = dtype;
            }
            Bucket& b = buckets_.back();
            where_[p] = {buckets_.size() - 1, b.slots.size()};
            b.slots.push_back({p, b.elements});
            b.elements += p->value.numel();
            bytes_ += bytes;
        }
        for (Bucket& b : buckets_) {
            if (b.dtype == DType::f32) b.f32.assign(static_cast<std::size_t>(b.elements), 0.0f);
            else b.f64.assign(static_cast<std::size_t>(b.elements), 0.0);
        }
    }
    for (Bucket& b : buckets_) {
        b.waiting = b.slots.size();
        for (Slot& slot : b.slots) slot.in = false;
    }
    next_ = 0;
    share_ = share;
}

void GradReducer::pack(Bucket& b, Slot& slot) {
    if (slot.in) return;
    slot.in = true;
    --b.waiting;
    Parameter& p = *slot.param;
    const std::int64_t n = p.value.numel();
    if (!p.grad.defined()) {
        if (b.dtype == DType::f32) std::fill_n(b.f32.begin() + slot.offset, n, 0.0f);
        else std::fill_n(b.f64.begin() + slot.offset, n, 0.0);
        return;
    }
    Tensor g = p.grad.contiguous();
    if (b.dtype == DType::f32) {
        const float* src = g.data<float>();
        const auto s = static_cast<float>(share_);
        float* dst = b.f32.data() + slot.offset;
        for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i] * s;
    } else {
        const double* src = g.data<double>();
        double* dst = b.f64.data() + slot.offset;
        for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i] * share_;
    }
}

void GradReducer::start_ready_buckets() {
    while (next_ < buckets_.size() && buckets_[next_].waiting == 0) {
        Bucket& b = buckets_[next_++];
        if (b.dtype == DType::f32) comm_.start_allreduce_sum(std::span<float>(b.f32));
        else comm_.start_allreduce_sum(std::span<double>(b.f64));
    }
}

void GradReducer::ready(Parameter& p) {
    auto it = where_.find(&p);
    if (it == where_.end()) return;   // frozen
    Bucket& b = buckets_[it->second.first];
    pack(b, b.slots[it->second.second]);
    start_ready_buckets();
}

void GradReducer::finish(std::vector<double>& has_grad) {
    for (Bucket& b : buckets_) {
        for (Slot& slot : b.slots) {
            has_grad.push_back(slot.param->grad.defined() ? 1.0 : 0.0);
            pack(b, slot);
        }
    }
    start_ready_buckets();
    comm_.wait_all();
    for (Bucket& b : buckets_) {
        for (Slot& slot : b.slots) {
            Parameter& p = *slot.param;
            Tensor g = Tensor::empty(p.value.shape(), b.dtype);
            const std::int64_t n = p.value.numel();
            if (b.dtype == DType::f32) std::memcpy(g.data<float>(), b.f32.data() + slot.offset, static_cast<std::size_t>(n) * sizeof(float));
            else std::memcpy(g.data<double>(), b.f64.data() + slot.offset, static_cast<std::size_t>(n) * sizeof(double));
            p.grad = g;
        }
    }
}

void GradReducer::drop_missing(const double* flags) {
    std::size_t k = 0;
    for (Bucket& b : buckets_) {
        for (Slot& slot : b.slots) {
            if (flags[k++] == 0.0) slot.param->grad = Tensor();
        }
    }
}

}  // namespace wengert::dsl
