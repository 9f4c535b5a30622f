// wengert: finite-difference gradient checks in f64.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "wengert/tape.hpp"

namespace wengert {

struct GradCheckResult {
    bool ok = true;
    double max_abs_error = 0;
    double max_rel_error = 0;
    int worst_input = -1;               // which input holds the worst element
    std::int64_t worst_index = -1;      // flat index within it
    double analytic = 0, numeric = 0;   // at the worst element
    std::string message;                // empty when ok
};

struct GradCheckOptions {
    double eps = 1e-6;
    double atol = 1e-6;
    double rtol = 1e-5;
    std::uint64_t seed = 7;             // for the random output cotangent
};

// The check of one tensor's gradient: for each checked element i of x, the central difference
// (objective() at x + eps e_i - objective() at x - eps e_i) / 2 eps against analytic[i], x
// perturbed in place (its dtype and layout kept, its version bumped) and restored. Checks every
// element, or with max_elements > 0 that many spread evenly over x (element k n / count). An
// element fails when |numeric - analytic| > atol + rtol |numeric|; the one reported is the
// largest error among the failing ones, else among all (NaN the largest). eps, atol and rtol
// are the options'. gradcheck below runs it on each input; the language's model gradcheck on
// each parameter.
struct TensorGradCheck {
    bool ok = true;
    std::int64_t checked = 0;           // elements compared
    double max_abs_error = 0;           // over the checked elements; infinite for a NaN
    std::int64_t worst_index = -1;      // the reported element, flat
    double abs_error = 0, rel_error = 0;   // at it
    double analytic = 0, numeric = 0;
};
TensorGradCheck check_gradient(Tensor& x, const Tensor& analytic, const std::function<double()>& objective,
                               const GradCheckOptions& options, std::int64_t max_elements = 0);

// Builds f on a fresh tape from `inputs` (each becomes a leaf; those with needs_grad[k] false
// become inputs without gradient), contracts the output with a fixed random cotangent, and
// compares the tape's gradient with central differences for every element of every
// differentiable floating input. Inputs should be f64. f must be deterministic (reseed any
// randomness inside it).
GradCheckResult gradcheck(const std::function<Var(std::span<const Var>)>& f, const std::vector<Tensor>& inputs,
                          const std::vector<bool>& needs_grad = {}, const GradCheckOptions& options = {});

}  // namespace wengert
