// Internal: the softmax kernel, shared by softmax/log_softmax and sharpen (Note [Stable softmax]).
#pragma once

#include "wengert/tensor.hpp"

namespace wengert::detail {

// x (..., n, ...) -> softmax or log_softmax of x along `axis`
Tensor softmax_forward(const Tensor& x, int axis, bool log_form);

}  // namespace wengert::detail
