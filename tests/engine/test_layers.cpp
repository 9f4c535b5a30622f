#include <catch2/catch.hpp>

#include <cmath>
#include <functional>

#include "ops/cases.hpp"
#include "wengert/layers.hpp"
#include "wengert/ops.hpp"

using namespace wengert;
using namespace wengert::test;

namespace {

// A parameterless layer of a given arity, for combinator arithmetic.
LayerPtr arity(int n_in, int n_out) {
    return fn_layer("f", n_in, n_out, [n_out](std::span<const Var> x, LayerContext&, const std::string&) {
        std::vector<Var> out;
        for (int i = 0; i < n_out; ++i) out.push_back(x.empty() ? Var() : x[0]);
        return out;
    });
}

Tensor scalar(double v) { return Tensor::scalar(v, DType::f64); }

}  // namespace

TEST_CASE("Trax combinator arity", "[layers]") {
    auto b = branch({arity(1, 1), arity(3, 1), arity(2, 2)});
    CHECK(b->n_in() == 3);
    CHECK(b->n_out() == 4);
    auto r = residual({arity(1, 1)});
    CHECK(r->n_in() == 1);
    CHECK(r->n_out() == 1);
    auto p = parallel({arity(1, 1), arity(2, 1), arity(1, 3)});
    CHECK(p->n_in() == 4);
    CHECK(p->n_out() == 5);
    auto s = serial({arity(2, 1), arity(2, 1)});      // needs one more input for the second
    CHECK(s->n_in() == 3);
    CHECK(s->n_out() == 1);
    CHECK(serial({})->n_in() == 1);
    CHECK(serial({})->n_out() == 1);
    auto sel = select({0, 0, 0});
    CHECK(sel->n_in() == 1);
    CHECK(sel->n_out() == 3);
    CHECK(select({2, 0})->n_in() == 3);
    CHECK(select({1}, 4)->n_in() == 4);
    CHECK_THROWS_WITH(select({3}, 2), "select: index 3 is out of range for n_in = 2");
}

TEST_CASE("data stack semantics: top is index 0", "[layers]") {
    ParamStore params;
    LayerContext ctx(params);
    Tape tape;
    Var a = tape.input(scalar(1)), b = tape.input(scalar(10)), c = tape.input(scalar(100));
    std::vector<Var> in{a, b, c};
    // SubtractTop on a stack (1, 10, 100) pops (1, 10) and pushes 10 - 1, leaving (9, 100).
    std::vector<Var> stack = in;
    apply_to_stack(*subtract_top(), stack, ctx);
    REQUIRE(stack.size() == 2);
    CHECK(stack[0].item() == 9);
    CHECK(stack[1].item() == 100);
    // Serial(Add, Add) sums the top three: its n_in is 3
    auto sum3 = serial({add_layer(), add_layer()});
    CHECK(sum3->n_in() == 3);
    CHECK(sum3->forward(in, ctx).at(0).item() == 111);
    // Swap then Add: (1, 10) -> (10, 1) -> 11
    auto sw = serial({swap(), add_layer()})->forward(std::vector<Var>{a, b}, ctx);
    CHECK(sw.at(0).item() == 11);
    // Branch(Add, SubtractTop) on (1, 10): both see copies of the top two: (11, 9)
    auto br = branch({add_layer(), subtract_top()})->forward(std::vector<Var>{a, b}, ctx);
    REQUIRE(br.size() == 2);
    CHECK(br[0].item() == 11);
    CHECK(br[1].item() == 9);
    // Residual(Dup, Add): x + (x + x)
    auto res = residual({dup(), add_layer()})->forward(std::vector<Var>{b}, ctx);
    CHECK(res.at(0).item() == 30);
    // Select([1, 0, 2]) permutes the top three
    auto s = select({1, 0, 2})->forward(in, ctx);
    CHECK(s[0].item() == 10);
    CHECK(s[1].item() == 1);
    // Drop removes the top
    std::vector<Var> two{a, b};
    apply_to_stack(*drop(), two, ctx);
    REQUIRE(two.size() == 1);
    CHECK(two[0].item() == 10);
    CHECK(serial({drop()})->n_out() == 0);
}

TEST_CASE("a layer given the wrong number of inputs says so", "[layers]") {
    ParamStore params;
    LayerContext ctx(params);
    Tape tape;
    Var a = tape.input(scalar(1));
    CHECK_THROWS_WITH(add_layer()->forward(std::vector<Var>{a}, ctx), "add: takes 2 inputs but was given 1");
}

TEST_CASE("parameter paths inside composites", "[layers]") {
    auto attn = serial({parallel({dense(4), dense(4), dense(4)}), add_layer(), dense(4)});
    attn->set_path("attn");
    auto kids = attn->children();
    CHECK(kids[0]->path() == "attn.parallel");
    CHECK(kids[0]->children()[1]->path() == "attn.parallel.dense_1");
    CHECK(kids[2]->path() == "attn.dense");
    auto r = residual({dense(3)});
    r->set_path("block");
    CHECK(r->path() == "block");
}

TEST_CASE("a named layer keeps its path inside combinators, whatever the order of its uses", "[layers][sharing]") {
    ParamStore params;
    LayerContext ctx(params, 1, DType::f64);
    Tape tape;
    Var x = tape.input(Tensor::from_doubles({0.5, -1.0, 2.0, 0.25, 1.5, -0.5}, Shape{2, 3}, DType::f64));
    auto shared = dense(3);
    shared->set_path("shared");
    Var direct = shared->forward(std::vector<Var>{x}, ctx).at(0);
    auto once = serial({shared});
    once->set_path("y1.serial");
    auto twice = serial({shared, shared});
    twice->set_path("y2.serial");
    auto body = residual({shared});
    body->set_path("y3.residual");
    CHECK(shared->path() == "shared");
    Var in_serial = once->forward(std::vector<Var>{x}, ctx).at(0);
    Var in_twice = twice->forward(std::vector<Var>{x}, ctx).at(0);
    Var in_residual = body->forward(std::vector<Var>{x}, ctx).at(0);
    CHECK(params.size() == 2);   // shared.w and shared.b, nothing else
    CHECK(params.find("shared.w") != nullptr);
    CHECK(in_serial.value().to_doubles() == direct.value().to_doubles());
    CHECK(in_twice.value().to_doubles() == shared->forward(std::vector<Var>{direct}, ctx).at(0).value().to_doubles());
    CHECK(in_residual.value().to_doubles() == (x + direct).value().to_doubles());
    // unnamed siblings are numbered among themselves; the named one does not count
    auto mixed = serial({shared, dense(2)});
    mixed->set_path("m");
    CHECK(mixed->children()[1]->path() == "m.dense");
}

TEST_CASE("a layer applied twice adds its weight penalties once, its activity penalty twice", "[layers][regularizers]") {
    ParamStore params;
    LayerContext ctx(params, 1, DType::f64);
    Tape tape;
    DenseOptions options;
    options.bias_init = Init::ones();
    options.kernel_regularizer = [](Var w) { return sum(w * w) * 0.01; };
    options.bias_regularizer = [](Var b) { return sum(abs(b)) * 0.5; };
    options.activity_regularizer = [](Var y) { return sum(y * y) * 0.1; };
    auto d = dense(2, options);
    d->set_path("d");
    Var x = tape.input(Tensor::from_doubles({1.0, -2.0, 0.5, 3.0}, Shape{2, 2}, DType::f64));
    Var y1 = d->forward(std::vector<Var>{x}, ctx).at(0);
    Var y2 = d->forward(std::vector<Var>{x * 2.0}, ctx).at(0);
    std::vector<std::string> names;
    for (const auto& [name, _] : ctx.added_losses) names.push_back(name);
    CHECK(names == std::vector<std::string>{"d.kernel_regularizer", "d.bias_regularizer", "d.activity_regularizer",
                                            "d.activity_regularizer"});
    Var w = tape.param(params.get("d.w"));
    CHECK(ctx.added_losses[0].second.item() == Approx((sum(w * w) * 0.01).item()).epsilon(1e-12));
    CHECK(ctx.added_losses[1].second.item() == Approx(1.0).epsilon(1e-12));   // 0.5 * |1| * 2 units
    CHECK(ctx.added_losses[2].second.item() == Approx((sum(y1 * y1) * 0.1 / 2.0).item()).epsilon(1e-12));
    CHECK(ctx.added_losses[3].second.item() == Approx((sum(y2 * y2) * 0.1 / 2.0).item()).epsilon(1e-12));
    // the next forward pass, on a cleared list, adds them again
    ctx.added_losses.clear();
    d->forward(std::vector<Var>{x}, ctx);
    CHECK(ctx.added_losses.size() == 3);
}

TEST_CASE("an embedding reads ids, or mixes its rows by a distribution with the gradient kept", "[layers]") {
    ParamStore params;
    LayerContext ctx(params, 1, DType::f64);
    auto emb = embedding_layer(4, 3);
    emb->set_path("emb");
    Tape tape;
    Var ids = tape.input(Tensor::from_doubles({2, 0}, Shape{2}, DType::i64));
    Var by_id = emb->forward(std::vector<Var>{ids}, ctx).at(0);
    // one-hot rows read the same rows as the ids; the gradient reaches the distribution
    Var s = tape.leaf(Tensor::from_doubles({0, 0, 1, 0, 1, 0, 0, 0}, Shape{2, 4}, DType::f64));
    Var mixed = emb->forward(std::vector<Var>{s}, ctx).at(0);
    CHECK(params.size() == 1);
    auto a = by_id.value().to_doubles(), b = mixed.value().to_doubles();
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
    tape.backward(sum(mixed));
    // d sum(s @ table) / d s[i, v] = sum of table row v
    auto table = params.get("emb.table").value.to_doubles();
    auto g = s.grad().to_doubles();
    for (std::size_t v = 0; v < 4; ++v) CHECK(g[v] == Approx(table[3 * v] + table[3 * v + 1] + table[3 * v + 2]));
    Var wrong = tape.input(Tensor::zeros(Shape{2, 5}, DType::f64));
    CHECK_THROWS_WITH(emb->forward(std::vector<Var>{wrong}, ctx),
                      "embedding: a distribution over the vocabulary needs 4 entries on its last axis, got f64 [2, 5]");
}

// ---------------------------------------------------------------- attention and positions

namespace {

// x (rows, n_in) @ w (n_in, n_out) + b, row-major, in plain loops
std::vector<double> affine(const std::vector<double>& x, const std::vector<double>& w, const std::vector<double>& b,
                           std::int64_t rows, std::int64_t n_in, std::int64_t n_out) {
    std::vector<double> y(static_cast<std::size_t>(rows * n_out));
    for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t o = 0; o < n_out; ++o) {
            double acc = b[static_cast<std::size_t>(o)];
            for (std::int64_t i = 0; i < n_in; ++i) acc += x[static_cast<std::size_t>(r * n_in + i)] * w[static_cast<std::size_t>(i * n_out + o)];
            y[static_cast<std::size_t>(r * n_out + o)] = acc;
        }
    }
    return y;
}

// The attention SPEC.md sections 1 and 3 describe, in plain loops: for each batch b, head h and
// query i, weights_j = softmax_j(q_i . k_j / sqrt(d_head) + logit_bias(h, i, j)), -1e9 where
// keep(b, j) is false; then, when weight_penalty is given, max(weights_j + weight_penalty(i,
// j), 0) renormalised. Gives y (B, L, d) and the weights (B, h, L, L).
struct ReferenceAttention {
    std::vector<double> y, weights;
};
ReferenceAttention reference_attention(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                                       std::int64_t batch, std::int64_t len, std::int64_t d, std::int64_t n_heads,
                                       const std::function<double(std::int64_t, std::int64_t, std::int64_t)>& logit_bias,
                                       const std::function<double(std::int64_t, std::int64_t)>& weight_penalty,
                                       const std::function<bool(std::int64_t, std::int64_t)>& keep) {
    const std::int64_t d_head = d / n_heads;
    auto at = [&](std::int64_t b, std::int64_t l, std::int64_t f) { return static_cast<std::size_t>((b * len + l) * d + f); };
    ReferenceAttention out{std::vector<double>(static_cast<std::size_t>(batch * len * d)),
                           std::vector<double>(static_cast<std::size_t>(batch * n_heads * len * len))};
    for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t h = 0; h < n_heads; ++h) {
            for (std::int64_t i = 0; i < len; ++i) {
                std::vector<double> w(static_cast<std::size_t>(len));
                double largest = -INFINITY;
                for (std::int64_t j = 0; j < len; ++j) {
                    double s = 0;
                    for (std::int64_t e = h * d_head; e < (h + 1) * d_head; ++e) s += q[at(b, i, e)] * k[at(b, j, e)];
                    s = s / std::sqrt(static_cast<double>(d_head)) + logit_bias(h, i, j);
                    w[static_cast<std::size_t>(j)] = keep(b, j) ? s : -1e9;
                    largest = std::max(largest, w[static_cast<std::size_t>(j)]);
                }
                double total = 0;
                for (double& x : w) total += (x = std::exp(x - largest));
                for (double& x : w) x /= total;
                if (weight_penalty) {
                    total = 0;
                    for (std::int64_t j = 0; j < len; ++j) {
                        auto& x = w[static_cast<std::size_t>(j)];
                        total += (x = std::max(x + weight_penalty(i, j), 0.0));
                    }
                    for (double& x : w) x /= total;
                }
                for (std::int64_t j = 0; j < len; ++j) {
                    out.weights[static_cast<std::size_t>(((b * n_heads + h) * len + i) * len + j)] = w[static_cast<std::size_t>(j)];
                    for (std::int64_t e = h * d_head; e < (h + 1) * d_head; ++e) out.y[at(b, i, e)] += w[static_cast<std::size_t>(j)] * v[at(b, j, e)];
                }
            }
        }
    }
    return out;
}

void require_near(const std::vector<double>& actual, const std::vector<double>& expected, double tol) {
    REQUIRE(actual.size() == expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        INFO("element " << i);
        CHECK(actual[i] == Approx(expected[i]).margin(tol).epsilon(0));
    }
}

}  // namespace

TEST_CASE("the standard library's attention, built from C++ after a positional embedding, equals a reference computation",
          "[layers][attention]") {
    // dsl/std/prelude.wg: attention(d, n_heads, penalty) = serial(select([0, 0, 0]),
    // serial(parallel(dense(d), dense(d), dense(d)), pure_attention(n_heads, penalty = penalty), dense(d)))
    const std::int64_t batch = 2, len = 3, d = 4, n_heads = 2, max_len = 5;
    const double scale = 0.5, width = 1.0;
    struct Setting {
        const char* name;
        AttentionPenalty penalty;
        std::function<double(std::int64_t, std::int64_t, std::int64_t)> logit_bias;
        std::function<double(std::int64_t, std::int64_t)> weight_penalty;
    };
    auto distance = [=](std::int64_t i, std::int64_t j) { return std::max(0.0, std::abs(static_cast<double>(i - j)) - width); };
    auto none = [](std::int64_t, std::int64_t, std::int64_t) { return 0.0; };
    const double slopes[] = {1.0 / 16, 1.0 / 256};   // ALiBi's for 2 heads: 2^(-8k/2)
    const std::vector<Setting> settings = {
        {"a distance penalty on the logits", DistancePenalty{.scale = scale, .width = width},
         [=](std::int64_t, std::int64_t i, std::int64_t j) { return -scale * distance(i, j); }, nullptr},
        {"a distance penalty on the weights", DistancePenalty{.scale = scale, .width = width, .on = PenaltyOn::weights}, none,
         [=](std::int64_t i, std::int64_t j) { return -scale * distance(i, j); }},
        {"causal ALiBi", AlibiPenalty{.causal = true},
         [=](std::int64_t h, std::int64_t i, std::int64_t j) {
             return j > i ? -1e9 : -slopes[h] * static_cast<double>(i - j);
         },
         nullptr},
    };
    for (const Setting& s : settings) {
        SECTION(s.name) {
            ParamStore store;
            LayerContext ctx(store, 3, DType::f64);
            LayerPtr positions = positional_embedding_layer(max_len, d), attend = pure_attention_layer(n_heads, 0.0, s.penalty);
            LayerPtr wq = dense(d), wk = dense(d), wv = dense(d), wo = dense(d);
            positions->set_path("positions");
            attend->set_path("h1");
            wq->set_path("q");
            wk->set_path("k");
            wv->set_path("v");
            wo->set_path("out");
            LayerPtr model = serial({positions, select({0, 0, 0}), parallel({wq, wk, wv}), attend, wo});
            ctx.wanted = {"h1.weights"};

            Tape tape;
            const std::vector<double> x = random_tensor(Shape{batch, len, d}, 5).to_doubles();
            // batch 1 drops its last key
            const std::vector<std::uint8_t> keep = {1, 1, 1, 1, 1, 0};
            Var xs = tape.input(Tensor::from_doubles(x, Shape{batch, len, d}, DType::f64));
            Var mask = tape.input(Tensor::from(keep, Shape{batch, 1, 1, len}));
            std::vector<Var> out = model->forward(std::vector<Var>{xs, mask}, ctx);
            REQUIRE(out.size() == 2);
            CHECK(out[1].id() == mask.id());

            auto param = [&](const std::string& name) { return store.get(name).value.to_doubles(); };
            std::vector<double> placed = x;
            const std::vector<double> table = param("positions.table");
            for (std::int64_t b = 0; b < batch; ++b) {
                for (std::int64_t e = 0; e < len * d; ++e) placed[static_cast<std::size_t>(b * len * d + e)] += table[static_cast<std::size_t>(e)];
            }
            auto project = [&](const std::string& name) { return affine(placed, param(name + ".w"), param(name + ".b"), batch * len, d, d); };
            ReferenceAttention ref = reference_attention(project("q"), project("k"), project("v"), batch, len, d, n_heads, s.logit_bias,
                                                         s.weight_penalty, [&](std::int64_t b, std::int64_t j) { return keep[static_cast<std::size_t>(b * len + j)] != 0; });
            require_near(out[0].value().to_doubles(), affine(ref.y, param("out.w"), param("out.b"), batch * len, d, d), 1e-12);
            // the weights offered by name (Note [Attention weights by name])
            REQUIRE(ctx.inspected.size() == 1);
            CHECK(ctx.inspected[0].first == "h1.weights");
            CHECK(ctx.inspected[0].second.shape() == Shape{batch, n_heads, len, len});
            require_near(ctx.inspected[0].second.value().to_doubles(), ref.weights, 1e-12);
            CHECK(ctx.offered == std::vector<std::string>{"h1.weights", "h1.attention.weights"});
        }
    }
}

TEST_CASE("a sinusoidal embedding adds Vaswani's positions; both embeddings check the length", "[layers][attention]") {
    ParamStore store;
    LayerContext ctx(store, 1, DType::f64);
    Tape tape;
    Var x = tape.input(Tensor::zeros(Shape{1, 3, 4}, DType::f64));
    Var y = sinusoidal_embedding_layer(5, 4)->forward(std::vector<Var>{x}, ctx).at(0);
    std::vector<double> expected;
    for (int p = 0; p < 3; ++p) {
        for (int i = 0; i < 4; ++i) {
            const double angle = p / std::pow(10000.0, (i - i % 2) / 4.0);
            expected.push_back(i % 2 == 0 ? std::sin(angle) : std::cos(angle));
        }
    }
    require_near(y.value().to_doubles(), expected, 1e-15);
    CHECK(store.size() == 0);
    Var long_x = tape.input(Tensor::zeros(Shape{1, 6, 4}, DType::f64));
    CHECK_THROWS_WITH(sinusoidal_embedding_layer(5, 4)->forward(std::vector<Var>{long_x}, ctx),
                      "sinusoidal_embedding: length 6 exceeds max_len 5");
    CHECK_THROWS_WITH(positional_embedding_layer(5, 3)->forward(std::vector<Var>{x}, ctx),
                      "positional_embedding: expects (B, L, 3), got [1, 3, 4]");
}

TEST_CASE("pure_attention_layer refuses settings out of range", "[layers][attention]") {
    CHECK_THROWS_WITH(pure_attention_layer(0), "pure_attention: n_heads must be positive, got 0");
    CHECK_THROWS_WITH(pure_attention_layer(1, 1.0), "pure_attention: dropout must be in [0, 1), got 1");
}
