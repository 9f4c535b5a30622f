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

}  // namespace

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

    for (std::size_t k = 0; k < inputs.size(); ++k) {
        if (!analytic[k].defined()) continue;
        Tensor& x = inputs[k];
        // Perturb through a contiguous f64 copy, written back into x's dtype each time.
        Tensor base = x.to(DType::f64).clone();
        double* pb = base.data<double>();
        const double* pa = analytic[k].data<double>();
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            double orig = pb[i];
            pb[i] = orig + options.eps;
            x.copy_from(base);
            double up = evaluate(f, inputs, cotangent);
            pb[i] = orig - options.eps;
            x.copy_from(base);
            double down = evaluate(f, inputs, cotangent);
            pb[i] = orig;
            x.copy_from(base);
            double numeric = (up - down) / (2 * options.eps);
            double err = std::abs(numeric - pa[i]);
            double rel = err / std::max(1e-12, std::max(std::abs(numeric), std::abs(pa[i])));
            bool bad = !(err <= options.atol + options.rtol * std::abs(numeric));
            if (err > result.max_abs_error || (bad && result.ok) || std::isnan(err)) {
                result.max_abs_error = std::isnan(err) ? INFINITY : std::max(result.max_abs_error, err);
                result.max_rel_error = rel;
                result.worst_input = static_cast<int>(k);
                result.worst_index = i;
                result.analytic = pa[i];
                result.numeric = numeric;
            }
            if (bad) result.ok = false;
        }
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
