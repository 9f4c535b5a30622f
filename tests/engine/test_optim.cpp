// Optimizers against torch.optim (1.13, f64): three steps from w = [1, -2, 0.5] with the
// gradients below set by hand, compared with the parameter PyTorch ends with.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>

#include "wengert/ops.hpp"
#include "wengert/optim.hpp"
#include "wengert/regularizers.hpp"

using namespace wengert;

namespace {

Tensor vec(std::vector<double> v) {
    auto n = static_cast<std::int64_t>(v.size());
    return Tensor::from(v, Shape{n});
}

const std::vector<std::vector<double>> kGrads{{0.1, -0.2, 0.3}, {-0.5, 0.4, 0.0}, {1.0, 1.0, -1.0}};

// Runs steps [first, last) of kGrads on parameter "w" of `store`.
void run_steps(Optimizer& opt, ParamStore& store, std::size_t first, std::size_t last) {
    for (std::size_t i = first; i < last; ++i) {
        store.get("w").grad = vec(kGrads[i]);
        opt.step(store);
    }
}

std::vector<double> three_steps(Optimizer& opt) {
    ParamStore store;
    store.add("w", vec({1.0, -2.0, 0.5}));
    run_steps(opt, store, 0, 3);
    return store.get("w").value.to_doubles();
}

void require_close(const std::vector<double>& actual, const std::vector<double>& expected, double tol = 1e-12) {
    REQUIRE(actual.size() == expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        INFO("element " << i << ": got " << actual[i] << ", expected " << expected[i]);
        CHECK(std::abs(actual[i] - expected[i]) <= tol);
    }
}

}  // namespace

TEST_CASE("SGD matches torch.optim.SGD", "[optim]") {
    SECTION("plain") {
        SGD opt({.lr = 0.1});
        require_close(three_steps(opt), {0.9400000000000001, -2.12, 0.57});
    }
    SECTION("momentum 0.9 and weight decay 0.01") {
        SGD opt({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
        require_close(three_steps(opt), {0.962282789, -2.110625578, 0.5160113695});
    }
    SECTION("Nesterov") {
        SGD opt({.lr = 0.1, .momentum = 0.9, .nesterov = true});
        require_close(three_steps(opt), {0.9111100000000001, -2.2296199999999997, 0.5868300000000001});
    }
    SECTION("dampening 0.5: the first step's buffer is the undamped gradient") {
        SGD opt({.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
        require_close(three_steps(opt), {0.9704, -2.0338, 0.46869999999999995});
    }
}

TEST_CASE("Adam and AdamW match torch.optim", "[optim]") {
    SECTION("Adam, lr 0.1") {
        Adam opt({.lr = 0.1});
        require_close(three_steps(opt), {0.9239213447221958, -2.0064792343279416, 0.3793167483398872});
    }
    SECTION("Adam defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8") {
        Adam opt;
        require_close(three_steps(opt), {0.999239213447222, -2.000064792343279, 0.49879316748339886});
    }
    SECTION("Adam, L2 weight decay 0.1") {
        Adam opt({.lr = 0.1, .weight_decay = 0.1});
        require_close(three_steps(opt), {0.8897173653572941, -1.9218468229479686, 0.3651826369092443});
    }
    SECTION("AdamW, lr 0.1 (default decoupled weight decay 1e-2)") {
        AdamW opt({.lr = 0.1});
        require_close(three_steps(opt), {0.9210644082856536, -2.0006485219664003, 0.3780851536554781});
    }
    SECTION("AdamW defaults") {
        AdamW opt;
        require_close(three_steps(opt), {0.9992092277635775, -2.0000048092821414, 0.49877819433388});
    }
}

TEST_CASE("optimizer state is exported as named tensors and restores the run", "[optim]") {
    Adam opt({.lr = 0.1});
    ParamStore store;
    store.add("w", vec({1.0, -2.0, 0.5}));
    run_steps(opt, store, 0, 3);
    NamedTensors state = opt.state();
    std::vector<std::string> names;
    for (const auto& [name, t] : state) names.push_back(name);
    CHECK(names == std::vector<std::string>{"adam.step", "adam.m.w", "adam.step.w", "adam.v.w"});
    // torch's exp_avg, exp_avg_sq and step after the three steps
    for (const auto& [name, t] : state) {
        INFO(name);
        if (name == "adam.step" || name == "adam.step.w") CHECK(t.item() == 3);
        if (name == "adam.m.w") require_close(t.to_doubles(), {0.06309999999999999, 0.11979999999999998, -0.07569999999999999});
        if (name == "adam.v.w") {
            require_close(t.to_doubles(), {0.0012597300100000012, 0.0011997600400000012, 0.001089820090000001});
        }
    }

    // Two steps, a checkpoint, a fresh optimizer from it: the third step is the uninterrupted one.
    ParamStore resumed;
    resumed.add("w", vec({1.0, -2.0, 0.5}));
    Adam first({.lr = 0.1});
    run_steps(first, resumed, 0, 2);
    Adam second({.lr = 0.1});
    second.load_state(first.state());
    CHECK(second.steps() == 2);
    run_steps(second, resumed, 2, 3);
    CHECK(resumed.get("w").value.to_doubles() == store.get("w").value.to_doubles());

    SGD sgd({.lr = 0.1, .momentum = 0.9});
    CHECK_THROWS_WITH(sgd.load_state(state),
                      "sgd: unknown state entry 'adam.step'; expected sgd.step, sgd.momentum.<param>");
    Adam wrong({.lr = 0.1});
    wrong.load_state({{"adam.step", Tensor::scalar(1, DType::i64)}, {"adam.m.w", Tensor::zeros(Shape{2}, DType::f64)}});
    CHECK_THROWS_WITH(run_steps(wrong, resumed, 0, 1), "adam: state 'adam.m.w' is f64 [2] but the parameter is f64 [3]");
}

TEST_CASE("parameters without a gradient or not trainable are left alone", "[optim]") {
    ParamStore store;
    Parameter& used = store.add("used", vec({1.0}));
    Parameter& unused = store.add("unused", vec({1.0}));
    Parameter& frozen = store.add("frozen", vec({1.0}));
    frozen.trainable = false;
    used.grad = vec({1.0});
    frozen.grad = vec({1.0});
    SGD opt({.lr = 0.5, .weight_decay = 0.1});
    opt.step(store);
    CHECK(used.value.item() == Approx(1 - 0.5 * 1.1).epsilon(1e-15));
    CHECK(unused.value.item() == 1.0);
    CHECK(frozen.value.item() == 1.0);
    CHECK(opt.state().size() == 1);
}

TEST_CASE("constraints project parameters after each step", "[optim]") {
    ParamStore store;
    Parameter& w = store.add("w", Tensor::from(std::vector<double>{0.5, 0.2, 3.0, 4.0}, Shape{2, 2}));
    w.constraints.push_back(non_neg());
    w.constraints.push_back(max_norm(2.0));
    w.grad = Tensor::from(std::vector<double>{1.0, -1.0, 0.0, 0.0}, Shape{2, 2});
    SGD opt({.lr = 1.0});
    opt.step(store);
    // after the update [[-0.5, 1.2], [3, 4]]; non_neg: [[0, 1.2], [3, 4]];
    // max_norm over axis 0: column norms 3 and sqrt(17.44), both scaled to 2
    const double n1 = std::sqrt(1.2 * 1.2 + 16);
    require_close(w.value.to_doubles(), {0, 1.2 * 2 / (1e-7 + n1), 3 * 2 / (1e-7 + 3), 4 * 2 / (1e-7 + n1)});
}

TEST_CASE("learning-rate schedules", "[optim]") {
    CHECK(constant_lr()(0.1, 1000) == 0.1);
    Schedule step = step_lr(10, 0.5);
    CHECK(step(0.1, 9) == 0.1);
    CHECK(step(0.1, 10) == 0.05);
    CHECK(step(0.1, 25) == Approx(0.025).epsilon(1e-15));
    Schedule cosine = cosine_lr(100, 0.01);
    CHECK(cosine(0.1, 0) == Approx(0.1).epsilon(1e-15));
    CHECK(cosine(0.1, 50) == Approx(0.055).epsilon(1e-15));
    CHECK(cosine(0.1, 100) == Approx(0.01).epsilon(1e-15));
    CHECK(cosine(0.1, 150) == Approx(0.01).epsilon(1e-15));
    Schedule warm_cosine = linear_warmup(4, cosine_lr(10));
    std::vector<double> lrs;
    for (int s = 0; s < 6; ++s) lrs.push_back(warm_cosine(1.0, s));
    require_close(lrs, {0.25, 0.5, 0.75, 1.0, 1.0, (1 + std::cos(std::numbers::pi / 10)) / 2});
    CHECK(linear_warmup(2)(0.3, 7) == 0.3);

    // The optimizer reads its schedule at the number of steps taken.
    SGD opt({.lr = 1.0});
    opt.set_schedule(linear_warmup(2, step_lr(1, 0.5)));
    ParamStore store;
    Parameter& w = store.add("w", vec({0.0}));
    std::vector<double> seen;
    for (int s = 0; s < 4; ++s) {
        seen.push_back(opt.current_lr());
        w.grad = vec({-1.0});
        opt.step(store);
    }
    require_close(seen, {0.5, 1.0, 1.0, 0.5});
    CHECK(w.value.item() == 3.0);

    CHECK_THROWS_WITH(step_lr(0), "step_lr: step_size must be positive, got 0");
    CHECK_THROWS_WITH(cosine_lr(-5), "cosine_lr: total_steps must be positive, got -5");
}

TEST_CASE("clip_grad_norm scales all gradients by one factor, as PyTorch", "[optim]") {
    ParamStore store;
    Parameter& a = store.add("a", vec({0, 0}));
    Parameter& b = store.add("b", vec({0}));
    a.grad = vec({3, 4});
    b.grad = vec({12});
    CHECK(clip_grad_norm(store, 100.0) == 13.0);
    CHECK(a.grad.to_doubles() == std::vector<double>{3, 4});
    CHECK(clip_grad_norm(store, 6.5) == 13.0);
    const double coef = 6.5 / (13.0 + 1e-6);
    require_close(a.grad.to_doubles(), {3 * coef, 4 * coef});
    require_close(b.grad.to_doubles(), {12 * coef});
}

TEST_CASE("optimizer options are checked", "[optim]") {
    CHECK_THROWS_WITH(SGD({.lr = -1.0}), "sgd: lr must not be negative, got -1");
    CHECK_THROWS_WITH(SGD({.lr = 0.1, .nesterov = true}), "sgd: nesterov needs momentum > 0 and dampening 0, got momentum 0 and dampening 0");
    CHECK_THROWS_WITH(Adam({.beta1 = 1.0}), "adam: beta1 must be in [0, 1), got 1");
    CHECK_THROWS_WITH(AdamW({.weight_decay = -0.1}), "adamw: weight_decay must not be negative, got -0.1");
    ParamStore store;
    Parameter& w = store.add("w", vec({1, 2}));
    w.grad = vec({1});
    Adam opt;
    CHECK_THROWS_WITH(opt.step(store), "adam: parameter 'w' is f64 [2] but its gradient is f64 [1]");
}

TEST_CASE("piecewise, linear and exponential schedules", "[optim]") {
    Schedule p = piecewise_lr({3, 5}, {1.0, 0.5, 0.0});
    CHECK(p(0.2, 0) == 0.2);
    CHECK(p(0.2, 2) == 0.2);
    CHECK(p(0.2, 3) == 0.1);
    CHECK(p(0.2, 4) == 0.1);
    CHECK(p(0.2, 5) == 0.0);
    CHECK(p(0.2, 100) == 0.0);
    CHECK_THROWS_WITH(piecewise_lr({3}, {1.0}), Catch::Contains("1 boundaries need 2 factors, got 1"));
    CHECK_THROWS_WITH(piecewise_lr({3, 3}, {1.0, 0.5, 0.1}), Catch::Contains("strictly increasing"));

    Schedule l = linear_lr(1.0, 0.0, 4);   // PyTorch's LinearLR(start_factor=1, end_factor=0, total_iters=4)
    CHECK(l(0.1, 0) == 0.1);
    CHECK(l(0.1, 2) == Approx(0.05));
    CHECK(l(0.1, 4) == 0.0);
    CHECK(l(0.1, 9) == 0.0);

    Schedule e = exponential_lr(0.5, 2);
    CHECK(e(1.0, 0) == 1.0);
    CHECK(e(1.0, 1) == 1.0);
    CHECK(e(1.0, 2) == 0.5);
    CHECK(e(1.0, 5) == 0.25);
}

// Note [Parameter groups]: a group's settings apply to its parameters only, exactly as an
// optimizer made with those settings would.
TEST_CASE("parameter groups set lr, weight decay, momentum, betas and constraints per parameter", "[optim]") {
    auto store_of = [] {
        ParamStore store;
        store.add("a.w", vec({1.0, -2.0, 0.5}));
        store.add("b.w", vec({1.0, -2.0, 0.5}));
        return store;
    };
    auto run = [](Optimizer& opt, ParamStore& store) {
        for (const auto& g : kGrads) {
            store.get("a.w").grad = vec(g);
            store.get("b.w").grad = vec(g);
            opt.step(store);
        }
    };
    SECTION("SGD: lr, lr_scale, weight decay and momentum") {
        ParamStore store = store_of();
        SGD opt({.lr = 0.1});
        opt.add_group({.patterns = {"b.*"}, .lr_scale = 0.5, .weight_decay = 0.01, .momentum = 0.9});
        run(opt, store);
        require_close(store.get("a.w").value.to_doubles(), {0.9400000000000001, -2.12, 0.57});   // as plain SGD above
        SGD alone({.lr = 0.05, .momentum = 0.9, .weight_decay = 0.01});
        require_close(store.get("b.w").value.to_doubles(), three_steps(alone));
        CHECK(opt.current_lr(0) == 0.05);
        CHECK(opt.current_lr(-1) == 0.1);

        ParamStore absolute = store_of();
        SGD own({.lr = 0.1});
        own.add_group({.patterns = {"b.*"}, .lr = 0.0});
        run(own, absolute);
        CHECK(absolute.get("b.w").value.to_doubles() == std::vector<double>{1.0, -2.0, 0.5});
    }
    SECTION("Adam: betas and weight decay; the schedule scales every group from its own base") {
        ParamStore store = store_of();
        Adam opt({.lr = 0.1});
        opt.add_group({.patterns = {"b.w"}, .weight_decay = 0.01, .beta1 = 0.5, .beta2 = 0.9});
        opt.set_schedule(step_lr(2, 0.5));
        run(opt, store);
        Adam a({.lr = 0.1});
        a.set_schedule(step_lr(2, 0.5));
        Adam b({.lr = 0.1, .beta1 = 0.5, .beta2 = 0.9, .weight_decay = 0.01});
        b.set_schedule(step_lr(2, 0.5));
        require_close(store.get("a.w").value.to_doubles(), three_steps(a));
        require_close(store.get("b.w").value.to_doubles(), three_steps(b));
    }
    SECTION("a group's constraint is projected after its parameters' updates") {
        ParamStore store = store_of();
        SGD opt({.lr = 0.1});
        opt.add_group({.patterns = {"b.*"}, .constraints = {non_neg()}});
        run(opt, store);
        CHECK(store.get("a.w").value.to_doubles()[1] < 0);
        for (double x : store.get("b.w").value.to_doubles()) CHECK(x >= 0);
    }
    SECTION("a parameter takes the first group it matches") {
        SGD opt({.lr = 0.1});
        opt.add_group({.patterns = {"a.*"}, .lr = 0.2});
        opt.add_group({.patterns = {"*"}, .lr = 0.3});
        CHECK(opt.group_of("a.w") == 0);
        CHECK(opt.group_of("b.w") == 1);
        SGD none({.lr = 0.1});
        CHECK(none.group_of("a.w") == -1);
    }
    SECTION("values an optimizer does not take are errors") {
        Adam adam;
        CHECK_THROWS_WITH(adam.add_group({.patterns = {"a.*"}, .momentum = 0.9}), Catch::Contains("adam has no momentum setting"));
        CHECK_THROWS_WITH(adam.add_group({.patterns = {"a.*"}, .beta1 = 1.0}), Catch::Contains("beta1 must be in [0, 1), got 1"));
        SGD sgd;
        CHECK_THROWS_WITH(sgd.add_group({.patterns = {"a.*"}, .beta2 = 0.9}), Catch::Contains("sgd has no betas"));
        CHECK_THROWS_WITH(sgd.add_group({.patterns = {"a.*"}, .lr = -1.0}), Catch::Contains("lr must be a non-negative number"));
        CHECK_THROWS_WITH(sgd.add_group({.patterns = {"a.*"}, .lr = 0.1, .lr_scale = 2.0}), Catch::Contains("lr or lr_scale, not both"));
        CHECK_THROWS_WITH(sgd.add_group({}), Catch::Contains("at least one name pattern"));
    }
}
