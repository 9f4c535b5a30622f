// wengert: layers as values, and Trax's data-stack combinators.
//
// Note [Layers and the data stack]
// A layer takes n_in values from the top of a data stack and pushes n_out back (SPEC.md
// section 1; the top is index 0). Serial, Parallel, Branch, Select and Residual compose
// layers exactly as Trax does, so a Trax model ports line by line.
//
// Note [Parameter names]
// A layer's parameters are named by its path: the name it was given (set_path) followed by
// its position inside composites, "<child kind>" or "<child kind>_<i>" when unnamed siblings
// share a kind, e.g. "attn.parallel.dense_1.w". Parameters are created on first use (their
// shapes depend on the inputs) and looked up by name afterwards, so applying one layer value
// twice shares its parameters, and a call site evaluated again reuses its own. A combinator
// names only those of its sublayers that have no path yet: a layer keeps the first path it is
// given, so one layer value has one set of parameters wherever it is used - applied directly,
// inside one or several combinators, in any order of those uses (Trax's weight sharing,
// SPEC.md section 1). Each parameter's initial value is drawn from a generator keyed by
// (seed, name), so adding a layer never changes another layer's initial values.
//
// Note [Penalties of shared layers]
// A weight's penalty (a kernel or bias regularizer) is added once per weight, however often
// its layer is applied; an activity penalty once per application, on that application's
// output (Keras, SPEC.md section 2). LayerContext::add_weight_penalty adds a weight's penalty
// unless added_losses holds one of that name already, so a forward pass that starts from an
// empty added_losses (a fresh context, or the last pass's losses cleared) gets each once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "wengert/ops.hpp"
#include "wengert/params.hpp"
#include "wengert/tape.hpp"

namespace wengert {

// What a layer needs besides its inputs.
struct LayerContext {
    explicit LayerContext(ParamStore& store, std::uint64_t seed_ = 0, DType dtype_ = DType::f32)
        : params(store), seed(seed_), dtype(dtype_) {}

    ParamStore& params;
    std::uint64_t seed = 0;
    DType dtype = DType::f32;
    // Penalties a layer adds (activity/kernel regularizers): summed into the objective by the
    // caller, each logged under its name.
    std::vector<std::pair<std::string, Var>> added_losses;
    // When positive, param() creates no parameter of more elements (Note [Element limit]): the
    // language sets it, so that dense(10^9) is an error instead of the machine's memory.
    std::int64_t max_param_elements = 0;

    // The parameter `name` (full path), created with `init` on first use; `trainable = false`
    // creates it frozen (no gradient, no optimizer state).
    Var param(const std::string& name, const Shape& shape, const Init& init, bool trainable = true);
    // Adds penalty(weight) to added_losses as `name`, unless added_losses holds that name
    // already (Note [Penalties of shared layers]).
    void add_weight_penalty(const std::string& name, const std::function<Var(Var)>& penalty, const Var& weight);

    // Note [Inspected values]
    // Some values inside a layer cost something to keep and are rarely read: the attention
    // weights (B, h, Lq, Lk), which the fused pure_attention never materialises. A layer offers
    // such a value by name (its path and a suffix, "h1.attention.weights") and computes it only
    // when the caller asked for that name: `if (ctx.wants(name)) ctx.inspect(name, value())`.
    // wants() records every name offered, so a caller can list what could have been asked for.
    std::set<std::string> wanted;
    std::vector<std::string> offered;
    std::vector<std::pair<std::string, Var>> inspected;
    bool wants(const std::string& name);
    void inspect(const std::string& name, Var value) { inspected.emplace_back(name, std::move(value)); }
};

std::uint64_t hash_name(std::uint64_t seed, const std::string& name);

class Layer {
public:
    virtual ~Layer() = default;
    virtual int n_in() const = 0;
    virtual int n_out() const = 0;
    // The layer's kind, as the language names it: "dense", "serial", ...
    virtual std::string kind() const = 0;
    // Applies the layer to exactly n_in() values; returns n_out() values.
    virtual std::vector<Var> forward(std::span<const Var> inputs, LayerContext& ctx) = 0;
    // Names this layer and (recursively) its sublayers.
    virtual void set_path(const std::string& path) { path_ = path; }
    const std::string& path() const { return path_; }
    // Sublayers, for parameter tables and graphs.
    virtual std::vector<std::shared_ptr<Layer>> children() const { return {}; }

    // Applies to inputs and returns the single output (n_out must be 1).
    Var operator()(std::span<const Var> inputs, LayerContext& ctx);

protected:
    std::string path_;
};

using LayerPtr = std::shared_ptr<Layer>;

// Runs a layer over a data stack (top = index 0): pops n_in, pushes the outputs.
void apply_to_stack(Layer& layer, std::vector<Var>& stack, LayerContext& ctx);

// ---- combinators ------------------------------------------------------------------------------
LayerPtr serial(std::vector<LayerPtr> layers);
LayerPtr parallel(std::vector<LayerPtr> layers);
LayerPtr branch(std::vector<LayerPtr> layers);
// n_in defaults to max(indices) + 1.
LayerPtr select(std::vector<int> indices, std::optional<int> n_in = std::nullopt);
// Serial(Branch(shortcut, Serial(layers)), Add()); shortcut null means identity.
LayerPtr residual(std::vector<LayerPtr> layers, LayerPtr shortcut = nullptr);
LayerPtr add_layer();          // (x0, x1) -> x0 + x1
LayerPtr subtract_top();       // (x0, x1) -> x1 - x0
LayerPtr dup();                // x -> (x, x)
LayerPtr swap();               // (x0, x1) -> (x1, x0)
LayerPtr drop();               // x -> ()
LayerPtr identity();           // an empty serial

// A layer from a function of its inputs (activations, user functions, op wrappers).
using LayerFn = std::function<std::vector<Var>(std::span<const Var>, LayerContext&, const std::string& path)>;
LayerPtr fn_layer(std::string kind, int n_in, int n_out, LayerFn fn);

// ---- parameterised layers -----------------------------------------------------------------------
// What a layer with a kernel and a bias takes besides its size (dense, conv2d).
struct KernelLayerOptions {
    bool use_bias = true;
    bool trainable = true;   // false: the kernel and bias are frozen (Keras's trainable = False)
    // Computed with the product and the bias in one op (linear() in ops.hpp, Note [Fused
    // linear]): the cheap way to write activation = relu.
    Activation fused_activation = Activation::none;
    // Applied to x @ W + b (after fused_activation) before the activity regularizer sees the
    // output (Keras's activation argument).
    std::function<Var(Var)> activation;
    Init kernel_init = Init::glorot_uniform();
    Init bias_init = Init::zeros();
    // Keras-style penalties, named "<path>.kernel_regularizer" etc. in added_losses.
    std::function<Var(Var)> kernel_regularizer;
    std::function<Var(Var)> bias_regularizer;
    std::function<Var(Var)> activity_regularizer;   // divided by the batch size (first axis)
};
using DenseOptions = KernelLayerOptions;
// y = x @ W + b over the last axis, one linear() op; W (d_in, n_units) named "<path>.w", b "<path>.b".
LayerPtr dense(std::int64_t n_units, DenseOptions options = {});
struct Conv2dLayerOptions : KernelLayerOptions {
    std::int64_t stride_h = 1, stride_w = 1;
    Padding2d padding;
    std::int64_t dilation_h = 1, dilation_w = 1;
    std::int64_t groups = 1;
};
// Keras's Conv2D over NHWC images, one conv2d() op: x (N, H, W, C) -> (N, OH, OW, filters),
// kernel W (kernel_h, kernel_w, C / groups, filters) named "<path>.w", b (filters) "<path>.b".
LayerPtr conv2d_layer(std::int64_t filters, std::int64_t kernel_h, std::int64_t kernel_w, Conv2dLayerOptions options = {});
// table (vocab, d) named "<path>.table"; ids i64 (...) -> (..., d), or a distribution over
// the vocabulary, f32/f64 (..., vocab) -> (..., d), as s @ table (Note [Near one-hot]).
LayerPtr embedding_layer(std::int64_t vocab, std::int64_t d, Init init = Init::normal(0.0, 1.0), bool trainable = true);
// Layer norm over the last axis with "<path>.gamma" (ones) and "<path>.beta" (zeros).
LayerPtr layer_norm_layer(double eps = 1e-6, bool trainable = true);
LayerPtr dropout_layer(double rate);

// ---- attention and positions (SPEC.md sections 1 and 3) -------------------------------------
// The standard library's attention layers (attention_qkv, attention, causal_attention,
// encoder_block in dsl/std/prelude.wg) are combinators of these, dense and layer_norm.
//
// Trax's PureAttention as a layer, (q, k, v, mask) -> (y, mask): penalized_attention (ops.hpp)
// with these settings, n_heads >= 1, dropout in [0, 1). `bias`, a fixed tensor broadcast to (B,
// n_heads, Lq, Lk), joins the penalty's bias on the logits. The layer offers its weights by name
// (Note [Attention weights by name] in layers.cpp).
LayerPtr pure_attention_layer(std::int64_t n_heads = 1, double dropout = 0.0, AttentionPenalty penalty = {},
                              std::optional<Tensor> bias = std::nullopt);
// x (B, L, d), L <= max_len -> x + table[:L], the table (max_len, d) learned, named "<path>.table".
LayerPtr positional_embedding_layer(std::int64_t max_len, std::int64_t d, Init init = Init::normal());
// x (B, L, d), L <= max_len -> x + sinusoids(L, d) in x's dtype (ops.hpp); no parameters.
LayerPtr sinusoidal_embedding_layer(std::int64_t max_len, std::int64_t d);

}  // namespace wengert
