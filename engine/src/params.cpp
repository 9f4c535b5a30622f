// Named parameters and their initializers.
//
// Note [Initializer formulas]
// fan_in / fan_out come from fans() (Keras's convention: kernels are (d_in, d_out), or
// (..., in_channels, out_channels) times the receptive field).
//     glorot_uniform  U(-l, l), l = sqrt(6 / (fan_in + fan_out))    Keras, PyTorch xavier_uniform_
//     glorot_normal   N(0, 2 / (fan_in + fan_out))                   PyTorch xavier_normal_
//     he_uniform      U(-l, l), l = sqrt(6 / fan_in)                 Keras, PyTorch kaiming_uniform_ (relu)
//     he_normal       N(0, 2 / fan_in)                               PyTorch kaiming_normal_ (relu)
// The uniform forms agree between Keras and PyTorch. For the normal forms Keras draws from a
// normal truncated at two standard deviations (rescaled by 1/0.8796 to keep the variance);
// wengert follows PyTorch's untruncated normal, which has the same variance.
#include "wengert/params.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "wengert/random.hpp"
#include "wengert/registry.hpp"

namespace wengert {

std::pair<double, double> fans(const Shape& shape) {
    const int n = shape.size();
    if (n == 0) return {1.0, 1.0};
    if (n == 1) return {static_cast<double>(shape[0]), static_cast<double>(shape[0])};
    double receptive_field = 1.0;
    for (int i = 0; i + 2 < n; ++i) receptive_field *= static_cast<double>(shape[i]);
    return {static_cast<double>(shape[n - 2]) * receptive_field, static_cast<double>(shape[n - 1]) * receptive_field};
}

void initialize(Tensor& t, const Init& init, Generator& gen) {
    const auto [fan_in, fan_out] = fans(t.shape());
    switch (init.kind) {
        case Init::Kind::zeros: t.fill(0.0); return;
        case Init::Kind::ones: t.fill(1.0); return;
        case Init::Kind::constant: t.fill(init.a); return;
        case Init::Kind::eye:
            if (t.ndim() != 2) throw ShapeError("eye initializer", fmt::format("needs a matrix, got shape {}", t.shape().str()));
            t.fill(0.0);
            for (std::int64_t i = 0; i < std::min(t.shape()[0], t.shape()[1]); ++i) t.select(0, i).select(0, i).fill(1.0);
            return;
        case Init::Kind::normal:
            if (!(init.b >= 0.0)) throw ShapeError("normal initializer", fmt::format("stddev must not be negative, got {}", init.b));
            gen.fill_normal(t, init.a, init.b);
            return;
        case Init::Kind::uniform:
            if (!(init.a <= init.b)) throw ShapeError("uniform initializer", fmt::format("low {} is above high {}", init.a, init.b));
            gen.fill_uniform(t, init.a, init.b);
            return;
        case Init::Kind::glorot_uniform: {
            const double limit = std::sqrt(6.0 / (fan_in + fan_out));
            gen.fill_uniform(t, -limit, limit);
            return;
        }
        case Init::Kind::glorot_normal: gen.fill_normal(t, 0.0, std::sqrt(2.0 / (fan_in + fan_out))); return;
        case Init::Kind::he_uniform: {
            const double limit = std::sqrt(6.0 / fan_in);
            gen.fill_uniform(t, -limit, limit);
            return;
        }
        case Init::Kind::he_normal: gen.fill_normal(t, 0.0, std::sqrt(2.0 / fan_in)); return;
        case Init::Kind::fan_in_uniform: {
            const double limit = 1.0 / std::sqrt(fan_in);
            gen.fill_uniform(t, -limit, limit);
            return;
        }
    }
}

Parameter& ParamStore::create(const std::string& name, const Shape& shape, DType dtype, const Init& init, Generator& gen) {
    if (Parameter* existing = find(name)) {
        if (!(existing->value.shape() == shape) || existing->value.dtype() != dtype) {
            throw ShapeError("param", fmt::format("parameter '{}' exists as {} {}, requested as {} {}", name,
                                                  dtype_name(existing->value.dtype()), existing->value.shape().str(),
                                                  dtype_name(dtype), shape.str()));
        }
        return *existing;
    }
    Tensor value = Tensor::empty(shape, dtype);
    initialize(value, init, gen);
    return add(name, std::move(value));
}

Parameter& ParamStore::add(const std::string& name, Tensor value) {
    if (name.empty()) throw ShapeError("param", "a parameter needs a name");
    if (contains(name)) throw ShapeError("param", fmt::format("parameter '{}' already exists", name));
    if (!value.defined()) throw ShapeError("param", fmt::format("parameter '{}' has no value", name));
    auto parameter = std::make_unique<Parameter>();
    parameter->name = name;
    parameter->value = value.contiguous();
    Parameter& added = *parameter;
    for (const auto& pattern : frozen_) {
        if (matches_pattern(name, pattern)) added.trainable = false;
    }
    params_.push_back(std::move(parameter));
    index_[name] = &added;
    return added;
}

bool matches_pattern(const std::string& name, const std::string& pattern) {
    // iterative glob with one backtrack point per '*': linear in practice, never exponential
    std::size_t n = 0, p = 0, star = std::string::npos, resume = 0;
    while (n < name.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
            ++n;
            ++p;
        } else if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = n;
        } else if (star != std::string::npos) {
            p = star + 1;
            n = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

void ParamStore::freeze(const std::vector<std::string>& patterns) {
    for (const auto& pattern : patterns) {
        frozen_.push_back(pattern);
        for (auto& p : params_) {
            if (matches_pattern(p->name, pattern)) p->trainable = false;
        }
    }
}

std::vector<std::string> ParamStore::unmatched_freeze_patterns() const {
    std::vector<std::string> out;
    for (const auto& pattern : frozen_) {
        bool any = std::any_of(params_.begin(), params_.end(), [&](const auto& p) { return matches_pattern(p->name, pattern); });
        if (!any) out.push_back(pattern);
    }
    return out;
}

Parameter* ParamStore::find(const std::string& name) {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : it->second;
}

Parameter& ParamStore::get(const std::string& name) {
    return const_cast<Parameter&>(static_cast<const ParamStore&>(*this).get(name));
}

const Parameter& ParamStore::get(const std::string& name) const {
    auto it = index_.find(name);
    if (it != index_.end()) return *it->second;
    std::vector<std::string> names;
    for (const auto& p : params_) names.push_back(p->name);
    if (auto near = closest_name(name, names)) throw Error(fmt::format("unknown parameter '{}'; did you mean '{}'?", name, *near));
    throw Error(fmt::format("unknown parameter '{}' (the store holds {} parameters)", name, params_.size()));
}

std::int64_t ParamStore::count_elements() const {
    std::int64_t n = 0;
    for (const auto& p : params_) n += p->value.numel();
    return n;
}

void ParamStore::zero_grad() {
    for (const auto& p : params_) {
        if (p->grad.defined()) p->grad.fill(0.0);
    }
}

std::vector<Parameter*> ParamStore::all() {
    std::vector<Parameter*> out;
    for (const auto& p : params_) out.push_back(p.get());
    return out;
}

std::vector<const Parameter*> ParamStore::all() const {
    std::vector<const Parameter*> out;
    for (const auto& p : params_) out.push_back(p.get());
    return out;
}

}  // namespace wengert
