// wengert: named parameters, their initializers and constraints.
//
// Note [Parameter names]
// Names are hierarchical, dot-separated paths ("encoder.0.attention.q.w"). A ParamStore keeps
// parameters in creation order, so iteration, checkpoints and optimizer state are stable.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "wengert/tensor.hpp"

namespace wengert {

class Generator;

// A projection applied to a parameter after each optimizer step (Keras's kernel_constraint).
// It takes no part in differentiation.
struct Constraint {
    std::string name;                        // "simplex(axis=0)", for messages and manifests
    std::function<void(Tensor&)> project;    // writes the projected value in place
};

struct Parameter {
    std::string name;
    Tensor value;
    Tensor grad;                             // accumulated by backward; zeroed by zero_grad
    bool trainable = true;
    std::vector<Constraint> constraints;
};

// How to fill a new parameter. fan_in/fan_out follow Keras/PyTorch for dense kernels
// (d_in, d_out) and convolution kernels (receptive field times channels).
struct Init {
    enum class Kind {
        zeros, ones, constant, eye, normal, uniform,
        glorot_uniform, glorot_normal, he_uniform, he_normal,
        fan_in_uniform,   // U(±1/sqrt(fan_in)): PyTorch's default for Linear and Conv
    };
    Kind kind = Kind::glorot_uniform;
    double a = 0.0;   // constant value; normal mean; uniform low
    double b = 1.0;   // normal stddev; uniform high

    static Init zeros() { return {Kind::zeros}; }
    static Init ones() { return {Kind::ones}; }
    static Init constant(double v) { return {Kind::constant, v}; }
    static Init eye() { return {Kind::eye}; }
    static Init normal(double mean = 0.0, double stddev = 1.0) { return {Kind::normal, mean, stddev}; }
    static Init uniform(double low = -0.05, double high = 0.05) { return {Kind::uniform, low, high}; }
    static Init glorot_uniform() { return {Kind::glorot_uniform}; }
    static Init glorot_normal() { return {Kind::glorot_normal}; }
    static Init he_uniform() { return {Kind::he_uniform}; }
    static Init he_normal() { return {Kind::he_normal}; }
    static Init fan_in_uniform() { return {Kind::fan_in_uniform}; }
};

// Fan-in and fan-out of a kernel shape: (in, out) for rank 2; for rank > 2 the last two axes
// are (in_channels, out_channels) times the receptive field (the leading axes' product).
std::pair<double, double> fans(const Shape& shape);
// Fills `t` in place according to `init`, drawing from `gen`.
void initialize(Tensor& t, const Init& init, Generator& gen);

class ParamStore {
public:
    // Creates a parameter, or returns the existing one of that name after checking its shape
    // and dtype agree (reusing a layer shares its parameters).
    Parameter& create(const std::string& name, const Shape& shape, DType dtype, const Init& init, Generator& gen);
    // Adds a parameter with a given value; an existing name is an error.
    Parameter& add(const std::string& name, Tensor value);
    Parameter& get(const std::string& name);
    const Parameter& get(const std::string& name) const;
    Parameter* find(const std::string& name);
    bool contains(const std::string& name) const { return index_.count(name) > 0; }
    std::size_t size() const { return params_.size(); }
    std::int64_t count_elements() const;
    void zero_grad();
    // Creation order.
    std::vector<Parameter*> all();
    std::vector<const Parameter*> all() const;

    // Freezes (trainable = false) every parameter whose name matches one of `patterns`, those
    // there and those added later (Keras's trainable = False, by name: "h1.*").
    void freeze(const std::vector<std::string>& patterns);
    // The patterns freeze() was given that match no parameter yet.
    std::vector<std::string> unmatched_freeze_patterns() const;

private:
    std::vector<std::unique_ptr<Parameter>> params_;
    std::map<std::string, Parameter*> index_;
    std::vector<std::string> frozen_;
};

// Whether `name` matches a glob `pattern`: `*` any run of characters (dots included), `?` one.
bool matches_pattern(const std::string& name, const std::string& pattern);

}  // namespace wengert
