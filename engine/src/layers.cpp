#include "wengert/layers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert {

// ---------------------------------------------------------------- context

std::uint64_t hash_name(std::uint64_t seed, const std::string& name) {
    // FNV-1a over the name, mixed with the seed (splitmix64 finaliser).
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : name) {
        h ^= c;
        h *= 1099511628211ull;
    }
    h ^= seed + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
    return h;
}

Var LayerContext::param(const std::string& name, const Shape& shape, const Init& init, bool trainable) {
    Parameter* p = params.find(name);
    if (!p) {
        std::optional<ElementLimit> limit;
        if (max_param_elements > 0) limit.emplace(max_param_elements, name, "a parameter may have");
        Generator gen(hash_name(seed, name));
        p = &params.create(name, shape, dtype, init, gen);
        if (!trainable) p->trainable = false;
    } else if (!(p->value.shape() == shape)) {
        throw ShapeError(name, fmt::format("parameter has shape {} but this use needs {} (a layer value applied to "
                                           "inputs of a different size shares its parameters)",
                                           p->value.shape().str(), shape.str()));
    }
    return Tape::current().param(*p);
}

bool LayerContext::wants(const std::string& name) {
    if (std::find(offered.begin(), offered.end(), name) == offered.end()) offered.push_back(name);
    return wanted.count(name) > 0;
}

void LayerContext::add_weight_penalty(const std::string& name, const std::function<Var(Var)>& penalty, const Var& weight) {
    auto same_name = [&](const auto& loss) { return loss.first == name; };
    if (std::none_of(added_losses.begin(), added_losses.end(), same_name)) added_losses.emplace_back(name, penalty(weight));
}

Var Layer::operator()(std::span<const Var> inputs, LayerContext& ctx) {
    if (n_out() != 1) {
        throw ShapeError(kind(), fmt::format("layer has {} outputs; call forward() to get them all", n_out()));
    }
    return forward(inputs, ctx).at(0);
}

void apply_to_stack(Layer& layer, std::vector<Var>& stack, LayerContext& ctx) {
    auto n = static_cast<std::size_t>(layer.n_in());
    if (stack.size() < n) {
        throw ShapeError(layer.kind(), fmt::format("needs {} inputs but the data stack holds {}", n, stack.size()));
    }
    std::vector<Var> inputs(stack.begin(), stack.begin() + static_cast<std::ptrdiff_t>(n));
    std::vector<Var> outputs = layer.forward(inputs, ctx);
    stack.erase(stack.begin(), stack.begin() + static_cast<std::ptrdiff_t>(n));
    stack.insert(stack.begin(), outputs.begin(), outputs.end());
}

namespace {

void require_inputs(const Layer& layer, std::span<const Var> inputs) {
    if (static_cast<int>(inputs.size()) != layer.n_in()) {
        throw ShapeError(layer.kind(), fmt::format("takes {} input{} but was given {}", layer.n_in(),
                                                   layer.n_in() == 1 ? "" : "s", inputs.size()));
    }
}

// A count of stack values a combinator works out from its layers' counts, summed in 64 bits:
// counts from the language (select's n_in) can be any integer, and a sum past int is an error.
int stack_count(std::int64_t n, const std::string& kind) {
    if (n > std::numeric_limits<int>::max()) throw ShapeError(kind, fmt::format("would take or give {} values", n));
    return static_cast<int>(n);
}

// Names the children that have no path yet "<kind>" or "<kind>_<i>" (i counting unnamed
// siblings of that kind); a named child keeps its path (Note [Parameter names]).
void name_children(const std::string& path, const std::vector<LayerPtr>& children) {
    std::map<std::string, int> total, seen;
    for (const auto& c : children) {
        if (c->path().empty()) ++total[c->kind()];
    }
    for (const auto& c : children) {
        if (!c->path().empty()) continue;
        std::string k = c->kind();
        std::string child = total[k] > 1 ? fmt::format("{}_{}", k, seen[k]++) : k;
        c->set_path(path.empty() ? child : path + "." + child);
    }
}

// ---------------------------------------------------------------- combinators

class Composite : public Layer {
public:
    explicit Composite(std::vector<LayerPtr> layers) : layers_(std::move(layers)) {}
    void set_path(const std::string& path) override {
        path_ = path;
        name_children(path, layers_);
    }
    std::vector<LayerPtr> children() const override { return layers_; }

protected:
    std::vector<LayerPtr> layers_;
};

class Serial : public Composite {
public:
    explicit Serial(std::vector<LayerPtr> layers) : Composite(std::move(layers)) {
        // total += n_in; max = max(max, total); total -= n_out
        std::int64_t total = 0, most = 0;
        for (const auto& l : layers_) {
            total += l->n_in();
            most = std::max(most, total);
            total -= l->n_out();
        }
        if (layers_.empty()) {
            n_in_ = n_out_ = 1;
        } else {
            n_in_ = stack_count(most, "serial");
            n_out_ = stack_count(most - total, "serial");
        }
    }
    int n_in() const override { return n_in_; }
    int n_out() const override { return n_out_; }
    std::string kind() const override { return "serial"; }
    std::vector<Var> forward(std::span<const Var> inputs, LayerContext& ctx) override {
        require_inputs(*this, inputs);
        std::vector<Var> stack(inputs.begin(), inputs.end());
        for (const auto& l : layers_) apply_to_stack(*l, stack, ctx);
        return stack;
    }

private:
    int n_in_ = 1, n_out_ = 1;
};

class Parallel : public Composite {
public:
    explicit Parallel(std::vector<LayerPtr> layers) : Composite(std::move(layers)) {
        std::int64_t n_in = 0, n_out = 0;
        for (const auto& l : layers_) {
            n_in += l->n_in();
            n_out += l->n_out();
        }
        n_in_ = stack_count(n_in, "parallel");
        n_out_ = stack_count(n_out, "parallel");
    }
    int n_in() const override { return n_in_; }
    int n_out() const override { return n_out_; }
    std::string kind() const override { return "parallel"; }
    std::vector<Var> forward(std::span<const Var> inputs, LayerContext& ctx) override {
        require_inputs(*this, inputs);
        std::vector<Var> out;
        std::size_t at = 0;
        for (const auto& l : layers_) {
            auto n = static_cast<std::size_t>(l->n_in());
            auto ys = l->forward(inputs.subspan(at, n), ctx);
            out.insert(out.end(), ys.begin(), ys.end());
            at += n;
        }
        return out;
    }

private:
    int n_in_ = 0, n_out_ = 0;
};

class Select : public Layer {
public:
    Select(std::vector<int> indices, int n_in) : indices_(std::move(indices)), n_in_(n_in) {
        for (int i : indices_) {
            if (i < 0 || i >= n_in_) {
                throw ShapeError("select", fmt::format("index {} is out of range for n_in = {}", i, n_in_));
            }
        }
    }
    int n_in() const override { return n_in_; }
    int n_out() const override { return static_cast<int>(indices_.size()); }
    std::string kind() const override { return "select"; }
    std::vector<Var> forward(std::span<const Var> inputs, LayerContext&) override {
        require_inputs(*this, inputs);
        std::vector<Var> out;
        for (int i : indices_) out.push_back(inputs[static_cast<std::size_t>(i)]);
        return out;
    }

private:
    std::vector<int> indices_;
    int n_in_;
};

class FnLayer : public Layer {
public:
    FnLayer(std::string kind, int n_in, int n_out, LayerFn fn)
        : kind_(std::move(kind)), n_in_(n_in), n_out_(n_out), fn_(std::move(fn)) {}
    int n_in() const override { return n_in_; }
    int n_out() const override { return n_out_; }
    std::string kind() const override { return kind_; }
    std::vector<Var> forward(std::span<const Var> inputs, LayerContext& ctx) override {
        require_inputs(*this, inputs);
        auto out = fn_(inputs, ctx, path_);
        if (static_cast<int>(out.size()) != n_out_) {
            throw ShapeError(kind_, fmt::format("returned {} values but declares {} outputs", out.size(), n_out_));
        }
        return out;
    }

private:
    std::string kind_;
    int n_in_, n_out_;
    LayerFn fn_;
};

}  // namespace

LayerPtr serial(std::vector<LayerPtr> layers) { return std::make_shared<Serial>(std::move(layers)); }
LayerPtr parallel(std::vector<LayerPtr> layers) { return std::make_shared<Parallel>(std::move(layers)); }

LayerPtr select(std::vector<int> indices, std::optional<int> n_in) {
    int n = n_in.value_or(indices.empty() ? 0 : stack_count(std::int64_t{*std::max_element(indices.begin(), indices.end())} + 1, "select"));
    return std::make_shared<Select>(std::move(indices), n);
}

// Branch(layers) = Serial(Select(...), Parallel(layers)): each layer sees copies of the top
// max(n_in) items.
LayerPtr branch(std::vector<LayerPtr> layers) {
    int n_in = 0;
    for (const auto& l : layers) n_in = std::max(n_in, l->n_in());
    std::vector<int> indices;
    for (const auto& l : layers) {
        for (int i = 0; i < l->n_in(); ++i) indices.push_back(i);
    }
    class Branch : public Serial {
    public:
        using Serial::Serial;
        std::string kind() const override { return "branch"; }
        void set_path(const std::string& path) override {
            path_ = path;
            // name the branches directly under the branch's own path
            name_children(path, layers_.back()->children());
        }
    };
    return std::make_shared<Branch>(std::vector<LayerPtr>{select(indices, n_in), parallel(std::move(layers))});
}

LayerPtr residual(std::vector<LayerPtr> layers, LayerPtr shortcut) {
    LayerPtr body = layers.size() == 1 ? layers.front() : serial(std::move(layers));
    class Residual : public Serial {
    public:
        Residual(std::vector<LayerPtr> parts, LayerPtr body) : Serial(std::move(parts)), body_(std::move(body)) {}
        std::string kind() const override { return "residual"; }
        void set_path(const std::string& path) override {
            path_ = path;
            name_children(path, {body_});
        }

    private:
        LayerPtr body_;
    };
    LayerPtr first = branch({shortcut ? shortcut : identity(), body});
    return std::make_shared<Residual>(std::vector<LayerPtr>{first, add_layer()}, body);
}

LayerPtr fn_layer(std::string kind, int n_in, int n_out, LayerFn fn) {
    return std::make_shared<FnLayer>(std::move(kind), n_in, n_out, std::move(fn));
}

LayerPtr add_layer() {
    return fn_layer("add", 2, 1, [](std::span<const Var> x, LayerContext&, const std::string&) {
        return std::vector<Var>{add(x[0], x[1])};
    });
}

LayerPtr subtract_top() {
    return fn_layer("subtract_top", 2, 1, [](std::span<const Var> x, LayerContext&, const std::string&) {
        return std::vector<Var>{sub(x[1], x[0])};
    });
}

LayerPtr dup() {
    return fn_layer("dup", 1, 2, [](std::span<const Var> x, LayerContext&, const std::string&) {
        return std::vector<Var>{x[0], x[0]};
    });
}

LayerPtr swap() {
    return fn_layer("swap", 2, 2, [](std::span<const Var> x, LayerContext&, const std::string&) {
        return std::vector<Var>{x[1], x[0]};
    });
}

LayerPtr drop() {
    return fn_layer("drop", 1, 0, [](std::span<const Var>, LayerContext&, const std::string&) {
        return std::vector<Var>{};
    });
}

LayerPtr identity() { return serial({}); }

// ---------------------------------------------------------------- parameterised layers

namespace {

// A layer's kernel "<prefix>.w" and bias "<prefix>.b", with their weight penalties (Note
// [Penalties of shared layers]). fan_in is the kernel's, for PyTorch's default bias.
std::pair<Var, std::optional<Var>> kernel_and_bias(LayerContext& ctx, const std::string& prefix, const Shape& kernel_shape,
                                                   std::int64_t n_out, std::int64_t fan_in, const KernelLayerOptions& options) {
    Var w = ctx.param(prefix + ".w", kernel_shape, options.kernel_init, options.trainable);
    if (options.kernel_regularizer) ctx.add_weight_penalty(prefix + ".kernel_regularizer", options.kernel_regularizer, w);
    std::optional<Var> b;
    if (options.use_bias) {
        // PyTorch draws a Linear or Conv bias from U(±1/sqrt(fan_in)) with the kernel's fan_in
        const double limit = 1.0 / std::sqrt(static_cast<double>(fan_in));
        Init bias_init = options.bias_init.kind == Init::Kind::fan_in_uniform ? Init::uniform(-limit, limit) : options.bias_init;
        b = ctx.param(prefix + ".b", Shape{n_out}, bias_init, options.trainable);
        if (options.bias_regularizer) ctx.add_weight_penalty(prefix + ".bias_regularizer", options.bias_regularizer, *b);
    }
    return {w, b};
}

// The activation after the fused one, then the activity penalty on the output.
Var finish_output(Var y, LayerContext& ctx, const std::string& prefix, const KernelLayerOptions& options) {
    if (options.activation) y = options.activation(y);
    if (options.activity_regularizer) {
        // tf.keras divides the activity penalty by the batch size
        double batch = static_cast<double>(y.ndim() > 1 ? y.shape()[0] : 1);
        ctx.added_losses.emplace_back(prefix + ".activity_regularizer", options.activity_regularizer(y) / batch);
    }
    return y;
}

}  // namespace

LayerPtr dense(std::int64_t n_units, DenseOptions options) {
    if (n_units <= 0) throw ShapeError("dense", fmt::format("n_units must be positive, got {}", n_units));
    return fn_layer("dense", 1, 1, [n_units, options](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
        // x (..., d_in), w (d_in, n_units), b (n_units) -> (..., n_units)
        if (x[0].ndim() < 1) throw ShapeError("dense", "input must have at least one axis");
        std::int64_t d_in = x[0].shape().back();
        std::string prefix = path.empty() ? "dense" : path;
        auto [w, b] = kernel_and_bias(ctx, prefix, Shape{d_in, n_units}, n_units, d_in, options);
        return std::vector<Var>{finish_output(linear(x[0], w, b, options.fused_activation), ctx, prefix, options)};
    });
}

LayerPtr conv2d_layer(std::int64_t filters, std::int64_t kernel_h, std::int64_t kernel_w, Conv2dLayerOptions options) {
    if (filters <= 0) throw ShapeError("conv2d", fmt::format("filters must be positive, got {}", filters));
    if (kernel_h <= 0 || kernel_w <= 0) throw ShapeError("conv2d", fmt::format("the kernel must be positive, got ({}, {})", kernel_h, kernel_w));
    if (options.groups <= 0 || filters % options.groups != 0) {
        throw ShapeError("conv2d", fmt::format("groups must be positive and divide the filters {}, got {}", filters, options.groups));
    }
    return fn_layer("conv2d", 1, 1, [filters, kernel_h, kernel_w, options](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
        // x (N, H, W, C), w (KH, KW, C / groups, filters), b (filters) -> (N, OH, OW, filters)
        if (x[0].ndim() != 4) throw ShapeError("conv2d", fmt::format("input must be an image batch (N, H, W, C), got {}", x[0].shape().str()));
        const std::int64_t c = x[0].shape()[3];
        if (c % options.groups != 0) {
            throw ShapeError("conv2d", fmt::format("groups {} must divide the input's {} channels ({})", options.groups, c, x[0].shape().str()));
        }
        const std::int64_t cg = c / options.groups;
        std::string prefix = path.empty() ? "conv2d" : path;
        auto [w, b] = kernel_and_bias(ctx, prefix, Shape{kernel_h, kernel_w, cg, filters}, filters, kernel_h * kernel_w * cg, options);
        Conv2dOptions conv;
        conv.stride_h = options.stride_h;
        conv.stride_w = options.stride_w;
        conv.padding = options.padding;
        conv.dilation_h = options.dilation_h;
        conv.dilation_w = options.dilation_w;
        conv.groups = options.groups;
        conv.activation = options.fused_activation;
        return std::vector<Var>{finish_output(conv2d(x[0], w, b, conv), ctx, prefix, options)};
    });
}

LayerPtr embedding_layer(std::int64_t vocab, std::int64_t d, Init init, bool trainable) {
    return fn_layer("embedding", 1, 1, [vocab, d, init, trainable](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
        Var table = ctx.param((path.empty() ? "embedding" : path) + ".table", Shape{vocab, d}, init, trainable);
        if (!is_floating(x[0].dtype())) return std::vector<Var>{embedding(table, x[0])};
        // Note [Near one-hot]: a distribution s (..., vocab) mixes the rows, s @ table; a
        // one-hot s reads the row an id would, and the gradient reaches s
        if (x[0].ndim() < 1 || x[0].shape().back() != vocab) {
            throw ShapeError("embedding", fmt::format("a distribution over the vocabulary needs {} entries on its last axis, got {} {}",
                                                      vocab, dtype_name(x[0].dtype()), x[0].shape().str()));
        }
        return std::vector<Var>{matmul(x[0], table)};
    });
}

LayerPtr layer_norm_layer(double eps, bool trainable) {
    return fn_layer("layer_norm", 1, 1, [eps, trainable](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
        std::int64_t d = x[0].shape().back();
        std::string prefix = path.empty() ? "layer_norm" : path;
        Var gamma = ctx.param(prefix + ".gamma", Shape{d}, Init::ones(), trainable);
        Var beta = ctx.param(prefix + ".beta", Shape{d}, Init::zeros(), trainable);
        return std::vector<Var>{layer_norm(x[0], gamma, beta, eps)};
    });
}

LayerPtr dropout_layer(double rate) {
    return fn_layer("dropout", 1, 1, [rate](std::span<const Var> x, LayerContext&, const std::string&) {
        return std::vector<Var>{dropout(x[0], rate)};
    });
}

// ---------------------------------------------------------------- attention and positions

namespace {

// Note [Attention weights by name]
// A pure_attention layer offers its weights (B, h, Lq, Lk), before dropout (the penalty on the
// weights applied), as inspected values (Note [Inspected values] in wengert/layers.hpp) under
// two names: "<its path>.weights", in full
// (h1.encoder_block.residual_0.attention.attention_qkv.pure_attention.weights), and the short
// "<statement>.attention.weights", the statement being the first part of its path: the
// statement's first attention is "h1.attention.weights", its second "h1.attention_1.weights",
// in the order they run. So `--dump h1.attention.weights=w.npy` reads the first encoder block
// of models/sort_attention.wg. They are computed, by the unfused composition
// (attention_weights), only when asked for; the fused op computes the output either way.

// "<prefix>.weights", "<prefix>_1.weights", ...: is `name` one of the short names of `prefix`?
bool is_weights_alias(const std::string& name, const std::string& prefix) {
    const std::string suffix = ".weights";
    if (name.size() < prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
        return false;
    }
    const std::string middle = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    return middle.empty() || (middle.size() > 1 && middle[0] == '_' &&
                              std::all_of(middle.begin() + 1, middle.end(), [](char c) { return c >= '0' && c <= '9'; }));
}

// Offers the weights of one application under its two names, computed when either is wanted.
void offer_weights(LayerContext& ctx, const std::string& path, const std::function<Var()>& weights) {
    const std::string full = (path.empty() ? std::string("pure_attention") : path) + ".weights";
    const std::string statement = path.substr(0, path.find('.'));
    const std::string prefix = (statement.empty() ? std::string() : statement + ".") + "attention";
    const auto earlier = std::count_if(ctx.offered.begin(), ctx.offered.end(),
                                       [&](const std::string& name) { return is_weights_alias(name, prefix); });
    const std::string alias = prefix + (earlier == 0 ? std::string() : fmt::format("_{}", earlier)) + ".weights";
    const bool want_full = ctx.wants(full), want_alias = ctx.wants(alias);
    if (!want_full && !want_alias) return;
    NoGrad no_grad;
    Var w = weights();
    if (want_full) ctx.inspect(full, w);
    if (want_alias) ctx.inspect(alias, w);
}

// x (B, L, d) with L <= max_len
void require_positions(const Var& x, std::int64_t max_len, std::int64_t d, const char* op) {
    if (x.ndim() != 3 || x.shape()[2] != d) throw ShapeError(op, fmt::format("expects (B, L, {}), got {}", d, x.shape().str()));
    if (x.shape()[1] > max_len) throw ShapeError(op, fmt::format("length {} exceeds max_len {}", x.shape()[1], max_len));
}

}  // namespace

LayerPtr pure_attention_layer(std::int64_t n_heads, double dropout, AttentionPenalty penalty, std::optional<Tensor> bias) {
    const char* op = "pure_attention";
    if (n_heads < 1) throw ShapeError(op, fmt::format("n_heads must be positive, got {}", n_heads));
    if (!(dropout >= 0 && dropout < 1)) throw ShapeError(op, fmt::format("dropout must be in [0, 1), got {}", dropout));
    return fn_layer(op, 4, 2, [=](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
        // x: q (B, Lq, d), k (B, Lk, d), v (B, Lk, d), mask -> (y (B, Lq, d), mask)
        // the layer may outlive the tape its bias was made on: the bias joins each run's tape
        std::optional<Var> run_bias;
        if (bias) run_bias = Tape::current().input(*bias);
        Var y = penalized_attention(x[0], x[1], x[2], x[3], n_heads, dropout, penalty, run_bias);
        offer_weights(ctx, path, [&] { return attention_weights(x[0], x[1], x[3], n_heads, run_bias, penalty); });
        return std::vector<Var>{y, x[3]};
    });
}

LayerPtr positional_embedding_layer(std::int64_t max_len, std::int64_t d, Init init) {
    return fn_layer("positional_embedding", 1, 1, [=](std::span<const Var> x, LayerContext& ctx, const std::string& path) {
        // x (B, L, d), table (max_len, d) -> (B, L, d)
        require_positions(x[0], max_len, d, "positional_embedding");
        Var table = ctx.param((path.empty() ? "positional_embedding" : path) + ".table", Shape{max_len, d}, init);
        return std::vector<Var>{x[0] + slice(table, 0, 0, x[0].shape()[1])};
    });
}

LayerPtr sinusoidal_embedding_layer(std::int64_t max_len, std::int64_t d) {
    return fn_layer("sinusoidal_embedding", 1, 1, [=](std::span<const Var> x, LayerContext&, const std::string&) {
        // x (B, L, d) -> (B, L, d)
        require_positions(x[0], max_len, d, "sinusoidal_embedding");
        return std::vector<Var>{x[0] + sinusoids(x[0].shape()[1], d, x[0].dtype())};
    });
}

}  // namespace wengert
