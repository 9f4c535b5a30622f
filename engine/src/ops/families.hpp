// Internal to the op families: each file registers its ops through one of these.
#pragma once

#include "wengert/error.hpp"
#include "wengert/registry.hpp"
#include "wengert/tape.hpp"

namespace wengert {

// The tape an op records on: its first operand's.
inline Tape& tape_of(const Var& a) {
    if (!a.defined()) throw AutogradError("an op was given an undefined value");
    return *a.tape();
}

void register_elementwise(Registry& r);
void register_unary(Registry& r);
void register_reduce(Registry& r);
void register_shape(Registry& r);
void register_matmul(Registry& r);
void register_linear(Registry& r);
void register_softmax(Registry& r);
void register_onehot(Registry& r);
void register_loss(Registry& r);
void register_index(Registry& r);
void register_mask(Registry& r);
void register_nn(Registry& r);
void register_creation(Registry& r);
void register_attention(Registry& r);
void register_conv(Registry& r);

}  // namespace wengert
