// Note [Gradient buckets] in grad_reducer.hpp.
#include "grad_reducer.hpp"

#include <fmt/format.h>

#include "wengert/error.hpp"

namespace wengert::dsl {

void GradReducer::begin(ParamStore& params) {
    std::vector<Parameter*> trainable;
    for (Parameter* p : params.all()) {
        if (p->trainable) trainable.push_back(p);
    }
    if (trainable != layout_) {
        layout_ = trainable;
        buckets_.clear();
        where_.clear();
        bytes_ = 0;
        std::vector<DType> dtypes;
        for (auto it = trainable.rbegin(); it != trainable.rend(); ++it) {
            Parameter* p = *it;
            const DType dtype = p->value.dtype();
            if (dtype != DType::f32 && dtype != DType::f64) throw Error(fmt::format("parameter '{}' is not f32 or f64", p->name));
            const auto size = static_cast<std::int64_t>(dtype_size(dtype));
            const std::int64_t bytes = p->value.numel() * size;
            if (buckets_.empty() || dtypes.back() != dtype ||
                (buckets_.back().elements > 0 && buckets_.back().elements * size + bytes > kBucketBytes)) {
                buckets_.emplace_back();
                dtypes.push_back(dtype);
            }
            Bucket& b = buckets_.back();
            where_[p] = {buckets_.size() - 1, b.slots.size()};
            b.slots.push_back({p, b.elements});
            b.elements += p->value.numel();
            bytes_ += bytes;
        }
        for (std::size_t i = 0; i < buckets_.size(); ++i) {
            Bucket& b = buckets_[i];
            b.buffer = Tensor::zeros(Shape{b.elements}, dtypes[i]);
            // a gradient already there (a resumed layout change) moves into the buffer
            for (Slot& slot : b.slots) {
                if (!slot.param->grad.defined()) continue;
                Tensor v = view_of(b, slot);
                v.copy_from(slot.param->grad);
                slot.param->grad = v;
            }
        }
    }
    for (Bucket& b : buckets_) {
        b.waiting = b.slots.size();
        for (Slot& slot : b.slots) slot.in = false;
    }
    next_ = 0;
}

Tensor GradReducer::view_of(const Bucket& b, const Slot& slot) const {
    return b.buffer.slice(0, slot.offset, slot.offset + slot.param->value.numel()).view(slot.param->value.shape());
}

void GradReducer::take(Bucket& b, Slot& slot) {
    if (slot.in) return;
    slot.in = true;
    --b.waiting;
    Parameter& p = *slot.param;
    slot.had_grad = p.grad.defined();
    if (slot.had_grad && p.grad.storage() == b.buffer.storage()) return;   // backward wrote into the view
    Tensor v = view_of(b, slot);
    if (slot.had_grad) v.copy_from(p.grad);   // the tape's own first gradient
    else v.fill(0.0);
}

void GradReducer::start_ready_buckets() {
    while (next_ < buckets_.size() && buckets_[next_].waiting == 0) {
        Bucket& b = buckets_[next_++];
        if (b.buffer.dtype() == DType::f32) comm_.start_allreduce_sum(std::span<float>(b.buffer.data<float>(), static_cast<std::size_t>(b.elements)));
        else comm_.start_allreduce_sum(std::span<double>(b.buffer.data<double>(), static_cast<std::size_t>(b.elements)));
    }
}

void GradReducer::ready(Parameter& p) {
    auto it = where_.find(&p);
    if (it == where_.end()) return;   // frozen
    Bucket& b = buckets_[it->second.first];
    take(b, b.slots[it->second.second]);
    start_ready_buckets();
    comm_.progress();   // the sums already started move on while backward goes on
}

void GradReducer::finish(std::vector<double>& has_grad) {
    for (Bucket& b : buckets_) {
        for (Slot& slot : b.slots) take(b, slot);
    }
    start_ready_buckets();
    comm_.wait_all();
    for (Bucket& b : buckets_) {
        b.buffer.bump_version();
        for (Slot& slot : b.slots) has_grad.push_back(slot.had_grad ? 1.0 : 0.0);
    }
}

void GradReducer::settle(const double* flags) {
    std::size_t k = 0;
    for (Bucket& b : buckets_) {
        for (Slot& slot : b.slots) {
            if (flags[k++] > 0) slot.param->grad = view_of(b, slot);
            else slot.param->grad = Tensor();
        }
    }
}

}  // namespace wengert::dsl
