// `wengert run --grads`: the language's gradients against the engine's own, written out by
// hand, and against central finite differences in float64.
#include <catch2/catch.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>

#include "checkpoint.hpp"
#include "support.hpp"
#include "wengert/io.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

using namespace wengert;
using namespace wengert::dsl;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

const std::string small_model = (fs::path(WENGERT_DSL_TEST_DIR) / "models" / "small.wg").string();

const Tensor& named(const NamedTensors& tensors, const std::string& name) {
    auto it = std::find_if(tensors.begin(), tensors.end(), [&](const auto& entry) { return entry.first == name; });
    REQUIRE(it != tensors.end());
    return it->second;
}

// tests/dsl/models/small.wg, written with engine ops; its parameters are leaves of `store`.
Var small_model_objective(ParamStore& store, const Tensor& x_data, const Tensor& y_data) {
    Tape& tape = Tape::current();
    Var x = tape.input(x_data), y = tape.input(y_data);
    Var w1 = tape.param(store.get("h.dense.w")), b1 = tape.param(store.get("h.dense.b"));
    Var w2 = tape.param(store.get("logits.dense.w")), b2 = tape.param(store.get("logits.dense.b"));
    Var mix = tape.param(store.get("mix"));
    double batch = static_cast<double>(x_data.shape()[0]);
    Var h = tanh(matmul(x, w1) + b1);
    Var activity = 0.01 * sum(h * h) / batch;                        // l2(0.01), divided by the batch
    Var logits = matmul(matmul(h, w2) + b2, mix);
    Var ce = cross_entropy(logits, y);
    Var spread = 0.1 * mean(pow(softmax(logits), 2.0));
    return ce + spread + activity;
}

}  // namespace

TEST_CASE("wengert run --grads equals the engine's gradients and f64 finite differences", "[dsl][run][cli]") {
    TempDir tmp;
    write_dataset(tmp.path / "in.npz", 6, 4, 3, 11, DType::f64);
    const std::string grads_path = (tmp.path / "grads.npz").string(), params_path = (tmp.path / "params.npz").string();
    CliResult r = run_wengert({"run", small_model, "--inputs", (tmp.path / "in.npz").string(), "--dtype", "f64", "--grads",
                               grads_path, "--save-params", params_path});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    NamedTensors inputs = load_npz((tmp.path / "in.npz").string());
    NamedTensors params = load_npz(params_path), grads = load_npz(grads_path);
    std::vector<std::string> names;
    for (const auto& [name, t] : grads) names.push_back(name);
    CHECK(names == std::vector<std::string>{"h.dense.w", "h.dense.b", "logits.dense.w", "logits.dense.b", "mix"});
    for (const auto& [name, t] : params) CHECK(t.dtype() == DType::f64);

    // (a) the same model written with engine ops, from the same parameter values
    ParamStore store;
    for (const auto& [name, t] : params) store.add(name, t.clone());
    double engine_objective = 0;
    {
        Tape tape;
        Var objective = small_model_objective(store, named(inputs, "x"), named(inputs, "y"));
        engine_objective = objective.item();
        tape.backward(objective);
    }
    CHECK(r.out.find(fmt::format("objective = {:.9g}\n", engine_objective)) != std::string::npos);
    for (const auto& [name, g] : grads) {
        INFO(name);
        Tensor expected = store.get(name).grad.contiguous(), actual = g.contiguous();
        REQUIRE(expected.shape() == actual.shape());
        for (std::int64_t i = 0; i < actual.numel(); ++i) {
            CHECK(actual.data<double>()[i] == Approx(expected.data<double>()[i]).margin(1e-14).epsilon(1e-12));
        }
    }

    // (b) central differences of the model's objective, run by the interpreter in f64
    DiagnosticSink sink;
    ParamStore model_params;
    InterpreterOptions options = test_interpreter_options();
    options.dtype = DType::f64;
    Interpreter in(sink, model_params, options);
    REQUIRE(in.load_file(small_model));
    std::vector<Tensor> batch = {named(inputs, "x"), named(inputs, "y")};
    auto objective = [&] {
        Tape tape;
        NoGrad no_grad;
        return in.run("net", batch, Mode::train).objective.item();
    };
    objective();   // creates the parameters
    assign_params(model_params, params, params_path);
    CHECK(objective() == Approx(engine_objective).epsilon(1e-14));
    const double eps = 1e-6;
    int checked = 0;
    for (const auto& [name, g] : grads) {
        Parameter& p = model_params.get(name);
        std::int64_t n = p.value.numel();
        for (std::int64_t i : {std::int64_t{0}, n / 2, n - 1}) {
            INFO(name << " element " << i);
            double& value = p.value.data<double>()[i];
            const double original = value;
            value = original + eps;
            p.value.bump_version();
            double up = objective();
            value = original - eps;
            p.value.bump_version();
            double down = objective();
            value = original;
            p.value.bump_version();
            double numeric = (up - down) / (2 * eps);
            CHECK(g.contiguous().data<double>()[i] == Approx(numeric).margin(1e-8).epsilon(1e-6));
            ++checked;
        }
    }
    CHECK(checked == 15);
}

TEST_CASE("wengert run --params reads back what --save-params wrote, and --dump writes named values", "[dsl][run][cli]") {
    TempDir tmp;
    write_dataset(tmp.path / "in.npz", 5, 4, 3, 2);
    const std::string in_path = (tmp.path / "in.npz").string();
    CliResult first = run_wengert({"run", small_model, "--inputs", in_path, "--seed", "7", "--save-params",
                                   (tmp.path / "p.npz").string(), "--dump", "logits=" + (tmp.path / "logits.npy").string()});
    REQUIRE(first.exit_code == 0);
    // another seed draws other initial values, which --params replaces
    CliResult second = run_wengert({"run", small_model, "--inputs", in_path, "--seed", "8", "--params",
                                    (tmp.path / "p.npz").string(), "--dump", "h=" + (tmp.path / "h.npy").string()});
    REQUIRE(second.exit_code == 0);
    CHECK(second.out == first.out);
    CHECK(load_npy((tmp.path / "logits.npy").string()).shape() == Shape{5, 3});
    CHECK(load_npy((tmp.path / "h.npy").string()).shape() == Shape{5, 5});
    CliResult third = run_wengert({"run", small_model, "--inputs", in_path, "--seed", "8"});
    CHECK(third.out != first.out);

    // a parameter file that does not fit the model names every mismatch
    save_npz((tmp.path / "bad.npz").string(), {{"h.dense.w", Tensor::zeros(Shape{4, 6})}, {"extra", Tensor::zeros(Shape{2})}});
    CliResult bad = run_wengert({"run", small_model, "--inputs", in_path, "--params", (tmp.path / "bad.npz").string()});
    CHECK(bad.exit_code == 74);
    CHECK(bad.err == "wengert: error: " + (tmp.path / "bad.npz").string() +
                         ": parameters do not match the model:\n"
                         "  missing from the file: h.dense.b, logits.dense.w, logits.dense.b, mix\n"
                         "  not in the model: extra\n"
                         "  wrong shape: h.dense.w (model [4, 5], file [4, 6])\n");
    // an integer array is not converted into a parameter's value
    save_npz((tmp.path / "ints.npz").string(), {{"h.dense.w", Tensor::zeros(Shape{4, 5}, DType::i64)}});
    CliResult ints = run_wengert({"run", small_model, "--inputs", in_path, "--params", (tmp.path / "ints.npz").string()});
    CHECK(ints.exit_code == 74);
    CHECK(ints.err.find("  not floating: h.dense.w (the file holds i64; parameters are f32 or f64)\n") != std::string::npos);

    CliResult no_value = run_wengert({"run", small_model, "--inputs", in_path, "--dump", "logit=" + (tmp.path / "x.npy").string()});
    CHECK(no_value.exit_code == 64);
    CHECK(no_value.err == "wengert: --dump: no value named 'logit'; did you mean 'logits'?\n(run `wengert run --help` for usage)\n");
}

TEST_CASE("set_seed after loading gives the numbers of a fresh load with that seed, and refuses once parameters exist",
          "[dsl][run]") {
    // `wengert train` loads the file once and takes the train block's seed (Interpreter::set_seed)
    const std::string text = "c = normal((3,))\ndef net(x: f32[B, 4]) {\n    h = dense(5)(x) + c[0]\n    return h\n}\n";
    auto output = [&](std::uint64_t load_seed, std::optional<std::uint64_t> then) {
        DiagnosticSink sink;
        ParamStore params;
        InterpreterOptions options = test_interpreter_options();
        options.seed = load_seed;
        Interpreter in(sink, params, options);
        REQUIRE(in.load_source("m.wg", text));
        Tape tape;
        if (then) {
            // reading the train block can evaluate a constant before the seed is known
            in.eval_global(*in.main_module().decls[0].as<Constant>()->value);
            in.set_seed(*then);
        }
        manual_seed(then.value_or(load_seed));   // as the trainer does before its first step
        Tensor x = Tensor::from_doubles(std::vector<double>(8, 1.0), Shape{2, 4});
        Tensor out = in.run("net", {x}, Mode::eval).outputs.at(0).get<Var>().value();
        if (then) CHECK_THROWS_AS(in.set_seed(1), std::logic_error);
        return out.to_doubles();
    };
    CHECK(output(1, 7) == output(7, std::nullopt));
    CHECK(output(1, 7) != output(1, std::nullopt));
}
