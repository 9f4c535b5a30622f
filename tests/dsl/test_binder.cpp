// One signature and one binder for every callable (Note [Signatures] in value.hpp): a call's
// mistake reads the same found before anything runs and found when the call runs, for an op,
// a builtin, a record, a def and a layer definition; and no builtin replaces another unseen
// (Note [Layers over ops] in builtins.cpp).
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "builtins.hpp"
#include "check.hpp"
#include "support.hpp"
#include "wengert/dsl/interpreter.hpp"

using namespace wengert;
using namespace wengert::dsl;
using namespace wengert::dsl::testing;

namespace {

const char* kDefs = R"(
def block(x, n, scale = 1) { return x * scale }
layer pair(n) = serial(dense(n), dense(n))
)";

// The message the static check gives for `call`, written inside a def.
std::string static_message(const std::string& call) {
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in(sink, params, test_interpreter_options());
    in.load_source("m.wg", std::string(kDefs) + "def m(x: f32[B, 4]) {\n    y = " + call + "\n    return x\n}\n");
    REQUIRE(sink.error_count() == 1);
    return sink.diagnostics()[0].message;
}

// The message the run-time binder gives when `name` is called with `positional` arguments and
// the keywords `keywords`, all bound to the integer 1.
std::string runtime_message(const std::string& name, std::size_t positional, const std::vector<std::string>& keywords) {
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in(sink, params, test_interpreter_options());
    REQUIRE(in.load_source("m.wg", std::string(kDefs) + "probe = " + name + "\n"));
    const Expr& callee = *in.main_module().decls.back().as<Constant>()->value;
    Value f = in.eval_global(callee);
    CallArgs args;
    const Value one(std::int64_t{1});
    for (std::size_t i = 0; i < positional; ++i) {
        args.positional.push_back(one);
        args.positional_locs.push_back(Location{});
    }
    for (const auto& k : keywords) {
        args.keywords.emplace_back(k, one);
        args.keyword_locs.push_back(Location{});
    }
    try {
        in.call(f, args);
    } catch (const EvalError& e) {
        return e.what();
    }
    FAIL("the call did not fail");
    return "";
}

}  // namespace

TEST_CASE("a call's mistake reads the same before anything runs and when the call runs") {
    struct Case {
        const char* call;
        const char* name;
        std::size_t positional;
        std::vector<std::string> keywords;
        const char* message;
    };
    const std::vector<Case> cases = {
        {"softmax(x, axes = 1)", "softmax", 1, {"axes"}, "softmax has no parameter 'axes': softmax(x, axis=-1)"},
        {"softmax(x, 1, 2)", "softmax", 3, {}, "softmax takes at most 2 arguments, got 3: softmax(x, axis=-1)"},
        {"dense(4, activaton = relu)", "dense", 1, {"activaton"},
         "dense has no parameter 'activaton': dense(n_units, activation=none, use_bias=true, trainable=true, "
         "kernel_init=\"glorot_uniform\", bias_init=\"zeros\", kernel=none, bias=none, activity=none)"},
        {"adam(lrr = 1)", "adam", 0, {"lrr"},
         "adam has no parameter 'lrr': adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08, weight_decay=0)"},
        {"constant_lr(1)", "constant_lr", 1, {}, "constant_lr takes no arguments, got 1"},
        {"block(x, 4, size = 2)", "block", 2, {"size"}, "block has no parameter 'size': block(x, n, scale=1)"},
        {"block(x, 1, 2, 3)", "block", 4, {}, "block takes at most 3 arguments, got 4: block(x, n, scale=1)"},
        {"pair(4, m = 1)", "pair", 1, {"m"}, "pair has no parameter 'm': pair(n)"},
        {"serial(dense(4), n = 1)", "serial", 0, {"n"}, "serial has no parameter 'n': it takes no keywords"},
    };
    for (const auto& c : cases) {
        INFO(c.call);
        CHECK(static_message(c.call) == c.message);
        CHECK(runtime_message(c.name, c.positional, c.keywords) == c.message);
    }
}

TEST_CASE("wengert check reports a call's mistake once and goes on to the model's other errors") {
    const std::string text = "def m(x: f32[B, 4]) {\n    a = softmax(x, axes = 1)\n    b = x @ ones((3, 2))\n    return x\n}\n";
    SECTION("checking: the load goes on, and the run finds the other error") {
        DiagnosticSink sink;
        ParamStore params;
        InterpreterOptions o = test_interpreter_options();
        o.check = true;
        Interpreter in(sink, params, o);
        REQUIRE(in.load_source("m.wg", text));
        check_model(in, std::nullopt);
        REQUIRE(sink.error_count() == 2);
        CHECK(sink.diagnostics()[0].message == "softmax has no parameter 'axes': softmax(x, axis=-1)");
        CHECK(sink.diagnostics()[0].loc.line == 2);
        CHECK(sink.diagnostics()[1].loc.line == 3);
    }
    SECTION("running: nothing runs") {
        DiagnosticSink sink;
        ParamStore params;
        Interpreter in(sink, params, test_interpreter_options());
        CHECK_FALSE(in.load_source("m.wg", text));
        CHECK(sink.error_count() == 1);
    }
}

TEST_CASE("no builtin replaces another: a name defined twice is refused") {
    std::map<std::string, Value> table;
    REQUIRE_NOTHROW(install_builtins(table));
    CHECK_THROWS_AS(define_builtin(table, "softmax"), std::logic_error);
    // the ops a layer constructor's name hides stay reachable under one other name
    CHECK(table.count("embedding_lookup"));
    CHECK(table.count("conv2d_op"));
    CHECK(table.count("layer_norm_op"));
    CHECK(table.at("linear").get<std::shared_ptr<Function>>()->signature.text.starts_with("linear(x, w"));
    CHECK(table.count("linear_lr"));
}

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The text between docs/dsl.md's op-table markers (dsl/tools/op_table.cpp).
std::string documented_op_table() {
    const std::string docs = read_text(std::string(WENGERT_DOCS_DIR) + "/dsl.md");
    const std::string begin = "<!-- op table: generated from the ops' signatures; regenerate with `ninja -C build op-table` -->\n";
    const std::string end = "<!-- end of the op table -->\n";
    const auto from = docs.find(begin), to = docs.find(end);
    REQUIRE(from != std::string::npos);
    REQUIRE(to != std::string::npos);
    return docs.substr(from + begin.size(), to - from - begin.size());
}

}  // namespace

TEST_CASE("docs/dsl.md's op table is the builtins' signatures: regenerate it with `ninja -C build op-table`", "[docs]") {
    const std::string generated = op_table();
    CHECK(generated.rfind("| op | does |\n| --- | --- |\n| `add(a, b)` | a + b, broadcasting |\n", 0) == 0);
    CHECK(generated.find("| `eq(a, b)` | a == b as a u8 mask (no gradient) |\n") != std::string::npos);
    CHECK(generated.find("| `abs(x)` | \\|x\\|; gradient 0 at 0 |\n") != std::string::npos);
    // under the language's names (Note [Layers over ops]): the layers keep theirs
    CHECK(generated.find("| `conv2d_op(x, w, ") != std::string::npos);
    CHECK(generated.find("| `embedding_lookup(") != std::string::npos);
    CHECK(generated.find("| `conv2d(") == std::string::npos);
    CHECK(generated.find("| `pure_attention(") == std::string::npos);
    CHECK(documented_op_table() == generated);
}

TEST_CASE("a signature holds each parameter's kind and the callable's doc", "[dsl]") {
    std::map<std::string, Value> table;
    install_builtins(table);
    auto sig = [&](const std::string& name) { return table.at(name).get<std::shared_ptr<Function>>()->signature; };
    const Signature softmax = sig("softmax");
    REQUIRE(softmax.params.size() == 2);
    CHECK(softmax.params[0].kind == "tensor");
    CHECK_FALSE(softmax.params[0].has_default());
    CHECK(softmax.params[1].kind == "integer");
    CHECK(softmax.params[1].default_text == "-1");
    CHECK(softmax.reference() == "softmax(x: tensor, axis: integer = -1)");
    CHECK(softmax.text == "softmax(x, axis=-1)");
    CHECK_FALSE(softmax.doc.empty());
    // an op under a layer's name is shown, and reports its mistakes, under its own
    CHECK(sig("embedding_lookup").text.rfind("embedding_lookup(", 0) == 0);
    CHECK(sig("eq").doc.ends_with("(no gradient)"));
    CHECK(sig("dense").params[0].kind == "integer");
    CHECK(sig("serial").reference() == "serial(layers...)");
    // a def's annotation is its kind, the comment above it its doc
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in(sink, params, test_interpreter_options());
    REQUIRE(in.load_source("m.wg", "# Scales x.\ndef scaled(x: f32[B, 4], s = 2.5) { return x * s }\n"));
    auto found = in.find_callable("scaled");
    REQUIRE(found);
    CHECK(found->signature->reference() == "scaled(x: f32[B, 4], s = 2.5)");
    CHECK(found->signature->doc == "Scales x.");
    CHECK(found->defined_at.line == 2);
    CHECK_FALSE(in.find_callable("no_such_name"));
    CHECK(in.find_callable("attention_qkv"));
}
