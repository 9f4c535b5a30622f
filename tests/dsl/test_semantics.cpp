// What programs mean, as docs/dsl.md states it: parameter paths, layers as values and Trax's
// data-stack combinators, ops used as layers, loss and metric statements, params, and the
// builtins the reference lists.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "support.hpp"
#include "wengert/dsl/interpreter.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

using namespace wengert;
using namespace wengert::dsl;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

struct Model {
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in{sink, params, test_interpreter_options()};

    explicit Model(const std::string& text) {
        bool loaded = in.load_source("m.wg", text);
        INFO(sink.format_all());
        REQUIRE(loaded);
    }
    std::vector<std::string> param_names() const {
        std::vector<std::string> names;
        for (const Parameter* p : std::as_const(params).all()) names.push_back(p->name);
        return names;
    }
};

Tensor random_tensor(const Shape& shape, std::uint64_t seed) {
    Tensor t = Tensor::zeros(shape, DType::f32);
    Generator(seed).fill_uniform(t, -1.0, 1.0);
    return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    Tensor x = a.to(DType::f64).contiguous(), y = b.to(DType::f64).contiguous();
    double worst = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) worst = std::max(worst, std::abs(x.data<double>()[i] - y.data<double>()[i]));
    return worst;
}

const Tensor& output(const RunResult& r, std::size_t i) {
    REQUIRE(r.outputs.size() > i);
    REQUIRE(r.outputs[i].is<Var>());
    return r.outputs[i].get<Var>().value();
}

std::int64_t integer_output(const RunResult& r, std::size_t i) {
    REQUIRE(r.outputs.size() > i);
    REQUIRE(r.outputs[i].is<std::int64_t>());
    return r.outputs[i].get<std::int64_t>();
}

}  // namespace

TEST_CASE("parameters are named by the statements that create them (Note [Paths])", "[dsl][semantics]") {
    Model m(R"(
layer mlp2(d) = serial(dense(d), relu, dense(d))
def block(x) {
    h = dense(2)(x)
    return relu(h)
}
param scale: f32[2] = 1.0
def f(x: f32[B, 8]) {
    a = block(x)
    b = mlp2(8)(x)
    c = residual(dense(8), relu)(x)
    two = dense(5)(x) + dense(5)(x)
    enc = dense(6)
    e1 = enc(x)
    e2 = enc(x)
    l = serial(block)
    g1 = l(x)
    g2 = l(x)
    m = mlp2(3)
    k1 = m(x)
    k2 = m(x)
    s = a * scale
    return s
}
)");
    Tape tape;
    m.in.run("f", {random_tensor(Shape{4, 8}, 1)}, Mode::train);
    CHECK(m.param_names() == std::vector<std::string>{
                                 "a.h.dense.w", "a.h.dense.b",                                         // a def's statements run under its caller's name
                                 "b.mlp2.dense_0.w", "b.mlp2.dense_0.b", "b.mlp2.dense_1.w", "b.mlp2.dense_1.b",   // siblings of a kind
                                 "c.residual.serial.dense.w", "c.residual.serial.dense.b",
                                 "two.dense.w", "two.dense.b", "two.dense_1.w", "two.dense_1.b",   // a second dense in one statement
                                 "enc.w", "enc.b",                                                   // a bound layer: shared by e1 and e2
                                 "l.block.h.dense.w", "l.block.h.dense.b",                           // a def as a layer, applied twice
                                 "m.dense_0.w", "m.dense_0.b", "m.dense_1.w", "m.dense_1.b",   // a bound layer takes the name
                                 "scale"});
    std::vector<std::string> named;
    for (const NamedValue& v : m.in.named_values()) named.push_back(v.path);
    CHECK(named == std::vector<std::string>{"a.h", "a", "b", "c", "two", "enc", "e1", "e2", "l", "l.block.h", "g1", "l.block.h", "g2",
                                            "m", "k1", "k2", "s"});

    // the next run (the next training step) rebuilds the same paths: no new parameters
    std::size_t count = m.params.size();
    Tape again;
    m.in.run("f", {random_tensor(Shape{4, 8}, 2)}, Mode::train);
    CHECK(m.params.size() == count);
}

TEST_CASE("combinators follow Trax's data stack: n_in and n_out", "[dsl][semantics][combinators]") {
    Model m(R"(
def counts(x: f32[B, 2]) {
    return serial(dense(3), dup).n_in, serial(dense(3), dup).n_out,
           serial().n_in, serial().n_out,
           serial(dup, add).n_in, serial(dup, add).n_out,
           serial(swap, drop).n_in, serial(swap, drop).n_out,
           serial(select([0, 0, 0]), parallel(dense(4), dense(4), dense(4))).n_in,
           serial(select([0, 0, 0]), parallel(dense(4), dense(4), dense(4))).n_out,
           parallel(dense(1), swap, drop).n_in, parallel(dense(1), swap, drop).n_out,
           branch(dense(2), dense(3)).n_in, branch(dense(2), dense(3)).n_out,
           branch(add, dense(3)).n_in, branch(add, dense(3)).n_out,
           select([1, 0]).n_in, select([2], n_in = 4).n_in, select([2], n_in = 4).n_out,
           residual(dense(2)).n_in, residual(dense(2)).n_out,
           subtract_top.n_in, subtract_top.n_out, drop.n_out, identity.n_in,
           mse.n_in, where.n_in, softmax(axis = 0).n_in, cross_entropy(label_smoothing = 0.1).n_in
}
)");
    Tape tape;
    RunResult r = m.in.run("counts", {random_tensor(Shape{2, 2}, 1)}, Mode::train);
    std::vector<std::int64_t> got;
    for (std::size_t i = 0; i < r.outputs.size(); ++i) got.push_back(integer_output(r, i));
    CHECK(got == std::vector<std::int64_t>{1, 2,  1, 1,  1, 1,  2, 1,  1, 3,  4, 3,  1, 2,  2, 2,  2, 4, 1,  1, 1,  2, 1, 0, 1,
                                           2, 3, 1, 2});
}

TEST_CASE("combinators move values as Trax does: top of the stack first", "[dsl][semantics][combinators]") {
    Model m(R"(
def f(a: f32[B, 3], b: f32[B, 3]) {
    d = subtract_top(a, b)
    s1, s0 = swap(a, b)
    p, q = branch(relu, neg)(a)
    u, v, w = select([1, 0, 1])(a, b)
    r = residual(relu)(a)
    k = serial(dup, add)(a)
    return d, s1, s0, p, q, u, v, w, r, k
}
)");
    Tensor a = random_tensor(Shape{2, 3}, 1), b = random_tensor(Shape{2, 3}, 2);
    Tape tape;
    RunResult r = m.in.run("f", {a, b}, Mode::train);
    Var va = tape.input(a), vb = tape.input(b);
    CHECK(max_abs_diff(output(r, 0), (vb - va).value()) == 0);        // subtract_top: x1 - x0
    CHECK(max_abs_diff(output(r, 1), b) == 0);
    CHECK(max_abs_diff(output(r, 2), a) == 0);
    CHECK(max_abs_diff(output(r, 3), relu(va).value()) == 0);
    CHECK(max_abs_diff(output(r, 4), neg(va).value()) == 0);
    CHECK(max_abs_diff(output(r, 5), b) == 0);
    CHECK(max_abs_diff(output(r, 6), a) == 0);
    CHECK(max_abs_diff(output(r, 7), b) == 0);
    CHECK(max_abs_diff(output(r, 8), (va + relu(va)).value()) == 0);
    CHECK(max_abs_diff(output(r, 9), (va + va).value()) == 0);
}

TEST_CASE("an op called without its tensors is a layer over them (Note [Ops as layers])", "[dsl][semantics]") {
    Model m(R"(
def f(x: f32[B, 3], t: f32[B, 3]) {
    a = softmax(axis = 0)(x)
    b = serial(dense(3), relu)(x)
    c = serial(relu, sum(axis = 1))(x)
    e = mse(reduction = "sum")(x, t)
    return a, c, e
}
)");
    Tensor x = random_tensor(Shape{4, 3}, 1), t = random_tensor(Shape{4, 3}, 2);
    Tape tape;
    RunResult r = m.in.run("f", {x, t}, Mode::train);
    Var vx = tape.input(x), vt = tape.input(t);
    CHECK(max_abs_diff(output(r, 0), softmax(vx, 0).value()) < 1e-7);
    CHECK(max_abs_diff(output(r, 1), sum(relu(vx), {1}).value()) < 1e-6);
    CHECK(max_abs_diff(output(r, 2), mse(vx, vt, Reduction::sum).value()) < 1e-5);
}

TEST_CASE("loss terms sum into the objective; metrics and layer penalties are named by path", "[dsl][semantics]") {
    Model m(R"(
def inner(x) {
    h = dense(3)(x)
    loss l = mean(h ^ 2)
    metric mh = mean(h)
    return h
}
def f(x: f32[B, 8], y: i64[B]) {
    a = inner(x)
    logits = dense(3, kernel = l2(0.1), bias = l1(0.2), activity = l1_l2(0.01, 0.02))(a)
    loss ce = cross_entropy(logits, y)
    loss half = 0.5
    metric n = batch
    return logits
}
)");
    Tensor x = random_tensor(Shape{5, 8}, 1);
    Tensor y = Tensor::zeros(Shape{5}, DType::i64);
    Tape tape;
    RunResult r = m.in.run("f", {x, y}, Mode::train);
    std::vector<std::string> losses, metrics;
    double total = 0;
    for (const auto& [name, v] : r.losses) {
        losses.push_back(name);
        CHECK(v.ndim() == 0);
        total += v.item();
    }
    for (const auto& [name, v] : r.metrics) metrics.push_back(name);
    CHECK(losses == std::vector<std::string>{"a.l", "ce", "half", "logits.dense.kernel_regularizer", "logits.dense.bias_regularizer",
                                             "logits.dense.activity_regularizer"});
    CHECK(metrics == std::vector<std::string>{"a.mh", "n"});
    CHECK(r.metrics[1].second.item() == 5);   // batch: the first input's first axis
    CHECK(r.objective.item() == Approx(total).epsilon(1e-6));

    // the penalties are Keras's: l2 a * sum(w^2), l1 a * sum|b|, activity divided by the batch
    Var w = tape.param(m.params.get("logits.dense.w")), b = tape.param(m.params.get("logits.dense.b"));
    CHECK(r.losses[3].second.item() == Approx((0.1 * sum(w * w)).item()).epsilon(1e-6));
    CHECK(r.losses[4].second.item() == Approx((0.2 * sum(abs(b))).item()).epsilon(1e-6));
    Var logits = r.outputs[0].get<Var>();
    CHECK(r.losses[5].second.item() == Approx(((0.01 * sum(abs(logits)) + 0.02 * sum(logits * logits)) / 5.0).item()).epsilon(1e-5));
}

TEST_CASE("a shared layer adds its weight penalties once and its activity penalty per application (Note [Penalties of shared layers])",
          "[dsl][semantics][sharing]") {
    Model m(R"(
def f(x: f32[B, 3]) {
    d = dense(2, kernel = l2(0.01), bias = l1(0.5), bias_init = "ones", activity = l2(0.1))
    y1 = d(x)
    y2 = d(x * 2)
    y3 = serial(d, relu)(x)
    return y1, y2, y3
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {random_tensor(Shape{4, 3}, 1)}, Mode::train);
    std::vector<std::string> losses;
    double total = 0;
    for (const auto& [name, v] : r.losses) {
        losses.push_back(name);
        total += v.item();
    }
    CHECK(losses == std::vector<std::string>{"d.kernel_regularizer", "d.bias_regularizer", "d.activity_regularizer",
                                             "d.activity_regularizer", "d.activity_regularizer"});
    Var w = tape.param(m.params.get("d.w"));
    double kernel = (0.01 * sum(w * w)).item();
    CHECK(r.losses[0].second.item() == Approx(kernel).epsilon(1e-6));
    CHECK(r.losses[1].second.item() == Approx(1.0).epsilon(1e-6));   // 0.5 * sum|b|, b = ones(2)
    // one activity term per application, on the dense's own output: y1, y2, and y1 again inside y3
    Var y1 = r.outputs[0].get<Var>(), y2 = r.outputs[1].get<Var>();
    double a1 = (0.1 * sum(y1 * y1) / 4.0).item(), a2 = (0.1 * sum(y2 * y2) / 4.0).item();
    CHECK(r.losses[2].second.item() == Approx(a1).epsilon(1e-6));
    CHECK(r.losses[3].second.item() == Approx(a2).epsilon(1e-6));
    CHECK(r.losses[4].second.item() == Approx(a1).epsilon(1e-6));
    double activity = a1 + a2 + a1;
    CHECK(r.objective.item() == Approx(kernel + 1.0 + activity).epsilon(1e-5));
    CHECK(r.objective.item() == Approx(total).epsilon(1e-6));
}

TEST_CASE("a bound layer keeps its name in every combinator: one set of parameters, in any order of uses",
          "[dsl][semantics][sharing]") {
    Model m(R"(
enc = dense(4)
layer wrapped = enc
def f(x: f32[B, 4]) {
    lyr = dense(4)
    y1 = serial(lyr)(x)
    y2 = serial(lyr)(x)
    y3 = lyr(x)
    twice = serial(lyr, lyr)(x)
    again = lyr(y3)
    p, q = branch(lyr, serial(lyr))(x)
    r = residual(lyr)(x)
    skip = x + y3
    e1 = serial(enc)(x)
    e2 = wrapped(x)
    e3 = enc(x)
    return y1, y2, y3, twice, again, p, q, r, skip, e1, e2, e3
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {random_tensor(Shape{3, 4}, 1)}, Mode::train);
    CHECK(m.param_names() == std::vector<std::string>{"lyr.w", "lyr.b", "enc.w", "enc.b"});
    const Tensor& y3 = output(r, 2);
    for (std::size_t i : {0, 1, 5, 6}) {
        INFO("output " << i);
        CHECK(max_abs_diff(output(r, i), y3) == 0);
    }
    CHECK(max_abs_diff(output(r, 3), output(r, 4)) == 0);    // serial(lyr, lyr) is lyr twice
    CHECK(max_abs_diff(output(r, 7), output(r, 8)) == 0);    // residual(lyr) is x + lyr(x)
    CHECK(max_abs_diff(output(r, 9), output(r, 11)) == 0);   // a constant layer, in a combinator and directly
    CHECK(max_abs_diff(output(r, 10), output(r, 11)) == 0);  // and as a layer definition's body
}

TEST_CASE("pure_attention takes a bias tensor, called on tensors or made a layer, on top of a penalty", "[dsl][semantics][attention]") {
    Model m(R"(
def f(q: f32[B, 3, 4], k: f32[B, 5, 4], v: f32[B, 5, 4]) {
    b = distance_penalty(3, 5, scale = 0.5)
    direct = pure_attention(q, k, v, bias = b, n_heads = 2)
    by_penalty = pure_attention(q, k, v, penalty = distance(scale = 0.5), n_heads = 2)
    layered, kept = pure_attention(n_heads = 2, bias = b)(q, k, v, ones((3, 5), dtype = "u8"))
    both = pure_attention(q, k, v, bias = b, penalty = distance(scale = 0.5), n_heads = 2)
    twice = pure_attention(q, k, v, bias = b * 2, n_heads = 2)
    on_weights = pure_attention(q, k, v, bias = b, penalty = distance(scale = 0.0, on = "weights"), n_heads = 2)
    ks = k[:, 0:3]
    vs = v[:, 0:3]
    alone = pure_attention(q, ks, vs, penalty = alibi(causal = true), n_heads = 2)
    masked, mask = pure_attention(q, ks, vs, tril(ones((3, 3), dtype = "u8")), penalty = alibi(causal = true), n_heads = 2)
    return direct, by_penalty, layered, both, twice, on_weights, alone, masked
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {random_tensor(Shape{2, 3, 4}, 1), random_tensor(Shape{2, 5, 4}, 2), random_tensor(Shape{2, 5, 4}, 3)},
                           Mode::eval);
    CHECK(max_abs_diff(output(r, 0), output(r, 1)) < 1e-6);   // bias = the penalty's bias
    CHECK(max_abs_diff(output(r, 2), output(r, 0)) < 1e-6);   // the same bias in a layer
    CHECK(max_abs_diff(output(r, 3), output(r, 4)) < 1e-6);   // bias and penalty add up
    CHECK(max_abs_diff(output(r, 5), output(r, 0)) < 1e-6);   // with a penalty on the weights, the bias is on the logits
    CHECK(max_abs_diff(output(r, 6), output(r, 7)) < 1e-6);   // causal ALiBi needs no causal mask
}

TEST_CASE("a layer's attention bias is fixed: a learned one is applied to tensors", "[dsl][semantics][attention]") {
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in{sink, params, test_interpreter_options()};
    REQUIRE(in.load_source("m.wg", R"(
param B: f32[3, 3] = 0.0
def f(q: f32[B, 3, 4]) {
    y, mask = pure_attention(bias = B)(q, q, q, ones((3, 3), dtype = "u8"))
    return y
}
)"));
    Tape tape;
    CHECK_THROWS_WITH(in.run("f", {random_tensor(Shape{2, 3, 4}, 1)}, Mode::eval),
                      "pure_attention: a layer's bias is a fixed tensor; for a bias that learns, apply "
                      "pure_attention(q, k, v, mask, bias = ...) to tensors");
}

TEST_CASE("a param declaration is one named parameter with its initializer and attributes", "[dsl][semantics]") {
    Model m(R"(
param Q: f32[3, 3] = eye(3), constraint = simplex(axis = 0)
param frozen: f32[3] = 0.5, trainable = false
param w: f32[3, 2] = normal_init(stddev = 0.1)
size = 2 + 1
def f(x: f32[B, 3]) {
    return x @ Q * frozen @ w, size
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {random_tensor(Shape{2, 3}, 1)}, Mode::train);
    CHECK(integer_output(r, 1) == 3);
    CHECK(m.param_names() == std::vector<std::string>{"Q", "frozen", "w"});
    CHECK(max_abs_diff(m.params.get("Q").value, Tensor::eye(3)) == 0);
    REQUIRE(m.params.get("Q").constraints.size() == 1);
    CHECK(m.params.get("Q").constraints[0].name == "simplex(axis=0)");
    CHECK(!m.params.get("frozen").trainable);
    CHECK(m.params.get("frozen").value.data<float>()[2] == 0.5f);
    CHECK(m.params.get("w").value.shape() == Shape{3, 2});
}

TEST_CASE("constants are evaluated once; a tensor or layer in one serves every run", "[dsl][semantics]") {
    Model m(R"(
scale = eye(2) * 3
enc = dense(2)
width = 2 * 2 + 1
def f(x: f32[B, 2]) {
    return enc(x @ scale), width
}
)");
    Tensor x = random_tensor(Shape{3, 2}, 1);
    Tensor first;
    {
        Tape tape;
        RunResult r = m.in.run("f", {x}, Mode::train);
        first = output(r, 0).clone();
        CHECK(integer_output(r, 1) == 5);
    }
    Tape tape;
    RunResult r = m.in.run("f", {x}, Mode::train);
    CHECK(max_abs_diff(output(r, 0), first) == 0);
    CHECK(m.param_names() == std::vector<std::string>{"enc.w", "enc.b"});
}

TEST_CASE("a layer definition without parameters is a layer, and applying it needs no empty call", "[dsl][semantics]") {
    Model m(R"(
layer pair = serial(dense(4), dup)
def f(x: f32[B, 8]) {
    p, q = pair(x)
    r, s = pair()(x)
    return p, q
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {random_tensor(Shape{2, 8}, 1)}, Mode::train);
    CHECK(max_abs_diff(output(r, 0), output(r, 1)) == 0);
    CHECK(m.param_names() == std::vector<std::string>{"p.pair.dense.w", "p.pair.dense.b", "r.pair.dense.w", "r.pair.dense.b"});
}

TEST_CASE("layer_norm(x) applies a default layer at once, as layer_norm(eps = ...)(x) does", "[dsl][semantics]") {
    Model m(R"(
def f(x: f32[B, 8]) {
    a = layer_norm(x)
    b = layer_norm(x, eps = 0.5)
    c = layer_norm(eps = 0.5)(x)
    d = serial(dense(8), layer_norm)(x)
    return a, b, c
}
)");
    Tensor x = random_tensor(Shape{3, 8}, 1);
    Tape tape;
    RunResult r = m.in.run("f", {x}, Mode::train);
    Var vx = tape.input(x);
    CHECK(max_abs_diff(output(r, 0), layer_norm(vx, std::nullopt, std::nullopt, 1e-6).value()) < 1e-6);
    CHECK(max_abs_diff(output(r, 1), layer_norm(vx, std::nullopt, std::nullopt, 0.5).value()) < 1e-6);
    CHECK(max_abs_diff(output(r, 1), output(r, 2)) == 0);
    CHECK(m.param_names() == std::vector<std::string>{"a.layer_norm.gamma", "a.layer_norm.beta", "b.layer_norm.gamma",
                                                      "b.layer_norm.beta", "c.layer_norm.gamma", "c.layer_norm.beta",
                                                      "d.serial.dense.w", "d.serial.dense.b", "d.serial.layer_norm.gamma",
                                                      "d.serial.layer_norm.beta"});
}

TEST_CASE("models/discrete_code.wg: the one-hot codes keep the encoder's gradient, argmax does not", "[dsl][semantics][onehot]") {
    const std::string text = read_text(fs::path(WENGERT_MODELS_DIR) / "discrete_code.wg");
    Tensor x = random_tensor(Shape{8, 784}, 3);
    Tensor y = Tensor::from_doubles({0, 1, 2, 3, 4, 5, 6, 7}, Shape{8}, DType::i64);
    for (const char* function : {"coded", "straight", "sharpened", "by_argmax"}) {
        INFO(function);
        Model m(text);
        Tape tape;
        manual_seed(1);
        RunResult r = m.in.run(function, {x, y}, Mode::train);
        CHECK(output(r, 0).shape() == Shape{8, 10});
        tape.backward(r.objective);
        const Parameter& encoder = m.params.get("logits.h.dense.w");
        const Parameter& table = m.params.get("e.embedding.table");
        double encoder_grad = 0, table_grad = 0;
        if (encoder.grad.defined()) for (double g : encoder.grad.to_doubles()) encoder_grad += std::abs(g);
        for (double g : table.grad.to_doubles()) table_grad += std::abs(g);
        CHECK(table_grad > 0);
        if (std::string(function) == "by_argmax") CHECK(encoder_grad == 0);
        else CHECK(encoder_grad > 0);
    }
}

TEST_CASE("models/vae.wg: SPEC section 6's KL numbers, and the reparameterized sample's gradient", "[dsl][semantics][vae]") {
    // the model's KL term, per row, on SPEC's cases
    Model m(R"(
def kl(mu: f32[B, 2], logvar: f32[B, 2]) {
    return -0.5 * sum(1 + logvar - mu ^ 2 - exp(logvar), axis = 1)
}
def sample(mu: f32[B, 2], logvar: f32[B, 2]) {
    eps = normal(mu.shape)
    z   = mu + exp(0.5 * logvar) * eps
    return z, eps
}
)");
    Tensor mu = Tensor::from_doubles({0, 0, 1, 0, 0, 0, 1, 2}, Shape{4, 2}, DType::f32);
    Tensor logvar = Tensor::from_doubles({0, 0, 0, 0, std::log(2.0), 0, 0, 0}, Shape{4, 2}, DType::f32);
    {
        Tape tape;
        RunResult r = m.in.run("kl", {mu, logvar}, Mode::train);
        auto kl = output(r, 0).to_doubles();
        CHECK(kl[0] == Approx(0.0).margin(1e-7));
        CHECK(kl[1] == Approx(0.5));
        CHECK(kl[2] == Approx(0.153426).epsilon(1e-5));
        CHECK(kl[3] == Approx(2.5));
    }
    // z = mu + exp(logvar / 2) eps, eps ~ N(0, I) drawn from the run's seed
    Tape tape;
    manual_seed(4);
    RunResult r = m.in.run("sample", {mu, logvar}, Mode::train);
    REQUIRE(r.outputs.size() == 2);
    Var z = r.outputs[0].get<Var>();
    auto eps = output(r, 1).to_doubles();
    auto zs = z.value().to_doubles(), mus = mu.to_doubles(), lvs = logvar.to_doubles();
    for (std::size_t i = 0; i < zs.size(); ++i) CHECK(zs[i] == Approx(mus[i] + std::exp(0.5 * lvs[i]) * eps[i]).epsilon(1e-6));
    double spread = 0;
    for (double e : eps) spread += std::abs(e);
    CHECK(spread > 0);   // eps is drawn, not zero
}

TEST_CASE("operands are evaluated left to right", "[dsl][semantics]") {
    Model m(R"(
param mix: f32[3, 3] = eye(3)
def f(x: f32[B, 4]) {
    return dense(3)(x) @ mix + dense(3)(x)
}
)");
    Tape tape;
    m.in.run("f", {random_tensor(Shape{2, 4}, 1)}, Mode::train);
    CHECK(m.param_names() == std::vector<std::string>{"dense.w", "dense.b", "mix", "dense_1.w", "dense_1.b"});
}

// docs/dsl.md lists every builtin; a builtin added without a line there fails here.
TEST_CASE("docs/dsl.md names every builtin", "[dsl][semantics][docs]") {
    std::string docs = read_text(fs::path(WENGERT_DSL_TEST_DIR) / ".." / ".." / "docs" / "dsl.md");
    for (const std::string& name : builtin_names()) {
        INFO(name);
        CHECK(docs.find("`" + name) != std::string::npos);
    }
}

TEST_CASE("'//' is floor division and '%' its remainder, as in Python", "[dsl][semantics]") {
    Model m(R"(
def f(x: f32[B, 4]) {
    # -7 // 2 = -4, -7 % 2 = 1, 7 // -2 = -4, 7 % -2 = -1, (28 - 3) // 2 + 1 = 13
    sizes = ones((-7 // 2 + 5, -7 % 2 + 1, 7 // -2 + 5, 7 % -2 + 3, (28 - 3) // 2 + 1))
    return sizes, x * (7.5 // 2)
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {Tensor::ones(Shape{1, 4})}, Mode::eval);
    CHECK(r.outputs[0].get<Var>().shape() == Shape{1, 2, 1, 2, 13});
    CHECK(output(r, 1).to_doubles() == std::vector<double>{3, 3, 3, 3});
}

TEST_CASE("conv2d is a layer with dense's rules: one kernel per layer value, its penalty once, the activity per call", "[dsl][semantics][conv]") {
    Model m(R"(
def f(x: f32[B, 6, 6, 2]) {
    conv = conv2d(3, 3, kernel = l2(0.01), activity = l2(0.01))
    a = conv(x)
    b = conv(x)
    p = max_pool2d(2)(a)
    q = max_pool2d(a, 2, stride = 1)
    g = global_avg_pool2d(p)
    loss l = sum(b) + sum(q) + sum(g)
    return p, q, g
}
)");
    Tape tape;
    RunResult r = m.in.run("f", {random_tensor(Shape{2, 6, 6, 2}, 1)}, Mode::train);
    CHECK(m.param_names() == std::vector<std::string>{"conv.w", "conv.b"});
    CHECK(r.outputs[0].get<Var>().shape() == Shape{2, 2, 2, 3});
    CHECK(r.outputs[1].get<Var>().shape() == Shape{2, 3, 3, 3});
    CHECK(r.outputs[2].get<Var>().shape() == Shape{2, 3});
    std::vector<std::string> terms;
    for (const auto& [name, value] : r.losses) terms.push_back(name);
    CHECK(terms == std::vector<std::string>{"l", "conv.kernel_regularizer", "conv.activity_regularizer", "conv.activity_regularizer"});
}
