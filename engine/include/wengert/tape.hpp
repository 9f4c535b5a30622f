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

#include "wengert/error.hpp"
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
    // Appends a node that passes no gradient to its inputs (argmax, comparisons, integer casts,
    // detach): it never requires a gradient, and its inputs are kept only as the graph's edges
    // (`wengert graph` draws them), never read by backward.
    Var record_no_grad(const char* op, Tensor value, std::span<const Var> inputs);
    Var record_no_grad(const char* op, Tensor value, std::initializer_list<Var> inputs);
    // Whether an op over these inputs will record a backward.
    bool wants_grad(std::initializer_list<Var> inputs) const;
    bool wants_grad(std::span<const Var> inputs) const;

    // Reverse pass from a scalar, or from any value with an explicit output gradient.
    void backward(Var output);
    void backward(Var output, const Tensor& grad_output);
    // The same, calling on_ready(p) once for each parameter on the tape as soon as its gradient
    // is final: when the reverse walk reaches the parameter's first node, past every node that
    // reads it (parameter.grad stays undefined if nothing gave it a gradient). Data-parallel
    // training starts reducing a parameter's gradient then, while the walk goes on.
    using ParamReady = std::function<void(Parameter&)>;
    void backward(Var output, const Tensor& grad_output, const ParamReady& on_ready);
    // Keep the gradient of a non-leaf value for reading after backward.
    void retain_grad(Var v);

    const Tensor& value(Var v) const;
    Tensor grad(Var v) const;
    bool requires_grad(Var v) const;
    const char* op_name(Var v) const;
    // The record site (set_record_site) current when v was recorded; null if none.
    const void* site_of(Var v) const;
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
        const void* site = nullptr;
        std::int32_t input_begin = 0;
        std::int32_t input_count = 0;
        Parameter* parameter = nullptr;
        BackwardFn backward;
    };
    void check(Var v) const;
    void check_backward_finite(std::int32_t id) const;
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

// Note [Finite checks]
// Under a FiniteChecks guard, the tape checks every value it records and every gradient its
// backward pass computes, and throws NonFiniteError at the first op that makes a NaN or an
// infinity from finite inputs: a recorded value that is not finite while its inputs are, or an
// input gradient a backward closure made non-finite from a finite output gradient (a masked
// sqrt: sqrt'(0) * 0). It costs a pass over every tensor, so a trainer runs without it and,
// when a loss or gradient turns out non-finite, replays that step under it to name the op.
// The error carries the op's record site: an opaque pointer a front end sets around the ops
// it records (set_record_site; the language sets its expression nodes) to say where in its
// source the op came from.
class NonFiniteError : public Error {
public:
    NonFiniteError(const char* op, const void* site, bool in_backward, const std::string& message)
        : Error(message), op_(op), site_(site), in_backward_(in_backward) {}
    const char* op() const { return op_; }
    const void* site() const { return site_; }
    bool in_backward() const { return in_backward_; }

private:
    const char* op_;
    const void* site_;
    bool in_backward_;
};

class FiniteChecks {
public:
    FiniteChecks();
    ~FiniteChecks();
    FiniteChecks(const FiniteChecks&) = delete;
    FiniteChecks& operator=(const FiniteChecks&) = delete;

private:
    bool previous_;
};
bool finite_checks_enabled();

// The site recorded with every node from now on, on this thread (Note [Finite checks]);
// returns the previous one.
const void* set_record_site(const void* site);
class RecordSite {
public:
    explicit RecordSite(const void* site) : previous_(set_record_site(site)) {}
    ~RecordSite() { set_record_site(previous_); }
    RecordSite(const RecordSite&) = delete;
    RecordSite& operator=(const RecordSite&) = delete;

private:
    const void* previous_;
};

// Whether every element of a floating tensor is finite (integer tensors always are).
bool all_finite(const Tensor& t);

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
