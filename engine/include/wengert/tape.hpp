// wengert: the tape. A Wengert list of nodes in recording order; backward walks it in reverse.
//
// Note [The tape]
// Every op appends one node: its value, the ids of its inputs and, when any input needs a
// gradient, a closure that sends the node's gradient to its inputs. Recording order is a
// topological order, so backward is one reverse pass. A value used several times receives
// the sum of its gradients. A closure keeps only the tensors its backward reads, each
// wrapped in Saved, which remembers the storage version it saw: a backward after an in-place
// write to a saved tensor is an AutogradError naming the op, never a silent wrong gradient.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "wengert/tensor.hpp"

namespace wengert {

class Tape;
struct Parameter;

// A handle to a value on a tape.
class Var {
public:
    Var() = default;
    Var(Tape* tape, std::int32_t id) : tape_(tape), id_(id) {}

    bool defined() const { return tape_ != nullptr; }
    Tape* tape() const { return tape_; }
    std::int32_t id() const { return id_; }

    const Tensor& value() const;
    const Shape& shape() const { return value().shape(); }
    DType dtype() const { return value().dtype(); }
    int ndim() const { return value().ndim(); }
    std::int64_t numel() const { return value().numel(); }
    std::int64_t size(std::int64_t axis) const { return value().size(axis); }
    bool requires_grad() const;
    double item() const { return value().item(); }
    // The gradient after backward: defined for leaves, parameters and retained values.
    Tensor grad() const;

private:
    Tape* tape_ = nullptr;
    std::int32_t id_ = -1;
};

// A tensor kept for backward, with the storage version it had when saved.
class Saved {
public:
    Saved() = default;
    explicit Saved(Tensor t) : tensor_(std::move(t)), version_(tensor_.version()) {}
    // Throws AutogradError naming `op` if the storage was written since it was saved.
    const Tensor& get(const char* op) const;

private:
    Tensor tensor_;
    std::uint64_t version_ = 0;
};

// What a backward closure sees: the gradient of its output and a sink for its inputs'.
class BackwardCtx {
public:
    BackwardCtx(Tape& tape, const Tensor& grad_out, std::span<const std::int32_t> inputs, const char* op)
        : tape_(tape), grad_out_(grad_out), inputs_(inputs), op_(op) {}
    const Tensor& grad_out() const { return grad_out_; }
    // Whether input k needs a gradient; closures skip work for inputs that do not.
    bool needs(int k) const;
    // Accumulates g into input k's gradient. A g broadcast beyond the input's shape is summed
    // back to it here, once, for every op.
    void add(int k, const Tensor& g);
    const Tensor& input_value(int k) const;
    const char* op() const { return op_; }

private:
    Tape& tape_;
    const Tensor& grad_out_;
    std::span<const std::int32_t> inputs_;
    const char* op_;
};

using BackwardFn = std::function<void(BackwardCtx&)>;

class Tape {
public:
    // Constructing a tape makes it the thread's current tape until it is destroyed.
    Tape();
    ~Tape();
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    // The innermost live tape of this thread; throws if there is none.
    static Tape& current();

    // A value that needs no gradient (data, labels, masks).
    Var input(Tensor value);
    // A leaf whose gradient backward computes (read it with Var::grad).
    Var leaf(Tensor value, bool requires_grad = true);
    // A parameter: a leaf whose gradient backward adds into parameter.grad.
    Var param(Parameter& parameter);

    // Used by ops: appends a node. `backward` is dropped when no input needs a gradient or
    // gradients are disabled.
    Var record(const char* op, Tensor value, std::initializer_list<Var> inputs, BackwardFn backward);
    Var record(const char* op, Tensor value, std::span<const Var> inputs, BackwardFn backward);
    // Whether an op over these inputs will record a backward.
    bool wants_grad(std::initializer_list<Var> inputs) const;
    bool wants_grad(std::span<const Var> inputs) const;

    // Reverse pass from a scalar, or from any value with an explicit output gradient.
    void backward(Var output);
    void backward(Var output, const Tensor& grad_output);
    // Keep the gradient of a non-leaf value for reading after backward.
    void retain_grad(Var v);

    const Tensor& value(Var v) const;
    Tensor grad(Var v) const;
    bool requires_grad(Var v) const;
    const char* op_name(Var v) const;
    std::span<const std::int32_t> inputs_of(Var v) const;
    std::size_t size() const { return nodes_.size(); }
    // Drops every node; parameters keep their accumulated gradients.
    void clear();

private:
    friend class BackwardCtx;
    struct Node {
        Tensor value;
        Tensor grad;
        bool grad_owned = false;   // grad's storage is ours to accumulate into in place
        bool requires_grad = false;
        bool retain = false;
        const char* op = "input";
        std::int32_t input_begin = 0;
        std::int32_t input_count = 0;
        Parameter* parameter = nullptr;
        BackwardFn backward;
    };
    void check(Var v) const;
    void accumulate(std::int32_t id, const Tensor& g);
    Var push(Node node, std::span<const Var> inputs);

    std::vector<Node> nodes_;
    std::vector<std::int32_t> input_ids_;
    Tape* previous_ = nullptr;
};

// Gradients are recorded unless a NoGrad guard is alive on this thread.
bool grad_enabled();
class NoGrad {
public:
    NoGrad();
    ~NoGrad();
    NoGrad(const NoGrad&) = delete;
    NoGrad& operator=(const NoGrad&) = delete;

private:
    bool previous_;
};

// Training mode is context: dropout and attention read it.
enum class Mode { train, eval, predict };
Mode current_mode();
const char* mode_name(Mode mode);
class ModeGuard {
public:
    explicit ModeGuard(Mode mode);
    ~ModeGuard();
    ModeGuard(const ModeGuard&) = delete;
    ModeGuard& operator=(const ModeGuard&) = delete;

private:
    Mode previous_;
};

}  // namespace wengert
