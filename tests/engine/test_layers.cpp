#include <catch2/catch.hpp>

#include "wengert/layers.hpp"
#include "wengert/ops.hpp"

using namespace wengert;

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
