#include "wengert/tape.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <string>

#include "dispatch.hpp"
#include "wengert/kernels.hpp"
#include "wengert/params.hpp"

namespace wengert {

namespace {
thread_local Tape* t_current = nullptr;
thread_local bool t_grad_enabled = true;
thread_local Mode t_mode = Mode::train;
thread_local bool t_finite_checks = false;
thread_local const void* t_site = nullptr;

// "nan", "inf" or "-inf": the first non-finite element of a floating tensor, for messages.
std::string first_non_finite(const Tensor& t) {
    Tensor c = t.contiguous();
    const std::int64_t n = c.numel();
    for (std::int64_t i = 0; i < n; ++i) {
        double x = c.dtype() == DType::f32 ? static_cast<double>(c.data<float>()[i]) : c.data<double>()[i];
        if (!std::isfinite(x)) return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf");   // NaN's sign is noise
    }
    return "finite";
}
}  // namespace

// ---------------------------------------------------------------- Var, Saved, BackwardCtx

const Tensor& Var::value() const {
    if (!tape_) throw AutogradError("use of an undefined value");
    return tape_->value(*this);
}
bool Var::requires_grad() const { return tape_ && tape_->requires_grad(*this); }
Tensor Var::grad() const { return tape_ ? tape_->grad(*this) : Tensor(); }

const Tensor& Saved::get(const char* op) const {
    if (tensor_.version() != version_) {
        throw AutogradError(fmt::format(
            "{}: a tensor saved for backward was modified in place after it was saved (version {}, now {}); "
            "compute the gradient before writing to it, or write to a copy",
            op, version_, tensor_.version()));
    }
    return tensor_;
}

bool BackwardCtx::needs(int k) const { return tape_.nodes_[static_cast<std::size_t>(inputs_[k])].requires_grad; }

const Tensor& BackwardCtx::input_value(int k) const { return tape_.nodes_[static_cast<std::size_t>(inputs_[k])].value; }

void BackwardCtx::add(int k, const Tensor& g) {
    std::int32_t id = inputs_[k];
    const auto& node = tape_.nodes_[static_cast<std::size_t>(id)];
    if (!node.requires_grad) return;
    if (g.shape() == node.value.shape()) {
        tape_.accumulate(id, g);
    } else {
        tape_.accumulate(id, kern::sum_to_shape(g, node.value.shape()));
    }
}

// ---------------------------------------------------------------- Tape

Tape::Tape() : previous_(t_current) {
    t_current = this;
    nodes_.reserve(256);
    input_ids_.reserve(512);
}

Tape::~Tape() {
    if (t_current == this) t_current = previous_;
}

Tape& Tape::current() {
    if (!t_current) throw AutogradError("no tape is alive on this thread: create a wengert::Tape first");
    return *t_current;
}

Var Tape::push(Node node, std::span<const Var> inputs) {
    for (const Var& v : inputs) {
        if (v.tape() != this) {
            throw AutogradError(fmt::format("{}: an input belongs to {} tape", node.op, v.tape() ? "another" : "no"));
        }
    }
    node.site = t_site;
    // Note [Finite checks]: the first op that makes a non-finite value from finite inputs
    if (t_finite_checks && !inputs.empty() && !all_finite(node.value)) {
        bool inputs_finite = std::all_of(inputs.begin(), inputs.end(), [&](const Var& v) {
            return all_finite(nodes_[static_cast<std::size_t>(v.id())].value);
        });
        if (inputs_finite) {
            throw NonFiniteError(node.op, node.site, false,
                                 fmt::format("{} made a non-finite value ({}) from finite inputs", node.op,
                                             first_non_finite(node.value)));
        }
    }
    node.input_begin = static_cast<std::int32_t>(input_ids_.size());
    node.input_count = static_cast<std::int32_t>(inputs.size());
    for (const Var& v : inputs) input_ids_.push_back(v.id());
    nodes_.push_back(std::move(node));
    return Var(this, static_cast<std::int32_t>(nodes_.size() - 1));
}

Var Tape::input(Tensor value) {
    Node n;
    n.value = std::move(value);
    return push(std::move(n), {});
}

Var Tape::leaf(Tensor value, bool requires_grad) {
    Node n;
    n.value = std::move(value);
    n.op = "leaf";
    n.requires_grad = requires_grad && grad_enabled();
    n.retain = true;
    return push(std::move(n), {});
}

Var Tape::param(Parameter& parameter) {
    Node n;
    n.value = parameter.value;
    n.op = "param";
    n.requires_grad = parameter.trainable && grad_enabled();
    n.parameter = &parameter;
    return push(std::move(n), {});
}

bool Tape::wants_grad(std::span<const Var> inputs) const {
    if (!t_grad_enabled) return false;
    for (const Var& v : inputs) {
        if (v.tape() == this && nodes_[static_cast<std::size_t>(v.id())].requires_grad) return true;
    }
    return false;
}

bool Tape::wants_grad(std::initializer_list<Var> inputs) const {
    return wants_grad(std::span<const Var>(inputs.begin(), inputs.size()));
}

Var Tape::record(const char* op, Tensor value, std::span<const Var> inputs, BackwardFn backward) {
    Node n;
    n.value = std::move(value);
    n.op = op;
    if (wants_grad(inputs)) {
        n.requires_grad = true;
        n.backward = std::move(backward);
    }
    return push(std::move(n), inputs);
}

Var Tape::record(const char* op, Tensor value, std::initializer_list<Var> inputs, BackwardFn backward) {
    return record(op, std::move(value), std::span<const Var>(inputs.begin(), inputs.size()), std::move(backward));
}

Var Tape::record_no_grad(const char* op, Tensor value, std::span<const Var> inputs) {
    Node n;
    n.value = std::move(value);
    n.op = op;
    return push(std::move(n), inputs);
}

Var Tape::record_no_grad(const char* op, Tensor value, std::initializer_list<Var> inputs) {
    return record_no_grad(op, std::move(value), std::span<const Var>(inputs.begin(), inputs.size()));
}

void Tape::check(Var v) const {
    if (v.tape() != this || v.id() < 0 || static_cast<std::size_t>(v.id()) >= nodes_.size()) {
        throw AutogradError("a value from another (or a cleared) tape was used");
    }
}

const Tensor& Tape::value(Var v) const {
    check(v);
    return nodes_[static_cast<std::size_t>(v.id())].value;
}

Tensor Tape::grad(Var v) const {
    check(v);
    return nodes_[static_cast<std::size_t>(v.id())].grad;
}

bool Tape::requires_grad(Var v) const {
    check(v);
    return nodes_[static_cast<std::size_t>(v.id())].requires_grad;
}

const char* Tape::op_name(Var v) const {
    check(v);
    return nodes_[static_cast<std::size_t>(v.id())].op;
}

std::span<const std::int32_t> Tape::inputs_of(Var v) const {
    check(v);
    const Node& n = nodes_[static_cast<std::size_t>(v.id())];
    return {input_ids_.data() + n.input_begin, static_cast<std::size_t>(n.input_count)};
}

void Tape::retain_grad(Var v) {
    check(v);
    nodes_[static_cast<std::size_t>(v.id())].retain = true;
}

// Note [Gradient ownership]
// The first gradient a node receives is stored as given, often a view of another node's
// gradient. Only when a second one arrives is a fresh tensor made, which later ones are
// added into in place. No gradient tensor is ever written while another node may read it.
void Tape::accumulate(std::int32_t id, const Tensor& g) {
    Node& n = nodes_[static_cast<std::size_t>(id)];
    if (g.dtype() != n.value.dtype()) {
        throw AutogradError(fmt::format("{}: gradient dtype {} differs from value dtype {}", n.op,
                                        dtype_name(g.dtype()), dtype_name(n.value.dtype())));
    }
    if (!n.grad.defined()) {
        n.grad = g;
        n.grad_owned = false;
    } else if (!n.grad_owned) {
        n.grad = kern::add(n.grad, g);
        n.grad_owned = true;
    } else {
        kern::add_(n.grad, g);
    }
}

void Tape::backward(Var output) {
    check(output);
    const Tensor& v = value(output);
    if (v.numel() != 1) {
        throw AutogradError(fmt::format(
            "backward of a non-scalar value of shape {} needs an explicit output gradient", v.shape().str()));
    }
    backward(output, Tensor::ones(v.shape(), v.dtype()));
}

void Tape::backward(Var output, const Tensor& grad_output) { backward(output, grad_output, ParamReady()); }

void Tape::backward(Var output, const Tensor& grad_output, const ParamReady& on_ready) {
    check(output);
    Node& out = nodes_[static_cast<std::size_t>(output.id())];
    if (!(grad_output.shape() == out.value.shape())) {
        throw AutogradError(fmt::format("backward: output gradient of shape {} for a value of shape {}",
                                        grad_output.shape().str(), out.value.shape().str()));
    }
    if (!out.requires_grad) {
        throw AutogradError("backward: the value does not depend on anything that needs a gradient");
    }
    accumulate(output.id(), grad_output.to(out.value.dtype()));
    // each parameter's first node: its gradient is final once the walk has passed it
    std::map<const Parameter*, std::int32_t> first_node;
    if (on_ready) {
        for (std::int32_t id = 0; id < static_cast<std::int32_t>(nodes_.size()); ++id) {
            const Parameter* p = nodes_[static_cast<std::size_t>(id)].parameter;
            if (p && !first_node.count(p)) first_node[p] = id;
        }
    }
    for (std::int32_t id = static_cast<std::int32_t>(nodes_.size()) - 1; id >= 0; --id) {
        Node& n = nodes_[static_cast<std::size_t>(id)];
        if (id <= output.id() && n.grad.defined()) {
            if (n.backward) {
                BackwardCtx ctx(*this, n.grad, {input_ids_.data() + n.input_begin, static_cast<std::size_t>(n.input_count)}, n.op);
                n.backward(ctx);
                if (t_finite_checks) check_backward_finite(id);
                if (!n.retain) n.grad = Tensor();
            } else if (n.parameter) {
                Parameter& p = *n.parameter;
                if (!p.grad.defined()) p.grad = Tensor::zeros(p.value.shape(), p.value.dtype());
                kern::add_(p.grad, n.grad);
            }
        }
        if (on_ready && n.parameter && first_node.at(n.parameter) == id) on_ready(*n.parameter);
    }
}

// Note [Finite checks]: whether node `id`'s backward made an input's gradient non-finite from a
// finite gradient of its own (earlier closures were checked, so the inputs' gradients were
// finite before it ran, or it is not the first).
void Tape::check_backward_finite(std::int32_t id) const {
    const Node& n = nodes_[static_cast<std::size_t>(id)];
    if (!all_finite(n.grad)) return;
    for (std::int32_t k = 0; k < n.input_count; ++k) {
        const Node& in = nodes_[static_cast<std::size_t>(input_ids_[static_cast<std::size_t>(n.input_begin + k)])];
        if (in.grad.defined() && !all_finite(in.grad)) {
            throw NonFiniteError(n.op, n.site, true,
                                 fmt::format("the gradient of {} made a non-finite gradient ({}) for its input {} from a "
                                             "finite output gradient",
                                             n.op, first_non_finite(in.grad), k + 1));
        }
    }
}

const void* Tape::site_of(Var v) const {
    check(v);
    return nodes_[static_cast<std::size_t>(v.id())].site;
}

void Tape::clear() {
    nodes_.clear();
    input_ids_.clear();
}

// ---------------------------------------------------------------- modes

bool finite_checks_enabled() { return t_finite_checks; }
FiniteChecks::FiniteChecks() : previous_(t_finite_checks) { t_finite_checks = true; }
FiniteChecks::~FiniteChecks() { t_finite_checks = previous_; }

const void* set_record_site(const void* site) {
    const void* previous = t_site;
    t_site = site;
    return previous;
}

bool all_finite(const Tensor& t) {
    if (!t.defined() || !is_floating(t.dtype()) || t.numel() == 0) return true;
    Tensor c = t.contiguous();
    // an element is not finite when its exponent bits are all ones: an OR over integers, which
    // the compiler vectorises, in chunks over threads for a large tensor (a trainer checks every
    // gradient and every updated value on every step: a VAE's 650k twice, 2% of its step on
    // one thread)
    const std::int64_t n = c.numel();   // once: Shape::numel multiplies the extents each call
    auto finite = [n](const auto* bits, auto exponent) {
        std::atomic<bool> bad{false};
        detail::for_elements(n, [&](std::int64_t lo, std::int64_t hi) {
            if (bad.load(std::memory_order_relaxed)) return;
            decltype(exponent) any = 0;
            for (std::int64_t i = lo; i < hi; ++i) any |= static_cast<decltype(exponent)>((bits[i] & exponent) == exponent);
            if (any) bad.store(true, std::memory_order_relaxed);
        });
        return !bad.load();
    };
    if (c.dtype() == DType::f32) return finite(reinterpret_cast<const std::uint32_t*>(c.data<float>()), std::uint32_t{0x7f800000u});
    return finite(reinterpret_cast<const std::uint64_t*>(c.data<double>()), std::uint64_t{0x7ff0000000000000ull});
}

bool grad_enabled() { return t_grad_enabled; }
NoGrad::NoGrad() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGrad::~NoGrad() { t_grad_enabled = previous_; }

Mode current_mode() { return t_mode; }
const char* mode_name(Mode mode) {
    switch (mode) {
        case Mode::train: return "train";
        case Mode::eval: return "eval";
        case Mode::predict: return "predict";
    }
    return "?";
}
ModeGuard::ModeGuard(Mode mode) : previous_(t_mode) { t_mode = mode; }
ModeGuard::~ModeGuard() { t_mode = previous_; }

}  // namespace wengert
