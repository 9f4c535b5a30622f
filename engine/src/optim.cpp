// Optimizers, learning-rate schedules and gradient clipping (Note [Optimizer step]).
// Updates run elementwise over contiguous parameters; large parameters are split over
// threads, each element computed the same way whatever the split.
#include "wengert/optim.hpp"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "dispatch.hpp"
#include "wengert/kernels.hpp"

namespace wengert {

namespace {

void require(bool ok, const std::string& op, const std::string& detail) {
    if (!ok) throw ShapeError(op, detail);
}

// Slot `slot` of parameter p: a tensor of p's shape and dtype, zeros when first asked for
// (`created` then says so). A slot loaded from a checkpoint must match the parameter.
Tensor& slot_like(const std::string& optimizer, std::map<std::string, Tensor>& slots, const std::string& slot,
                  const Parameter& p, bool* created = nullptr) {
    auto it = slots.find(slot);
    if (created) *created = it == slots.end();
    if (it == slots.end()) return slots[slot] = Tensor::zeros(p.value.shape(), p.value.dtype());
    const Tensor& t = it->second;
    if (!(t.shape() == p.value.shape()) || t.dtype() != p.value.dtype() || !t.is_contiguous()) {
        throw ShapeError(optimizer, fmt::format("state '{}.{}.{}' is {} {} but the parameter is {} {}", optimizer, slot, p.name,
                                                dtype_name(t.dtype()), t.shape().str(), dtype_name(p.value.dtype()),
                                                p.value.shape().str()));
    }
    return it->second;
}

}  // namespace

// ---- schedules ------------------------------------------------------------------------------
Schedule constant_lr() {
    return [](double base_lr, std::int64_t) { return base_lr; };
}

Schedule step_lr(std::int64_t step_size, double gamma) {
    require(step_size > 0, "step_lr", fmt::format("step_size must be positive, got {}", step_size));
    return [step_size, gamma](double base_lr, std::int64_t step) {
        return base_lr * std::pow(gamma, static_cast<double>(step / step_size));
    };
}

Schedule cosine_lr(std::int64_t total_steps, double min_lr) {
    require(total_steps > 0, "cosine_lr", fmt::format("total_steps must be positive, got {}", total_steps));
    return [total_steps, min_lr](double base_lr, std::int64_t step) {
        double t = static_cast<double>(std::min(step, total_steps)) / static_cast<double>(total_steps);
        return min_lr + (base_lr - min_lr) * (1 + std::cos(std::numbers::pi * t)) / 2;
    };
}

Schedule linear_warmup(std::int64_t warmup_steps, Schedule after) {
    require(warmup_steps >= 0, "linear_warmup", fmt::format("warmup_steps must not be negative, got {}", warmup_steps));
    return [warmup_steps, after = std::move(after)](double base_lr, std::int64_t step) {
        if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
        return after(base_lr, step - warmup_steps);
    };
}

Schedule piecewise_lr(std::vector<std::int64_t> boundaries, std::vector<double> factors) {
    require(factors.size() == boundaries.size() + 1, "piecewise_lr",
            fmt::format("{} boundaries need {} factors, got {}", boundaries.size(), boundaries.size() + 1, factors.size()));
    for (std::size_t i = 0; i < boundaries.size(); ++i) {
        require(boundaries[i] >= 0 && (i == 0 || boundaries[i] > boundaries[i - 1]), "piecewise_lr",
                fmt::format("boundaries must be non-negative and strictly increasing, got {} after {}", boundaries[i],
                            i == 0 ? std::int64_t{0} : boundaries[i - 1]));
    }
    return [boundaries = std::move(boundaries), factors = std::move(factors)](double base_lr, std::int64_t step) {
        std::size_t i = 0;
        while (i < boundaries.size() && step >= boundaries[i]) ++i;
        return base_lr * factors[i];
    };
}

Schedule linear_lr(double start, double end, std::int64_t steps) {
    require(steps > 0, "linear_lr", fmt::format("steps must be positive, got {}", steps));
    return [start, end, steps](double base_lr, std::int64_t step) {
        double t = static_cast<double>(std::min(step, steps)) / static_cast<double>(steps);
        return base_lr * (start + (end - start) * t);
    };
}

Schedule exponential_lr(double gamma, std::int64_t every) {
    require(every > 0, "exponential_lr", fmt::format("every must be positive, got {}", every));
    require(gamma >= 0, "exponential_lr", fmt::format("gamma must not be negative, got {}", gamma));
    return [gamma, every](double base_lr, std::int64_t step) { return base_lr * std::pow(gamma, static_cast<double>(step / every)); };
}

// ---- Optimizer ------------------------------------------------------------------------------
std::string ParamGroup::label() const {
    std::string out;
    for (const auto& p : patterns) out += (out.empty() ? "" : ", ") + p;
    return out;
}
Optimizer::Optimizer(std::string name, double lr, std::vector<std::string> slot_names)
    : name_(std::move(name)), slot_names_(std::move(slot_names)) {
    set_base_lr(lr);
}

void Optimizer::set_base_lr(double lr) {
    require(lr >= 0.0, name_, fmt::format("lr must not be negative, got {}", lr));
    lr_ = lr;
}

void Optimizer::set_schedule(Schedule schedule) {
    require(static_cast<bool>(schedule), name_, "the learning-rate schedule is empty");
    schedule_ = std::move(schedule);
}

void Optimizer::check_group(const ParamGroup& g) const {
    const std::string what = fmt::format("{} group \"{}\"", name_, g.label());
    require(!g.patterns.empty(), name_, "a parameter group needs at least one name pattern");
    require(!(g.lr && g.lr_scale), name_, fmt::format("{}: give lr or lr_scale, not both", what));
    auto non_negative = [&](const std::optional<double>& v, const char* field) {
        require(!v || (*v >= 0 && std::isfinite(*v)), name_, fmt::format("{}: {} must be a non-negative number, got {}", what, field, v.value_or(0)));
    };
    non_negative(g.lr, "lr");
    non_negative(g.lr_scale, "lr_scale");
    non_negative(g.weight_decay, "weight_decay");
}

void Optimizer::add_group(ParamGroup group) {
    check_group(group);
    groups_.push_back(std::move(group));
}

int Optimizer::group_of(const std::string& name) const {
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        for (const auto& pattern : groups_[g].patterns) {
            if (matches_pattern(name, pattern)) return static_cast<int>(g);
        }
    }
    return -1;
}

double Optimizer::current_lr(int group) const {
    if (group < 0) return current_lr();
    const ParamGroup& g = groups_.at(static_cast<std::size_t>(group));
    return schedule_(g.lr ? *g.lr : lr_ * g.lr_scale.value_or(1.0), steps_);
}

void Optimizer::step(ParamStore& params) {
    const Hyper base = defaults();
    std::vector<Hyper> hypers;
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        const ParamGroup& group = groups_[g];
        Hyper h = base;
        h.lr = current_lr(static_cast<int>(g));
        h.weight_decay = group.weight_decay.value_or(h.weight_decay);
        h.momentum = group.momentum.value_or(h.momentum);
        h.beta1 = group.beta1.value_or(h.beta1);
        h.beta2 = group.beta2.value_or(h.beta2);
        hypers.push_back(h);
    }
    Hyper own = base;
    own.lr = current_lr();
    for (Parameter* p : params.all()) {
        if (!p->trainable || !p->grad.defined()) continue;
        if (!is_floating(p->value.dtype()) || !p->value.is_contiguous()) {
            throw ShapeError(name_, fmt::format("parameter '{}' must be a contiguous f32 or f64 tensor, got {} {}", p->name,
                                                dtype_name(p->value.dtype()), p->value.shape().str()));
        }
        if (!(p->grad.shape() == p->value.shape()) || p->grad.dtype() != p->value.dtype()) {
            throw ShapeError(name_, fmt::format("parameter '{}' is {} {} but its gradient is {} {}", p->name,
                                                dtype_name(p->value.dtype()), p->value.shape().str(),
                                                dtype_name(p->grad.dtype()), p->grad.shape().str()));
        }
        const int g = group_of(p->name);
        update(*p, p->grad.contiguous(), g < 0 ? own : hypers[static_cast<std::size_t>(g)], state_[p->name]);
        p->value.bump_version();
        for (const Constraint& c : p->constraints) c.project(p->value);
        if (g >= 0) {
            for (const Constraint& c : groups_[static_cast<std::size_t>(g)].constraints) c.project(p->value);
        }
    }
    ++steps_;
}

NamedTensors Optimizer::state() const {
    NamedTensors out;
    out.emplace_back(name_ + ".step", Tensor::scalar(static_cast<double>(steps_), DType::i64));
    for (const auto& [param, slots] : state_) {
        for (const auto& [slot, t] : slots) out.emplace_back(fmt::format("{}.{}.{}", name_, slot, param), t.clone());
    }
    return out;
}

void Optimizer::load_state(const NamedTensors& state) {
    std::map<std::string, std::map<std::string, Tensor>> loaded;
    std::int64_t steps = 0;
    const std::string prefix = name_ + ".";
    for (const auto& [name, t] : state) {
        if (name == name_ + ".step") {
            require(t.numel() == 1, name_, fmt::format("state '{}' must hold one number, got shape {}", name, t.shape().str()));
            steps = static_cast<std::int64_t>(t.item());
            continue;
        }
        bool known = false;
        for (const auto& slot : slot_names_) {
            const std::string slot_prefix = prefix + slot + ".";
            if (name.size() > slot_prefix.size() && name.compare(0, slot_prefix.size(), slot_prefix) == 0) {
                loaded[name.substr(slot_prefix.size())][slot] = t.clone();
                known = true;
                break;
            }
        }
        if (!known) {
            std::string expected = prefix + "step";
            for (const auto& slot : slot_names_) expected += ", " + prefix + slot + ".<param>";
            throw ShapeError(name_, fmt::format("unknown state entry '{}'; expected {}", name, expected));
        }
    }
    state_ = std::move(loaded);
    steps_ = steps;
}

// ---- SGD ------------------------------------------------------------------------------------
SGD::SGD(SGDOptions options) : Optimizer("sgd", options.lr, {"momentum"}), options_(options) {
    require(options.momentum >= 0.0, "sgd", fmt::format("momentum must not be negative, got {}", options.momentum));
    require(options.weight_decay >= 0.0, "sgd", fmt::format("weight_decay must not be negative, got {}", options.weight_decay));
    require(!options.nesterov || (options.momentum > 0.0 && options.dampening == 0.0), "sgd",
            fmt::format("nesterov needs momentum > 0 and dampening 0, got momentum {} and dampening {}", options.momentum,
                        options.dampening));
}

Hyper SGD::defaults() const {
    Hyper h;
    h.lr = base_lr();
    h.weight_decay = options_.weight_decay;
    h.momentum = options_.momentum;
    return h;
}

void SGD::check_group(const ParamGroup& g) const {
    Optimizer::check_group(g);
    const std::string what = fmt::format("sgd group \"{}\"", g.label());
    require(!g.beta1 && !g.beta2, "sgd", fmt::format("{}: sgd has no betas (they are Adam's)", what));
    require(!g.momentum || *g.momentum >= 0.0, "sgd", fmt::format("{}: momentum must not be negative, got {}", what, g.momentum.value_or(0)));
    require(!options_.nesterov || !g.momentum || *g.momentum > 0.0, "sgd",
            fmt::format("{}: nesterov needs momentum > 0, got {}", what, g.momentum.value_or(0)));
}

void SGD::update(Parameter& p, const Tensor& grad, const Hyper& h, std::map<std::string, Tensor>& slots) {
    const SGDOptions o = options_;
    const double lr = h.lr, momentum_coef = h.momentum, weight_decay = h.weight_decay;
    bool first = false;
    Tensor* momentum = momentum_coef != 0.0 ? &slot_like(name(), slots, "momentum", p, &first) : nullptr;
    detail::dispatch_float(p.value.dtype(), "sgd", [&](auto tag) {
        using T = decltype(tag);
        T* w = p.value.data<T>();
        const T* g = grad.data<T>();
        T* buf = momentum ? momentum->data<T>() : nullptr;
        detail::for_elements(p.value.numel(), [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t i = lo; i < hi; ++i) {
                double d = g[i] + weight_decay * w[i];
                if (buf) {
                    double b = first ? d : momentum_coef * buf[i] + (1 - o.dampening) * d;
                    buf[i] = static_cast<T>(b);
                    d = o.nesterov ? d + momentum_coef * b : b;
                }
                w[i] = static_cast<T>(w[i] - lr * d);
            }
        });
    });
    if (momentum) momentum->bump_version();
}

// ---- Adam / AdamW ---------------------------------------------------------------------------
Adam::Adam(AdamOptions options) : Adam("adam", options, false) {}

Adam::Adam(std::string name, AdamOptions options, bool decoupled_weight_decay)
    : Optimizer(name, options.lr, {"m", "v", "step"}), options_(options), decoupled_(decoupled_weight_decay) {
    require(options.beta1 >= 0.0 && options.beta1 < 1.0, name, fmt::format("beta1 must be in [0, 1), got {}", options.beta1));
    require(options.beta2 >= 0.0 && options.beta2 < 1.0, name, fmt::format("beta2 must be in [0, 1), got {}", options.beta2));
    require(options.eps >= 0.0, name, fmt::format("eps must not be negative, got {}", options.eps));
    require(options.weight_decay >= 0.0, name, fmt::format("weight_decay must not be negative, got {}", options.weight_decay));
}

AdamW::AdamW(AdamWOptions o)
    : Adam("adamw", AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, true) {}

namespace {

// One Adam step's constants, in the parameter's type.
template <class T> struct AdamStep {
    T beta1, beta2, one_minus_beta1, one_minus_beta2, eps, l2, decay, step_size, bias_correction2_sqrt;
};

// The update of n elements in the parameter's own type, as torch.optim: one pass over w, g,
// m and v, which the compiler vectorises (the pointers do not alias).
template <class T>
[[gnu::always_inline]] inline void adam_update_body(const AdamStep<T>& a, T* __restrict w, const T* __restrict g,
                                                     T* __restrict m, T* __restrict v, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i) {
        T gi = g[i] + a.l2 * w[i];
        T mi = a.beta1 * m[i] + a.one_minus_beta1 * gi;
        T vi = a.beta2 * v[i] + a.one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i] * a.decay - a.step_size * mi / (std::sqrt(vi) / a.bias_correction2_sqrt + a.eps);
    }
}

// Compiled for AVX-512, AVX2 and the baseline, picked by the CPU at load time: sqrt and divide
// bound the update, and wider vectors do more of them per instruction. None of these targets
// enables FMA, so every clone rounds every operation the same way: results do not depend on
// the CPU's vector width.
[[gnu::target_clones("avx512f", "avx2", "default")]] void adam_update(const AdamStep<float>& a, float* w, const float* g,
                                                                    float* m, float* v, std::int64_t n) {
    adam_update_body(a, w, g, m, v, n);
}

[[gnu::target_clones("avx512f", "avx2", "default")]] void adam_update(const AdamStep<double>& a, double* w, const double* g,
                                                                    double* m, double* v, std::int64_t n) {
    adam_update_body(a, w, g, m, v, n);
}

}  // namespace

Hyper Adam::defaults() const {
    Hyper h;
    h.lr = base_lr();
    h.weight_decay = options_.weight_decay;
    h.beta1 = options_.beta1;
    h.beta2 = options_.beta2;
    return h;
}

void Adam::check_group(const ParamGroup& g) const {
    Optimizer::check_group(g);
    const std::string what = fmt::format("{} group \"{}\"", name(), g.label());
    require(!g.momentum, name(), fmt::format("{}: {} has no momentum setting (its betas are)", what, name()));
    auto beta = [&](const std::optional<double>& b, const char* field) {
        require(!b || (*b >= 0.0 && *b < 1.0), name(), fmt::format("{}: {} must be in [0, 1), got {}", what, field, b.value_or(0)));
    };
    beta(g.beta1, "beta1");
    beta(g.beta2, "beta2");
}

void Adam::update(Parameter& p, const Tensor& grad, const Hyper& h, std::map<std::string, Tensor>& slots) {
    AdamOptions o = options_;
    o.beta1 = h.beta1;
    o.beta2 = h.beta2;
    o.weight_decay = h.weight_decay;
    const double lr = h.lr;
    Tensor& m_slot = slot_like(name(), slots, "m", p);
    Tensor& v_slot = slot_like(name(), slots, "v", p);
    auto step_it = slots.find("step");
    const auto t = (step_it == slots.end() ? 0 : static_cast<std::int64_t>(step_it->second.item())) + 1;
    slots["step"] = Tensor::scalar(static_cast<double>(t), DType::i64);
    const double step_size = lr / (1 - std::pow(o.beta1, static_cast<double>(t)));
    const double bias_correction2_sqrt = std::sqrt(1 - std::pow(o.beta2, static_cast<double>(t)));
    const double decay = decoupled_ ? 1 - lr * o.weight_decay : 1.0;
    const double l2 = decoupled_ ? 0.0 : o.weight_decay;
    detail::dispatch_float(p.value.dtype(), name().c_str(), [&](auto tag) {
        using T = decltype(tag);
        const AdamStep<T> a{static_cast<T>(o.beta1), static_cast<T>(o.beta2),          static_cast<T>(1 - o.beta1),
                            static_cast<T>(1 - o.beta2), static_cast<T>(o.eps),         static_cast<T>(l2),
                            static_cast<T>(decay),       static_cast<T>(step_size),     static_cast<T>(bias_correction2_sqrt)};
        T* w = p.value.data<T>();
        const T* g = grad.data<T>();
        T* m = m_slot.data<T>();
        T* v = v_slot.data<T>();
        detail::for_elements(p.value.numel(), [&](std::int64_t lo, std::int64_t hi) { adam_update(a, w + lo, g + lo, m + lo, v + lo, hi - lo); });
    });
    m_slot.bump_version();
    v_slot.bump_version();
}

// ---- clipping -------------------------------------------------------------------------------
double clip_grad_norm(ParamStore& params, double max_norm) {
    require(max_norm >= 0.0, "clip_grad_norm", fmt::format("max_norm must not be negative, got {}", max_norm));
    double sum_sq = 0;
    for (const Parameter* p : params.all()) {
        if (p->trainable && p->grad.defined()) sum_sq += kern::dot_all(p->grad, p->grad);
    }
    const double norm = std::sqrt(sum_sq);
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        for (Parameter* p : params.all()) {
            if (p->trainable && p->grad.defined()) kern::scale_(p->grad, coef);
        }
    }
    return norm;
}

}  // namespace wengert
