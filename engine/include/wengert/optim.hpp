// wengert: optimizers (SGD with momentum and Nesterov, Adam, AdamW), learning-rate schedules
// and gradient clipping by global norm.
//
// Note [Optimizer step]
// step(params) updates every trainable parameter that has a gradient, in the store's order,
// with PyTorch's update rule (torch.optim, 1.13), then applies that parameter's constraints
// (Parameter::constraints, Keras's kernel_constraint: a projection after the update). A
// parameter whose grad was never set is skipped and its state left alone, as PyTorch skips a
// parameter whose grad is None. The step uses the learning rate the schedule gives for the
// number of steps taken before it: the first step is step 0.
//
// Note [Parameter groups]
// As PyTorch's param groups and Caffe's lr_mult/decay_mult: a group names parameters by glob
// patterns (matches_pattern) and sets some of the optimizer's hyperparameters differently for
// them (its own base lr or a multiple of the optimizer's, weight decay, momentum, betas) and may
// add constraints, projected after the parameter's own. A parameter belongs to the first group
// with a matching pattern, or to none (the optimizer's own settings); a group's lr follows the
// optimizer's schedule from its own base (schedules are functions of the base rate). Groups are
// part of the optimizer's settings, not its state: a checkpoint holds the per-parameter state
// whatever the grouping, and a resumed run gives the same groups again.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wengert/params.hpp"

namespace wengert {

// Tensors by name, in order: the form checkpoints and .npz files take (the same type as io.hpp's).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// ---- learning-rate schedules ----------------------------------------------------------------
// The learning rate of step `step` (0 for the first update) for a base rate.
using Schedule = std::function<double(double base_lr, std::int64_t step)>;

// base_lr at every step.
Schedule constant_lr();
// base_lr * gamma^floor(step / step_size), as PyTorch's StepLR.
Schedule step_lr(std::int64_t step_size, double gamma = 0.1);
// min_lr + (base_lr - min_lr) (1 + cos(pi t / total_steps)) / 2 with t = min(step, total_steps):
// PyTorch's CosineAnnealingLR, held at min_lr after total_steps instead of rising again.
Schedule cosine_lr(std::int64_t total_steps, double min_lr = 0.0);
// base_lr * (step + 1) / warmup_steps for the first warmup_steps steps, then `after`, counted
// from the end of the warm-up (after's step 0 is the first step past it).
Schedule linear_warmup(std::int64_t warmup_steps, Schedule after = constant_lr());
// factors[i] * base_lr from step boundaries[i - 1] (0 for i = 0) up to boundaries[i]; the last
// factor after the last boundary (Keras's PiecewiseConstantDecay, as multiples of the base).
// Boundaries increase strictly; factors has one more entry than boundaries.
Schedule piecewise_lr(std::vector<std::int64_t> boundaries, std::vector<double> factors);
// base_lr * (start + (end - start) min(step, steps) / steps): PyTorch's LinearLR.
Schedule linear_lr(double start, double end, std::int64_t steps);
// base_lr * gamma^floor(step / every): PyTorch's ExponentialLR stepped every `every` steps.
Schedule exponential_lr(double gamma, std::int64_t every = 1);

// ---- optimizers -----------------------------------------------------------------------------
// What a parameter group sets differently from its optimizer (Note [Parameter groups]); an
// absent field keeps the optimizer's value.
struct ParamGroup {
    std::vector<std::string> patterns;       // glob patterns of parameter names
    std::optional<double> lr;                // the group's own base lr, or
    std::optional<double> lr_scale;          // a multiple of the optimizer's (Caffe's lr_mult)
    std::optional<double> weight_decay;
    std::optional<double> momentum;          // sgd
    std::optional<double> beta1, beta2;      // adam, adamw
    std::vector<Constraint> constraints;     // after the parameter's own
    std::string label() const;               // "Q" or "h1.*, h2.*": the patterns
};

// The hyperparameters one parameter's update uses: the optimizer's, or its group's.
struct Hyper {
    double lr = 0, weight_decay = 0, momentum = 0, beta1 = 0, beta2 = 0;
};

class Optimizer {
public:
    virtual ~Optimizer() = default;
    Optimizer(const Optimizer&) = delete;
    Optimizer& operator=(const Optimizer&) = delete;

    // One update of every trainable parameter with a gradient, then its constraints.
    void step(ParamStore& params);

    const std::string& name() const { return name_; }   // "sgd", "adam", "adamw"
    double base_lr() const { return lr_; }
    void set_base_lr(double lr);
    void set_schedule(Schedule schedule);
    // The learning rate the next step will use (for parameters in no group).
    double current_lr() const { return schedule_(lr_, steps_); }
    std::int64_t steps() const { return steps_; }

    // Adds a parameter group (Note [Parameter groups]); a value this optimizer does not take
    // (momentum on Adam, betas on SGD) or a bad one (lr < 0) is an error.
    void add_group(ParamGroup group);
    const std::vector<ParamGroup>& groups() const { return groups_; }
    // The index of the group parameter `name` belongs to, or -1.
    int group_of(const std::string& name) const;
    // The learning rate the next step will use for group g (-1: the optimizer's own).
    double current_lr(int group) const;

    // Everything step() depends on besides the parameters, for checkpoints: "<name>.step" (i64
    // scalar, steps taken) and one entry per parameter and slot, "<name>.<slot>.<param name>"
    // (e.g. "adam.m.dense.w"). The tensors are copies.
    NamedTensors state() const;
    // Replaces the state with one state() returned; an entry this optimizer does not know is an
    // error naming it.
    void load_state(const NamedTensors& state);

protected:
    Optimizer(std::string name, double lr, std::vector<std::string> slot_names);
    // One parameter's update with hyperparameters h (h.lr already scheduled). `slots` holds its
    // state by slot name, empty before its first update.
    virtual void update(Parameter& p, const Tensor& grad, const Hyper& h, std::map<std::string, Tensor>& slots) = 0;
    // The optimizer's own hyperparameters (lr aside), which groups override.
    virtual Hyper defaults() const = 0;
    // Checks a group's values against what this optimizer takes; throws ShapeError.
    virtual void check_group(const ParamGroup& group) const;

private:
    std::string name_;
    double lr_ = 0.0;
    std::vector<std::string> slot_names_;
    Schedule schedule_ = constant_lr();
    std::int64_t steps_ = 0;
    std::map<std::string, std::map<std::string, Tensor>> state_;   // parameter name -> slot -> tensor
    std::vector<ParamGroup> groups_;
};

struct SGDOptions {
    double lr = 0.01;
    double momentum = 0.0;
    double dampening = 0.0;
    bool nesterov = false;       // needs momentum > 0 and dampening 0
    double weight_decay = 0.0;   // L2: added to the gradient
};

// d = g + weight_decay p;  with momentum: buf = d at the first step, then
// buf = momentum buf + (1 - dampening) d, and d = d + momentum buf (Nesterov) or buf;  p -= lr d.
// Slot: "momentum".
class SGD : public Optimizer {
public:
    explicit SGD(SGDOptions options = {});

protected:
    void update(Parameter& p, const Tensor& grad, const Hyper& h, std::map<std::string, Tensor>& slots) override;
    Hyper defaults() const override;
    void check_group(const ParamGroup& group) const override;

private:
    SGDOptions options_;
};

struct AdamOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;   // L2: added to the gradient
};

struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 1e-2;  // decoupled: p *= 1 - lr weight_decay before the Adam update
};

// t += 1;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
// t counts this parameter's own updates. Slots: "m", "v", "step" (i64 scalar).
class Adam : public Optimizer {
public:
    explicit Adam(AdamOptions options = {});

protected:
    Adam(std::string name, AdamOptions options, bool decoupled_weight_decay);
    void update(Parameter& p, const Tensor& grad, const Hyper& h, std::map<std::string, Tensor>& slots) override;
    Hyper defaults() const override;
    void check_group(const ParamGroup& group) const override;

private:
    AdamOptions options_;
    bool decoupled_;
};

class AdamW : public Adam {
public:
    explicit AdamW(AdamWOptions options = {});
};

// ---- gradient clipping ----------------------------------------------------------------------
// The L2 norm of all trainable parameters' gradients taken together; when it exceeds max_norm
// every gradient is scaled by max_norm / (norm + 1e-6), as PyTorch's clip_grad_norm_.
// Returns the norm before clipping.
double clip_grad_norm(ParamStore& params, double max_norm);

}  // namespace wengert
