// wengert: Keras's regularizers (penalties added to the loss) and constraints (projections
// applied to a parameter after each optimizer step).
//
// Note [Regularizers]
// A regularizer maps any value to a scalar penalty on the same tape (tf_keras/regularizers.py):
//     l1(a)(x) = a sum|x|      l2(a)(x) = a sum x^2 (no 1/2)      l1_l2(a, b)(x) = both.
// kernel and bias regularizers add reg(W) and reg(b) to the loss; an activity regularizer adds
// reg(output) / batch_size. That division is the caller's (the layer knows its batch).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "wengert/params.hpp"
#include "wengert/tape.hpp"

namespace wengert {

struct Regularizer {
    std::string name;                      // "l2(0.01)", for messages and manifests
    std::function<Var(Var)> penalty;       // x (...) -> () on x's tape
    Var operator()(Var x) const { return penalty(x); }
};

Regularizer l1(double l1 = 0.01);
Regularizer l2(double l2 = 0.01);
Regularizer l1_l2(double l1 = 0.01, double l2 = 0.01);

// Keras's constraints (tf_keras/constraints.py); norms are L2 over `axis`, kept per slice:
//     non_neg         w * (w >= 0)
//     unit_norm       w / (1e-7 + ||w||)
//     max_norm        w * clip(||w||, 0, max_value) / (1e-7 + ||w||)
// For a dense kernel (d_in, d_out), axis 0 constrains each unit's incoming weight vector.
Constraint non_neg();
Constraint unit_norm(std::int64_t axis = 0);
Constraint max_norm(double max_value = 2.0, std::int64_t axis = 0);
// Euclidean projection of every slice along `axis` onto the probability simplex (entries >= 0,
// summing to 1): simplex(0) keeps a matrix column-stochastic (SPEC.md section 5).
Constraint simplex(std::int64_t axis = 0);

}  // namespace wengert
