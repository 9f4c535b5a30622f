#include "wengert/gradcheck.hpp"

#include <fmt/format.h>

#include <cmath>

#include "wengert/kernels.hpp"
#include "wengert/random.hpp"

namespace wengert {

namespace {

double evaluate(const std::function<Var(std::span<const Var>)>& f, const std::vector<Tensor>& inputs,
                const Tensor& cotangent) {
    Tape tape;
    NoGrad no_grad;
    std::vector<Var> vars;
    for (const auto& t : inputs) vars.push_back(tape.input(t));
    Var out = f(vars);
    return kern::dot_all(out.value().to(DType::f64), cotangent);
}

// Whether an element (failing or not, with error `error`) is reported before the one reported
// so far: a failing element before a passing one, then the larger error, NaN the largest.
bool reports_before(bool bad, double error, bool reported_bad, double reported_error) {
    auto size = [](double e) { return std::isnan(e) ? INFINITY : e; };
    if (bad != reported_bad) return bad;
    return size(error) > size(reported_error);
}

}  // namespace

// x (any shape and dtype), analytic (x's shape) -> the comparison of its checked elements
TensorGradCheck check_gradient(Tensor& x, const Tensor& analytic_in, const std::function<double()>& objective,
                               const GradCheckOptions& options, std::int64_t max_elements) {
    TensorGradCheck result;
    const Tensor analytic = analytic_in.to(DType::f64).contiguous();
    // Perturbed through a contiguous f64 copy, written back into x's dtype and layout each time.
    Tensor base = x.to(DType::f64).clone();
    double* pb = base.data<double>();
    const double* pa = analytic.data<double>();
    auto set = [&](std::int64_t i, double v) {
        pb[i] = v;
        x.copy_from(base);
    };
    const std::int64_t n = x.numel();
    result.checked = max_elements > 0 ? std::min(n, max_elements) : n;
    for (std::int64_t k = 0; k < result.checked; ++k) {
        const std::int64_t i = result.checked == n ? k : k * n / result.checked;
        const double orig = pb[i];
        set(i, orig + options.eps);
        const double up = objective();
        set(i, orig - options.eps);
        const double down = objective();
        set(i, orig);
        const double numeric = (up - down) / (2 * options.eps);
        const double err = std::abs(numeric - pa[i]);
        const bool bad = !(err <= options.atol + options.rtol * std::abs(numeric));
        if (result.worst_index < 0 || reports_before(bad, err, !result.ok, result.abs_error)) {
            result.worst_index = i;
            result.abs_error = err;
            result.rel_error = err / std::max(1e-12, std::max(std::abs(numeric), std::abs(pa[i])));
            result.analytic = pa[i];
            result.numeric = numeric;
        }
        result.max_abs_error = std::isnan(err) ? INFINITY : std::max(result.max_abs_error, err);
        if (bad) result.ok = false;
    }
    return result;
}

GradCheckResult gradcheck(const std::function<Var(std::span<const Var>)>& f, const std::vector<Tensor>& inputs_in,
                          const std::vector<bool>& needs_grad, const GradCheckOptions& options) {
    GradCheckResult result;
    std::vector<Tensor> inputs;
    // Private copies that keep each input's layout, so non-contiguous cases stay non-contiguous.
    for (const auto& t : inputs_in) inputs.push_back(t.clone_layout());

    // analytic: one backward with a random cotangent
    Tensor cotangent;
    std::vector<Tensor> analytic(inputs.size());
    {
        Tape tape;
        std::vector<Var> vars;
        for (std::size_t k = 0; k < inputs.size(); ++k) {
            bool want = (needs_grad.empty() || needs_grad[k]) && is_floating(inputs[k].dtype());
            vars.push_back(want ? tape.leaf(inputs[k]) : tape.input(inputs[k]));
        }
        Var out = f(vars);
        Generator gen(options.seed);
        cotangent = Tensor::empty(out.shape(), DType::f64);
        gen.fill_uniform(cotangent, -1.0, 1.0);
        if (!out.requires_grad()) {
            result.ok = false;
            result.message = "the output does not depend on any input that needs a gradient";
            return result;
        }
        tape.backward(out, cotangent.to(out.dtype()));
        for (std::size_t k = 0; k < inputs.size(); ++k) {
            if (vars[k].requires_grad()) {
                Tensor g = vars[k].grad();
                analytic[k] = g.defined() ? g.to(DType::f64).contiguous() : Tensor::zeros(inputs[k].shape(), DType::f64);
            }
        }
    }

    double reported_error = 0;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        if (!analytic[k].defined() || inputs[k].numel() == 0) continue;
        TensorGradCheck c = check_gradient(inputs[k], analytic[k], [&] { return evaluate(f, inputs, cotangent); }, options);
        // the element reported over all inputs, by the rule check_gradient picks one input's by
        if (result.worst_input < 0 || reports_before(!c.ok, c.abs_error, !result.ok, reported_error)) {
            result.worst_input = static_cast<int>(k);
            result.worst_index = c.worst_index;
            result.max_rel_error = c.rel_error;
            result.analytic = c.analytic;
            result.numeric = c.numeric;
            reported_error = c.abs_error;
        }
        result.max_abs_error = std::max(result.max_abs_error, c.max_abs_error);
        result.ok = result.ok && c.ok;
    }
    if (!result.ok) {
        result.message = fmt::format("gradient mismatch: input {} element {}: tape {:.9g}, finite differences {:.9g} "
                                     "(abs error {:.3g})",
                                     result.worst_input, result.worst_index, result.analytic, result.numeric,
                                     result.max_abs_error);
    }
    return result;
}

}  // namespace wengert
