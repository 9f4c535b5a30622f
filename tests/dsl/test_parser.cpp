// The parser: precedence, associativity, every expression, statement and declaration form,
// locations, and the errors that need more than a headline to check.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "wengert/dsl/ast_printer.hpp"
#include "wengert/dsl/parser.hpp"

using namespace wengert::dsl;

namespace {

struct Parsed {
    std::unique_ptr<SourceFile> file;
    DiagnosticSink sink;
    Module module;
};

std::unique_ptr<Parsed> parse_text(const std::string& text) {
    auto parsed = std::make_unique<Parsed>();
    parsed->file = std::make_unique<SourceFile>("t.wg", text);
    parsed->module = parse(*parsed->file, parsed->sink);
    return parsed;
}

// The module as S-expressions; the text must parse without errors.
std::string sexpr(const std::string& text) {
    auto parsed = parse_text(text);
    INFO(parsed->sink.format_all());
    REQUIRE_FALSE(parsed->sink.has_errors());
    return to_sexpr(parsed->module);
}

// The expression as an S-expression.
std::string expr(const std::string& text) {
    std::string module = sexpr("e = " + text);
    REQUIRE(module.rfind("(const e ", 0) == 0);
    return module.substr(9, module.size() - 11);
}

std::vector<std::string> errors(const std::string& text) {
    auto parsed = parse_text(text);
    std::vector<std::string> out;
    for (const Diagnostic& d : parsed->sink.diagnostics()) out.push_back(format_headline(d));
    return out;
}

using V = std::vector<std::string>;

}  // namespace

TEST_CASE("binary operators bind by precedence", "[dsl][parser]") {
    CHECK(expr("1 + 2 * 3") == "(+ 1 (* 2 3))");
    CHECK(expr("(1 + 2) * 3") == "(* (+ 1 2) 3)");
    CHECK(expr("x @ w + b") == "(+ (@ x w) b)");
    CHECK(expr("a * b % c / d @ e") == "(@ (/ (% (* a b) c) d) e)");
    CHECK(expr("a + b < c * d") == "(< (+ a b) (* c d))");
    CHECK(expr("a == b and c != d") == "(and (== a b) (!= c d))");
    CHECK(expr("a or b and c") == "(or a (and b c))");
    CHECK(expr("a and b or c and d") == "(or (and a b) (and c d))");
    CHECK(expr("a <= b or a >= b or a > b") == "(or (or (<= a b) (>= a b)) (> a b))");
    CHECK(expr("f(x) ^ 2") == "(^ (call f x) 2)");
    CHECK(expr("x ^ y.z") == "(^ x (. y z))");
}

TEST_CASE("binary operators associate left, except '^'", "[dsl][parser]") {
    CHECK(expr("a - b - c") == "(- (- a b) c)");
    CHECK(expr("a / b / c") == "(/ (/ a b) c)");
    CHECK(expr("a @ b @ c") == "(@ (@ a b) c)");
    CHECK(expr("a or b or c") == "(or (or a b) c)");
    CHECK(expr("2 ^ 3 ^ 2") == "(^ 2 (^ 3 2))");
}

TEST_CASE("unary minus binds looser than '^' and tighter than '*'", "[dsl][parser]") {
    CHECK(expr("-x ^ 2") == "(- (^ x 2))");
    CHECK(expr("-x * y") == "(* (- x) y)");
    CHECK(expr("--x") == "(- (- x))");
    CHECK(expr("2 ^ -1") == "(^ 2 (- 1))");
    CHECK(expr("2 ^ -x ^ 2") == "(^ 2 (- (^ x 2)))");
    CHECK(expr("1 - -1") == "(- 1 (- 1))");
    CHECK(expr("-a.b(c)") == "(- (call (. a b) c))");
    CHECK(expr("-0.5 * sum(x)") == "(* (- 0.5) (call sum x))");
}

TEST_CASE("'not' binds looser than comparisons and tighter than 'and'", "[dsl][parser]") {
    CHECK(expr("not a == b") == "(not (== a b))");
    CHECK(expr("not a and b") == "(and (not a) b)");
    CHECK(expr("a and not b or c") == "(or (and a (not b)) c)");
    CHECK(expr("not not a") == "(not (not a))");
    CHECK(expr("a == (not b)") == "(== a (not b))");
    CHECK(errors("e = a == not b\nf = -not b\ng = a + not b") ==
          V{"t.wg:1:10: error: 'not' inside an operand needs parentheses: '(not ...)'",
            "t.wg:2:6: error: 'not' inside an operand needs parentheses: '(not ...)'",
            "t.wg:3:9: error: 'not' inside an operand needs parentheses: '(not ...)'"});
}

TEST_CASE("calls, calls of calls and keyword arguments", "[dsl][parser]") {
    CHECK(expr("f()") == "(call f)");
    CHECK(expr("dense(256)(x)") == "(call (call dense 256) x)");
    CHECK(expr("f(1)(2)(3)") == "(call (call (call f 1) 2) 3)");
    CHECK(expr("f(a, b,)") == "(call f a b)");
    CHECK(expr("pure_attention(n_heads = n_heads, dropout = 0.1)") ==
          "(call pure_attention :n_heads n_heads :dropout 0.1)");
    CHECK(expr("sum(x, axis = 0, keep = true)") == "(call sum x :axis 0 :keep true)");
    CHECK(expr("f(a == b)") == "(call f (== a b))");
    CHECK(expr("dense(256, activity = l2(1e-4))(h1)") == "(call (call dense 256 :activity (call l2 0.0001)) h1)");
    CHECK(expr("serial(\n  dense(3),\n  relu(),\n)") == "(call serial (call dense 3) (call relu))");
    CHECK(expr("(f)(x)") == "(call f x)");
}

TEST_CASE("indexing, slices and attributes", "[dsl][parser]") {
    CHECK(expr("x[0]") == "(index x 0)");
    CHECK(expr("x[:, 1:3]") == "(index x (slice _ _) (slice 1 3))");
    CHECK(expr("x[::2, 1:, :-1, i + 1]") == "(index x (slice _ _ 2) (slice 1 _) (slice _ (- 1)) (+ i 1))");
    CHECK(expr("x[a:b:c, a::c, :b:]") == "(index x (slice a b c) (slice a _ c) (slice _ b))");
    CHECK(expr("m[0][1]") == "(index (index m 0) 1)");
    CHECK(expr("a.b.c") == "(. (. a b) c)");
    CHECK(expr("a.b(c)[0].d") == "(. (index (call (. a b) c) 0) d)");
    CHECK(expr("f(x)[0]") == "(index (call f x) 0)");
}

TEST_CASE("atoms: literals, names, tuples and lists", "[dsl][parser]") {
    CHECK(expr("42") == "42");
    CHECK(expr("0.5") == "0.5");
    CHECK(expr("3.") == "3.0");
    CHECK(expr("1e-4") == "0.0001");
    CHECK(expr("2.5e10") == "25000000000.0");
    CHECK(expr("1e300") == "1e+300");
    CHECK(expr(R"("a\"b\n")") == R"("a\"b\n")");
    CHECK(expr("true") == "true");
    CHECK(expr("false") == "false");
    CHECK(expr("none") == "none");
    CHECK(expr("d_model") == "d_model");
    CHECK(expr("(a, b)") == "(tuple a b)");
    CHECK(expr("(a,)") == "(tuple a)");
    CHECK(expr("()") == "(tuple)");
    CHECK(expr("((a))") == "a");
    CHECK(expr("[0, 0, 0]") == "(list 0 0 0)");
    CHECK(expr("[]") == "(list)");
    CHECK(expr("[[1, 2], [3],]") == "(list (list 1 2) (list 3))");
    CHECK(expr("(1 +\n 2)") == "(+ 1 2)");
}

TEST_CASE("layer definitions, with and without parameters", "[dsl][parser]") {
    CHECK(sexpr("layer attention_qkv(d_feature, n_heads = 1, dropout = 0.0) =\n"
                "    serial(parallel(dense(d_feature), dense(d_feature), dense(d_feature)),\n"
                "           pure_attention(n_heads = n_heads, dropout = dropout),\n"
                "           dense(d_feature))\n") ==
          "(layer attention_qkv (params d_feature (n_heads = 1) (dropout = 0.0)) (call serial (call parallel "
          "(call dense d_feature) (call dense d_feature) (call dense d_feature)) (call pure_attention "
          ":n_heads n_heads :dropout dropout) (call dense d_feature)))\n");
    CHECK(sexpr("layer block = residual(dense(4), relu())") == "(layer block (params) (call residual (call dense 4) (call relu)))\n");
    CHECK(sexpr("layer l() = dense(1)") == "(layer l (params) (call dense 1))\n");
}

TEST_CASE("defs: typed parameters, defaults and every statement", "[dsl][parser]") {
    CHECK(sexpr("def classify(x: f32[B, 784], y: i64[B], mask: u8[B, 1, 1, T], s: f64[] = 1.0, flag = true) {\n"
                "    h = relu(dense(256)(x))\n"
                "    a, b = split(h, 2)\n"
                "    loss ce = cross_entropy(a, y)\n"
                "    metric acc = accuracy(a, y)\n"
                "    return a, b\n"
                "}\n") ==
          "(def classify (params (x : f32[B, 784]) (y : i64[B]) (mask : u8[B, 1, 1, T]) (s : f64[] = 1.0) "
          "(flag = true)) (= h (call relu (call (call dense 256) x))) (= (a b) (call split h 2)) "
          "(loss ce (call cross_entropy a y)) (metric acc (call accuracy a y)) (return a b))\n");
    CHECK(sexpr("def f(x) { return x }") == "(def f (params x) (return x))\n");
    CHECK(sexpr("def f() {}") == "(def f (params))\n");
    CHECK(sexpr("def f(x)\n{\n  y = x; return y;\n}") == "(def f (params x) (= y x) (return y))\n");
    CHECK(sexpr("def f(\n  x: bool[N],\n  n = 2,\n) {\n\n  a,\n  b = g(x)\n  return a\n}") ==
          "(def f (params (x : bool[N]) (n = 2)) (= (a b) (call g x)) (return a))\n");
    CHECK(sexpr("def f(x) {\n  h =\n    relu(x)\n  return h\n}") == "(def f (params x) (= h (call relu x)) (return h))\n");
}

TEST_CASE("param declarations, imports, train blocks and constants", "[dsl][parser]") {
    CHECK(sexpr("param Q: f32[10, 10] = eye(10), constraint = simplex(axis = 0)") ==
          "(param Q f32[10, 10] (call eye 10) :constraint (call simplex :axis 0))\n");
    CHECK(sexpr("param w: f32[3] = zeros(3)") == "(param w f32[3] (call zeros 3))\n");
    CHECK(sexpr("import \"std/layers.wg\"\nimport attention") == "(import \"std/layers.wg\")\n(import attention)\n");
    CHECK(sexpr("train classify {\n"
                "    data      = fashion_mnist(split = \"train\")\n"
                "    optimizer = adam(lr = 1e-3)\n"
                "    epochs    = 5; batch = 128\n"
                "}\n") ==
          "(train classify :data (call fashion_mnist :split \"train\") :optimizer (call adam :lr 0.001) :epochs 5 "
          ":batch 128)\n");
    CHECK(sexpr("train t\n{\n}") == "(train t)\n");
    CHECK(sexpr("n = 10; m = n * 2\n") == "(const n 10)\n(const m (* n 2))\n");
    CHECK(sexpr("") == "");
    CHECK(sexpr("# only a comment") == "");
}

TEST_CASE("the sample tour of the syntax parses without errors", "[dsl][parser]") {
    SourceFile file = SourceFile::read(WENGERT_DSL_TEST_DIR "/samples/tour.wg");
    DiagnosticSink sink;
    Module module = parse(file, sink);
    INFO(sink.format_all());
    CHECK(sink.diagnostics().empty());
    CHECK(module.file == &file);
    REQUIRE(module.decls.size() == 18);
    CHECK(module.decls[0].as<Import>() != nullptr);
    CHECK(module.decls[9].as<LayerDef>()->name == "attention_qkv");
    CHECK(module.decls[12].as<FunctionDef>()->body.size() == 7);
    CHECK(module.decls[13].as<ParamDecl>()->attributes.size() == 1);
    const FunctionDef* attend = module.decls[16].as<FunctionDef>();
    REQUIRE(attend != nullptr);
    CHECK(to_sexpr(attend->body[4]) == "(= last (index scores (slice _ _) (slice _ _ 2) (- 1)))");
    CHECK(module.decls[17].as<TrainBlock>()->settings.size() == 6);
}

TEST_CASE("nodes carry the location of the token that identifies them", "[dsl][parser]") {
    auto parsed = parse_text(
        "def f(x: f32[B, 784], n = 2) {\n"
        "    h, g = dense(256)(x) + a.b\n"
        "    loss l = -x[0, 1:]\n"
        "    return h\n"
        "}\n"
        "train f { epochs = 5 }\n");
    REQUIRE_FALSE(parsed->sink.has_errors());
    const Decl& decl = parsed->module.decls.at(0);
    CHECK(decl.loc.file == parsed->file.get());
    CHECK(decl.loc.line == 1);
    CHECK(decl.loc.column == 5);
    CHECK(decl.loc.length == 1);
    const FunctionDef& def = *decl.as<FunctionDef>();

    const Param& x = def.params.at(0);
    CHECK(x.loc.column == 7);
    CHECK(x.type->loc.column == 10);
    CHECK(x.type->dtype == "f32");
    CHECK(x.type->dims.at(0).loc.column == 14);
    CHECK(std::get<std::string>(x.type->dims.at(0).size) == "B");
    CHECK(std::get<std::int64_t>(x.type->dims.at(1).size) == 784);
    CHECK(def.params.at(1).default_value->loc.column == 27);

    const Stmt& assign_stmt = def.body.at(0);
    CHECK(assign_stmt.loc.line == 2);
    CHECK(assign_stmt.loc.column == 5);
    const Assign& assign = *assign_stmt.as<Assign>();
    CHECK(assign.targets.at(1).loc.column == 8);
    const Expr& sum = *assign.value;
    CHECK(sum.as<Binary>()->op == BinaryOp::add);
    CHECK(sum.loc.column == 26);  // the '+'
    const Expr& outer_call = *sum.as<Binary>()->lhs;
    CHECK(outer_call.loc.column == 22);  // the second '('
    CHECK(outer_call.as<Call>()->callee->loc.column == 17);
    CHECK(sum.as<Binary>()->rhs->loc.column == 30);  // the attribute name 'b'

    const Stmt& loss_stmt = def.body.at(1);
    CHECK(loss_stmt.loc.column == 10);  // the loss's name
    const Expr& negate = *loss_stmt.as<LossTerm>()->value;
    CHECK(negate.loc.column == 14);
    const Expr& index = *negate.as<Unary>()->operand;
    CHECK(index.loc.column == 16);
    CHECK(index.as<Index>()->indices.at(1)->loc.column == 21);  // the slice's ':'

    CHECK(def.body.at(2).loc.column == 5);  // 'return'
    const Decl& train = parsed->module.decls.at(1);
    CHECK(train.loc.line == 6);
    CHECK(train.loc.column == 7);
    CHECK(train.as<TrainBlock>()->settings.at(0).loc.column == 11);
}

TEST_CASE("an expression's height counts its levels", "[dsl][parser]") {
    auto parsed = parse_text("e = 1 + 2 * f(g(x))[0]");
    const Expr& e = *parsed->module.decls.at(0).as<Constant>()->value;
    CHECK(e.height == 6);  // + * index call(f) call(g) x
    CHECK(e.as<Binary>()->lhs->height == 1);
}

TEST_CASE("nesting is limited so no input can exhaust the stack", "[dsl][parser]") {
    std::string ok = "e = " + std::string(255, '(') + "1" + std::string(255, ')');
    CHECK(errors(ok).empty());
    std::string deep = "e = " + std::string(256, '(') + "1" + std::string(256, ')');
    CHECK(errors(deep) == V{"t.wg:1:261: error: expression nested too deeply (more than 256 levels)"});
    std::string huge = "e = " + std::string(100000, '[') + "\nx = 1 +\n";
    CHECK(errors(huge) == V{"t.wg:1:261: error: expression nested too deeply (more than 256 levels)",
                            "t.wg:2:8: error: expected an expression"});

    std::string chain = "e = 1";
    for (int i = 0; i < 255; ++i) chain += "+1";
    CHECK(errors(chain).empty());
    chain += "+1";
    CHECK(errors(chain) == V{"t.wg:1:516: error: expression nested too deeply (more than 256 levels)"});
}

TEST_CASE("syntax errors drop their statement or declaration and keep the rest", "[dsl][parser]") {
    auto parsed = parse_text(
        "a = 1\n"
        "b = (2\n"
        "def f(x) {\n"
        "    h = relu(x\n"
        "    return h\n"
        "}\n"
        "c = 3 4\n"
        "d = 4\n");
    CHECK(parsed->sink.error_count() == 3);
    CHECK(to_sexpr(parsed->module) == "(const a 1)\n(def f (params x) (return h))\n(const d 4)\n");
}

TEST_CASE("errors that keep the parser in step keep their declaration", "[dsl][parser]") {
    auto parsed = parse_text("def f(x, x) { return 0 < x < 1 }\nparam p: f33[2] = zeros(2)\n");
    CHECK(parsed->sink.error_count() == 3);
    CHECK(to_sexpr(parsed->module) == "(def f (params x x) (return (< (< 0 x) 1)))\n(param p f33[2] (call zeros 2))\n");
}

TEST_CASE("a missing closer's error points past the line's end and notes the opener", "[dsl][parser]") {
    auto parsed = parse_text("def f(x) {\n    h = relu(dense(256)(x)\n    return h\n}\n");
    REQUIRE(parsed->sink.diagnostics().size() == 1);
    CHECK(format_diagnostic(parsed->sink.diagnostics()[0]) ==
          "t.wg:2:27: error: expected ')' after arguments\n"
          "    h = relu(dense(256)(x)\n"
          "                          ^\n"
          "t.wg:2:13: note: to match this '('\n"
          "    h = relu(dense(256)(x)\n"
          "            ^\n");
}

TEST_CASE("two names in a row suggest the keyword the first resembles", "[dsl][parser]") {
    auto parsed = parse_text("lyer l = dense(3)\ndef f(x) {\n    retrun x\n    los c = x\n    h x\n}\n");
    const std::vector<Diagnostic>& ds = parsed->sink.diagnostics();
    REQUIRE(ds.size() == 4);
    CHECK(format_diagnostic(ds[0]) ==
          "t.wg:1:6: error: expected '=' after 'lyer'\nlyer l = dense(3)\n     ^\nhelp: did you mean 'layer'?\n");
    CHECK(ds[1].suggestions == V{"return"});
    CHECK(ds[2].suggestions == V{"loss"});
    CHECK(format_headline(ds[3]) == "t.wg:5:7: error: expected '=' after 'h'");
    CHECK(ds[3].suggestions.empty());
}

TEST_CASE("an unknown dtype suggests the known one it resembles", "[dsl][parser]") {
    auto parsed = parse_text("def f(x: f33[B], y: float[B]) { return x }");
    const std::vector<Diagnostic>& ds = parsed->sink.diagnostics();
    REQUIRE(ds.size() == 2);
    CHECK(format_headline(ds[0]) == "t.wg:1:10: error: unknown dtype 'f33'");
    CHECK(ds[0].suggestions == V{"f32"});
    CHECK(format_headline(ds[1]) == "t.wg:1:21: error: unknown dtype 'float'");
    CHECK(ds[1].suggestions.empty());
    CHECK(annotation_dtypes() == V{"f32", "f64", "i64", "u8", "bool"});
}

TEST_CASE("lexical and syntax errors come out in source order", "[dsl][parser]") {
    CHECK(errors("a = (1\nb = $\nc = 1 +\n") == V{"t.wg:1:7: error: expected ')' after expression",
                                                  "t.wg:2:5: error: unexpected character '$'",
                                                  "t.wg:3:8: error: expected an expression"});
}
