#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <string>

#include "wengert/ops.hpp"
#include "wengert/params.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

static Tensor vec(std::vector<double> v) {
    auto n = static_cast<std::int64_t>(v.size());
    return Tensor::from(v, Shape{n});
}

TEST_CASE("the tape records in order and backward walks it in reverse", "[tape]") {
    Tape tape;
    Var x = tape.leaf(vec({1, 2, 3}));
    Var y = tape.leaf(vec({4, 5, 6}));
    Var z = x * y + x;                      // used twice: gradients accumulate
    Var loss = sum(z);
    CHECK(tape.size() == 5);
    tape.backward(loss);
    CHECK(x.grad().to_doubles() == std::vector<double>{5, 6, 7});
    CHECK(y.grad().to_doubles() == std::vector<double>{1, 2, 3});
}

TEST_CASE("inputs that need no gradient are skipped", "[tape]") {
    Tape tape;
    Var x = tape.input(vec({1, 2}));
    Var w = tape.leaf(vec({3, 4}));
    Var z = x * w;
    CHECK(z.requires_grad());
    Var c = x * x;
    CHECK_FALSE(c.requires_grad());
    tape.backward(sum(z));
    CHECK_FALSE(x.grad().defined());
    CHECK(w.grad().to_doubles() == std::vector<double>{1, 2});
}

TEST_CASE("no-grad scope records no backward", "[tape]") {
    Tape tape;
    Var w = tape.leaf(vec({3, 4}));
    NoGrad guard;
    Var z = w * w;
    CHECK_FALSE(z.requires_grad());
}

TEST_CASE("backward of a non-scalar needs an explicit output gradient", "[tape]") {
    Tape tape;
    Var w = tape.leaf(vec({3, 4}));
    Var z = w * w;
    CHECK_THROWS_WITH(tape.backward(z), "backward of a non-scalar value of shape [2] needs an explicit output gradient");
    tape.backward(z, vec({1, 10}));
    CHECK(w.grad().to_doubles() == std::vector<double>{6, 80});
}

TEST_CASE("modifying a saved tensor in place before backward is an error naming the op", "[tape]") {
    Tape tape;
    Tensor a = vec({1, 2});
    Var x = tape.leaf(a);
    Var y = tape.leaf(vec({3, 4}));
    Var z = sum(x * y);
    a.fill(5.0);
    CHECK_THROWS_WITH(tape.backward(z), Catch::StartsWith("mul: a tensor saved for backward was modified in place"));
}

TEST_CASE("parameters receive accumulated gradients across backward passes", "[tape]") {
    Parameter p;
    p.name = "w";
    p.value = vec({2, 3});
    for (int i = 0; i < 2; ++i) {
        Tape tape;
        Var w = tape.param(p);
        tape.backward(sum(w * w));
    }
    CHECK(p.grad.to_doubles() == std::vector<double>{8, 12});
}

TEST_CASE("a value from a destroyed tape's sibling is rejected", "[tape]") {
    Tape a;
    Var x = a.leaf(vec({1}));
    Tape b;
    Var y = b.leaf(vec({1}));
    CHECK_THROWS_WITH(add(x, y), "add: an input belongs to another tape");
}

TEST_CASE("mode guard sets train, eval, predict", "[tape]") {
    CHECK(current_mode() == Mode::train);
    {
        ModeGuard g(Mode::eval);
        CHECK(current_mode() == Mode::eval);
    }
    CHECK(current_mode() == Mode::train);
}

TEST_CASE("finite checks name the first op that makes a NaN or infinity from finite inputs (Note [Finite checks])", "[tape]") {
    int here = 0, there = 0;   // two record sites
    Tensor zero = Tensor::from(std::vector<double>{0.0, 1.0}, Shape{2});
    {   // forward: log(0) = -inf from a finite input; the sum after it is not the culprit
        Tape tape;
        FiniteChecks checks;
        Var x = tape.leaf(zero);
        RecordSite site(&here);
        try {
            Var y = log(x);
            RecordSite later(&there);
            sum(y);
            FAIL("no NonFiniteError");
        } catch (const NonFiniteError& e) {
            CHECK(std::string(e.op()) == "log");
            CHECK(e.site() == &here);
            CHECK_FALSE(e.in_backward());
            CHECK(std::string(e.what()) == "log made a non-finite value (-inf) from finite inputs");
        }
    }
    {   // without the guard nothing is checked
        Tape tape;
        CHECK_FALSE(all_finite(log(tape.leaf(zero)).value()));
    }
    {   // backward: sqrt(x - x) is finite, its gradient at 0 is not
        Tape tape;
        FiniteChecks checks;
        Var x = tape.leaf(zero);
        Var d = sub(x, x);
        Var r;
        {
            RecordSite site(&there);
            r = sqrt(d);
        }
        Var loss = sum(r);
        try {
            tape.backward(loss);
            FAIL("no NonFiniteError");
        } catch (const NonFiniteError& e) {
            CHECK(std::string(e.op()) == "sqrt");
            CHECK(e.site() == &there);
            CHECK(e.in_backward());
            CHECK(std::string(e.what()) ==
                  "the gradient of sqrt made a non-finite gradient (inf) for its input 1 from a finite output gradient");
        }
    }
    // NaN and infinities, in f32 and f64, anywhere in a strided view
    Tensor t = Tensor::zeros(Shape{3, 4}, DType::f32);
    CHECK(all_finite(t));
    t.data<float>()[9] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(all_finite(t));
    CHECK(all_finite(t.slice(1, 0, 1)));
    CHECK_FALSE(all_finite(t.transpose(0, 1)));
    Tensor u = Tensor::zeros(Shape{5}, DType::f64);
    u.data<double>()[4] = std::numeric_limits<double>::quiet_NaN();
    CHECK_FALSE(all_finite(u));
    u.data<double>()[4] = std::numeric_limits<double>::max();
    CHECK(all_finite(u));
    // a tensor scanned in chunks over threads: one bad element in any chunk, at 1 and 2 threads
    const int threads = max_threads();
    for (int n_threads : {1, 2}) {
        set_num_threads(n_threads);
        INFO(n_threads << " threads");
        Tensor big = Tensor::zeros(Shape{1000003}, DType::f32);
        CHECK(all_finite(big));
        for (std::int64_t at : {std::int64_t{0}, std::int64_t{32767}, std::int64_t{32768}, std::int64_t{500000}, std::int64_t{1000002}}) {
            INFO("inf at " << at);
            big.data<float>()[at] = -std::numeric_limits<float>::infinity();
            CHECK_FALSE(all_finite(big));
            big.data<float>()[at] = std::numeric_limits<float>::max();
            CHECK(all_finite(big));
        }
    }
    set_num_threads(threads);
}

// Data-parallel training reduces each parameter's gradient as soon as it is final.
TEST_CASE("backward calls on_ready once per parameter, with its final gradient", "[tape]") {
    ParamStore store;
    Generator gen(3);
    Parameter& w1 = store.create("w1", Shape{3, 4}, DType::f64, Init::normal(), gen);
    Parameter& w2 = store.create("w2", Shape{4, 2}, DType::f64, Init::normal(), gen);
    Parameter& unused = store.create("unused", Shape{2}, DType::f64, Init::normal(), gen);
    Tape tape;
    Var x = tape.input(Tensor::ones(Shape{5, 3}, DType::f64));
    Var a = tape.param(w1), b = tape.param(w2);
    tape.param(unused);
    Var h = tanh(matmul(x, a));
    Var y = sum(matmul(h, b)) + sum(matmul(x, a));   // w1 read twice, w2 after it
    std::vector<std::string> order;
    std::map<std::string, std::vector<double>> at_ready;
    tape.backward(y, Tensor::scalar(1.0, DType::f64), [&](Parameter& p) {
        order.push_back(p.name);
        at_ready[p.name] = p.grad.defined() ? p.grad.to_doubles() : std::vector<double>{};
    });
    // each once, last-recorded first; the gradient then is the gradient after backward
    CHECK(order == std::vector<std::string>{"unused", "w2", "w1"});
    CHECK(at_ready["w1"] == w1.grad.to_doubles());
    CHECK(at_ready["w2"] == w2.grad.to_doubles());
    CHECK(at_ready["unused"].empty());
    CHECK(!unused.grad.defined());
}
