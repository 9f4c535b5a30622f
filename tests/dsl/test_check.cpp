// Semantic golden files, the checker's robustness, and every model in models/.
//
// Each tests/dsl/check_errors/*.wg ends with the lines `wengert check` must print for it, in
// order, as comments `# expect: LINE`: each error's headline (file:line:col: error: message),
// then its notes' headlines, then its "help: did you mean ...?" line. The source excerpts
// and carets between them are left out. Paths print as the CLI prints them when run in that
// folder; the standard library's folder prints as <std>.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "check.hpp"
#include "support.hpp"
#include "wengert/dsl/interpreter.hpp"

using namespace wengert;
using namespace wengert::dsl;
namespace fs = std::filesystem;
using namespace wengert::dsl::testing;

namespace {

const fs::path check_errors_dir = fs::path(WENGERT_DSL_TEST_DIR) / "check_errors";

std::vector<std::string> expected_lines(const std::string& text) {
    const std::string marker = "# expect: ";
    std::vector<std::string> expected;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(marker, 0) != 0) continue;
        line.erase(line.find_last_not_of(" \r") + 1);
        expected.push_back(line.substr(marker.size()));
    }
    return expected;
}

// The headline, note headlines and help line of every diagnostic, with `dir`/ removed from
// paths and the standard library's folder written <std>.
std::vector<std::string> rendered_lines(const DiagnosticSink& sink, const fs::path& dir) {
    std::vector<std::string> out;
    for (const Diagnostic& d : sink.diagnostics()) {
        out.push_back(format_headline(d));
        for (const Note& n : d.notes) out.push_back(format_headline(Diagnostic{Severity::note, n.loc, n.message, {}, {}}));
        std::string text = format_diagnostic(d);
        text.pop_back();
        std::string last = text.substr(text.rfind('\n') + 1);
        if (last.rfind("help: ", 0) == 0) out.push_back(last);
    }
    for (auto& line : out) line = normalize_paths(line, dir);
    return out;
}

// What `wengert check` does, in process. The interpreter owns the source files the
// diagnostics point into, so it lives as long as they are read.
InterpreterOptions checking_options() {
    InterpreterOptions o = test_interpreter_options();
    o.check = true;
    return o;
}

struct Checked {
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in{sink, params, checking_options()};
    CheckReport report;
};

void check_file(Checked& c, const std::string& path) {
    if (c.in.load_file(path)) c.report = check_model(c.in, std::nullopt);
}

void check_text(Checked& c, const std::string& name, const std::string& text) {
    if (c.in.load_source(name, text)) c.report = check_model(c.in, std::nullopt);
}

}  // namespace

TEST_CASE("semantic golden files report exactly their expected errors, notes and suggestions", "[dsl][check][golden]") {
    std::vector<fs::path> files = wg_files_in(check_errors_dir);
    REQUIRE(files.size() >= 15);
    for (const fs::path& path : files) {
        INFO(path.filename().string());
        std::vector<std::string> expected = expected_lines(read_text(path));
        REQUIRE(!expected.empty());
        Checked c;
        REQUIRE_NOTHROW(check_file(c, path.string()));
        CHECK(c.sink.has_errors());
        CHECK(rendered_lines(c.sink, check_errors_dir) == expected);
    }
}

TEST_CASE("wengert check prints the same diagnostics for every golden file and exits 65", "[dsl][check][golden][cli]") {
    for (const fs::path& path : wg_files_in(check_errors_dir)) {
        INFO(path.filename().string());
        Checked c;
        check_file(c, path.string());
        std::string expected = normalize_paths(c.sink.format_all(), check_errors_dir);
        std::size_t n = c.sink.error_count();
        expected += std::to_string(n) + (n == 1 ? " error generated.\n" : " errors generated.\n");

        CliResult r = run_wengert({"check", path.filename().string()}, check_errors_dir);
        CHECK(r.exit_code == 65);
        CHECK(r.out.empty());
        CHECK(normalize_paths(r.err, check_errors_dir) == expected);
    }
}

TEST_CASE("a def called with wrong arguments is reported at the call, with the declaration as a note",
          "[dsl][check]") {
    Checked c;
    check_text(c, "m.wg", "def g(h: f32[B, 4]) {\n    return h\n}\ndef f(x: f32[B, 3]) {\n    return g(x)\n}\n");
    REQUIRE(c.sink.error_count() == 1);
    const Diagnostic& d = c.sink.diagnostics()[0];
    CHECK(format_headline(d) == "m.wg:5:14: error: g: parameter 'h' is declared f32[B, 4] but was given f32[B, 3]");
    REQUIRE(d.notes.size() == 1);
    CHECK(d.notes[0].loc.line == 1);
    CHECK(d.notes[0].loc.column == 7);
}

// Every prefix of a valid model, cut at every byte, checks without throwing and reports only
// locations inside the text; the whole model checks cleanly.
TEST_CASE("checking any prefix of a valid model never throws", "[dsl][check][robustness]") {
    for (const fs::path& path : {fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg", fs::path(WENGERT_DSL_TEST_DIR) / "models" / "small.wg"}) {
        std::string text = read_text(path);
        INFO(path.filename().string());
        std::size_t clean = 0;
        for (std::size_t n = 0; n <= text.size(); ++n) {
            INFO("prefix of " << n << " bytes");
            Checked c;
            REQUIRE_NOTHROW(check_text(c, "prefix.wg", text.substr(0, n)));
            for (const Diagnostic& d : c.sink.diagnostics()) {
                REQUIRE_NOTHROW(format_diagnostic(d));
                if (d.loc.file) REQUIRE(d.loc.line <= d.loc.file->line_count());
            }
            if (!c.sink.has_errors()) ++clean;
        }
        Checked whole;
        check_text(whole, path.filename().string(), text);
        CHECK(!whole.sink.has_errors());
        CHECK(clean > 0);
    }
}

TEST_CASE("wengert check exits 0 or 65, never crashing, on every line-prefix of a valid model", "[dsl][check][robustness][cli]") {
    TempDir tmp;
    std::string text = read_text(fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg");
    std::size_t failing = 0;
    for (std::size_t end = 0; end != std::string::npos && end <= text.size();) {
        std::string prefix = text.substr(0, end);
        write_text(tmp.path / "prefix.wg", prefix);
        CliResult r = run_wengert({"check", (tmp.path / "prefix.wg").string()});
        INFO(prefix);
        REQUIRE((r.exit_code == 0 || r.exit_code == 65));
        CHECK(r.err.find("internal error") == std::string::npos);
        if (r.exit_code == 65) ++failing;
        // the prefixes ending just before a line break, and one mid-line
        std::size_t next = text.find('\n', end + 1);
        end = next == std::string::npos ? (end == text.size() ? std::string::npos : text.size()) : next;
    }
    CHECK(failing > 0);
}

TEST_CASE("every model in models/ passes wengert check", "[dsl][check][models][cli]") {
    std::vector<fs::path> models = wg_files_in(WENGERT_MODELS_DIR);
    REQUIRE(!models.empty());
    for (const fs::path& path : models) {
        INFO(path.filename().string());
        CliResult r = run_wengert({"check", path.string()});
        CHECK(r.exit_code == 0);
        CHECK(r.err.empty());
        CHECK(r.out.find("total") != std::string::npos);
    }
}

TEST_CASE("wengert check prints every value with B symbolic and the parameter totals", "[dsl][check][cli]") {
    CliResult r = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg").string()});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out ==
          "mlp\n"
          "  value                              shape                dtype\n"
          "  h1                                 [B, 256]             f32\n"
          "  h2                                 [B, 256]             f32\n"
          "  logits                             [B, 10]              f32\n"
          "  ce                                 []                   f32\n"
          "  acc                                []                   f32\n"
          "  loss ce                            []                   f32\n"
          "  loss h2.dense.activity_regularizer []                   f32\n"
          "  metric acc                         []                   f32\n"
          "\n"
          "parameters\n"
          "  layer                                   count  shapes\n"
          "  h1.dense                              200,960  w [784, 256], b [256]\n"
          "  h2.dense                               65,792  w [256, 256], b [256]\n"
          "  logits.dense                            2,570  w [256, 10], b [10]\n"
          "  total                                 269,322\n");

    CliResult explicit_form = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg").string(), "--function", "mlp_explicit"});
    REQUIRE(explicit_form.exit_code == 0);
    CHECK(explicit_form.out.find("  loss act2 ") != std::string::npos);
    CHECK(explicit_form.out.find("  total                                 269,322\n") != std::string::npos);
}

TEST_CASE("symbolic sizes other than B print by their names", "[dsl][check]") {
    Checked c;
    check_text(c, "m.wg",
               "def f(ids: i64[B, T], x: f32[B, T, 8]) {\n"
               "    e = embedding(100, 8)(ids)\n"
               "    h = e + x\n"
               "    s = sum(h, axis = 1)\n"
               "    return s\n"
               "}\n");
    REQUIRE(!c.sink.has_errors());
    CHECK(c.report.table.find("  e ") != std::string::npos);
    CHECK(c.report.table.find("[B, T, 8]") != std::string::npos);
    std::size_t row = c.report.table.find("\n  s ");
    REQUIRE(row != std::string::npos);
    std::string s_row = c.report.table.substr(row + 1, c.report.table.find('\n', row + 1) - row - 1);
    CHECK(s_row.find(" [B, 8] ") != std::string::npos);
    CHECK(c.report.total_params == 800);
}

// The line of a check table whose first column is `name`, without the runs of spaces.
static std::string table_row(const std::string& table, const std::string& name) {
    std::istringstream lines(table);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream words(line);
        std::string first, row;
        words >> first;
        if (first != name) continue;
        row = first;
        for (std::string w; words >> w;) row += " " + w;
        return row;
    }
    return "";
}

TEST_CASE("check's symbolic sizes stay small however many integers a model writes (Note [Bounded symbolic sizes])",
          "[dsl][check]") {
    // before: B and T became the first primes the file does not write, here 3001 and 3011, and
    // 100k distinct literals made inputs of gigabytes. y's size, B * T, shows which were used.
    std::string text;
    for (int n = 2; n < 3000; ++n) text += fmt::format("c{} = {}\n", n, n);
    const std::string f = "def f(x: f32[B, T]) {\n    y = reshape(x, (-1,))\n    n = zeros((y.shape[0] + 1,))\n    return y\n}\n";
    text += f;
    Checked c;
    check_text(c, "m.wg", text);
    REQUIRE(!c.sink.has_errors());
    // y is B * T, printed as such (Note [Sizes as expressions]); one more than it is no
    // multiple of a stand-in, so `n` shows the number the check ran with
    CHECK(table_row(c.report.table, "y") == "y [B*T] f32");
    CHECK(table_row(c.report.table, "n") == "n [1518] f32");   // 37 * 41 + 1: the window's primes, reused in order

    // a file that leaves some of the window's primes unwritten gets those: 41 * 47
    Checked few;
    check_text(few, "m.wg", "a = 37\nb = 43\n" + f);
    REQUIRE(!few.sink.has_errors());
    CHECK(table_row(few.report.table, "n") == "n [1928] f32");
}

TEST_CASE("check prints sizes made from symbolic ones as expressions of them (Note [Sizes as expressions])", "[dsl][check]") {
    Checked c;
    check_text(c, "m.wg", R"(
def f(x: f32[B, 16, 64], t: f32[B, T, 74]) {
    rows  = reshape(x, (-1, 64))
    cells = reshape(t, (-1,))
    wide  = dense(74)(t)
    return rows
}
)");
    REQUIRE(!c.sink.has_errors());
    CHECK(table_row(c.report.table, "rows") == "rows [B*16, 64] f32");
    CHECK(table_row(c.report.table, "cells") == "cells [B*T*74] f32");
    // 74 is written in the model, so 37 stands for no symbol (74 would print as B*2 if it did)
    CHECK(table_row(c.report.table, "wide") == "wide [B, T, 74] f32");
}

TEST_CASE("a symbolic sequence length works with positional_embedding (Note [Bounded sequence lengths])", "[dsl][check]") {
    const std::string model = R"(
def seq(x: i64[B, T], y: i64[B, T]) {
    h = embedding(10, 8)(x)
    p = positional_embedding(MAX, 8)(h)
    logits = OUT
    loss ce = cross_entropy(logits, y)
    return logits
}
)";
    auto text = [&](const std::string& max, const std::string& out) {
        std::string t = model;
        t.replace(t.find("MAX"), 3, max);
        t.replace(t.find("OUT"), 3, out);
        return t;
    };
    SECTION("T fits under the table's 16 positions: the check passes, printing T") {
        Checked c;
        check_text(c, "m.wg", text("16", "dense(10)(p)"));
        REQUIRE(!c.sink.has_errors());
        CHECK(table_row(c.report.table, "p") == "p [B, T, 8] f32");
        CHECK(table_row(c.report.table, "logits") == "logits [B, T, 10] f32");
    }
    SECTION("a table of 2 positions allows no stand-in: the bound is the error") {
        Checked c;
        check_text(c, "m.wg", text("2", "dense(10)(p)"));
        REQUIRE(c.sink.error_count() == 1);
        CHECK(c.sink.diagnostics()[0].message.find("length T exceeds max_len 2") != std::string::npos);
    }
    SECTION("a mistake after the embedding is reported, not hidden behind the bound") {
        Checked c;
        check_text(c, "m.wg", text("16", "p @ ones((3, 10))"));
        REQUIRE(c.sink.error_count() == 1);
        CHECK(c.sink.diagnostics()[0].message == "matmul: inner dimensions differ: [B, T, 8] x [3, 10] (8 vs 3)");
    }
}

TEST_CASE("'did you mean' is worked out only for the diagnostics that are printed", "[dsl][check]") {
    // 10k unknown names took 17 s: each searched every name in scope. Now the first 50, which
    // format_all prints, carry suggestions and the rest none.
    std::string text;
    for (int n = 0; n < 60; ++n) text += fmt::format("known_{} = 1\nc{} = knwon_{}\n", n, n, n);
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in{sink, params, test_interpreter_options()};
    CHECK(!in.load_source("m.wg", text));
    REQUIRE(sink.diagnostics().size() == 60);
    for (std::size_t i = 0; i < 60; ++i) {
        INFO(i);
        CHECK(sink.diagnostics()[i].message == fmt::format("unknown name 'knwon_{}'", i));
        if (i < DiagnosticSink::kMaxShownDiagnostics) CHECK(sink.diagnostics()[i].suggestions == std::vector<std::string>{fmt::format("known_{}", i)});
        else CHECK(sink.diagnostics()[i].suggestions.empty());
    }
    std::string all = sink.format_all();
    CHECK(all.find("help: did you mean 'known_49'?") != std::string::npos);
    CHECK(all.find("known_50") == std::string::npos);
    CHECK(all.find("... and 10 more (the first 50 are shown)\n") != std::string::npos);
}

TEST_CASE("wengert check counts Trax's AttentionQKV(512): 4 * (512^2 + 512) parameters", "[dsl][check][attention]") {
    CliResult r = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "attention_qkv.wg").string()});
    REQUIRE(r.exit_code == 0);
    CHECK(table_row(r.out, "y") == "y [B, T, 512] f32");
    CHECK(table_row(r.out, "kept") == "kept [B, 1, 1, S] u8");
    CHECK(table_row(r.out, "y.attention_qkv.parallel.dense_2") == "y.attention_qkv.parallel.dense_2 262,656 w [512, 512], b [512]");
    CHECK(table_row(r.out, "total") == "total 1,050,624");
}

TEST_CASE("the sorting model checks with B symbolic and the penalty as a setting", "[dsl][check][attention]") {
    for (const char* function : {"sorter", "sorter_penalised"}) {
        INFO(function);
        CliResult r = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "sort_attention.wg").string(), "--function", function});
        REQUIRE(r.exit_code == 0);
        CHECK(table_row(r.out, "logits") == "logits [B, 16, 10] f32");
        CHECK(table_row(r.out, "total") == "total 102,346");
    }
}

TEST_CASE("wengert check warns when no gradient from the loss reaches a layer (Note [Parameters without a gradient])",
          "[dsl][check][onehot]") {
    const std::string model = (fs::path(WENGERT_MODELS_DIR) / "discrete_code.wg").string();
    CliResult argmax = run_wengert({"check", model, "--function", "by_argmax"});
    CHECK(argmax.exit_code == 0);
    CHECK_THAT(argmax.err, Catch::Contains("warning: by_argmax: no gradient from the loss reaches layers logits.h.dense, "
                                           "logits.dense, so they will not train"));
    CHECK(table_row(argmax.out, "total") == "total 208,346");
    for (const char* function : {"coded", "straight", "sharpened"}) {
        INFO(function);
        CliResult r = run_wengert({"check", model, "--function", function});
        CHECK(r.exit_code == 0);
        CHECK(r.err.empty());
    }
}

TEST_CASE("wengert check counts the reference VAE's 652,824 parameters (SPEC section 6)", "[dsl][check][vae]") {
    CliResult r = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "vae.wg").string()});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(table_row(r.out, "z") == "z [B, 20] f32");
    CHECK(table_row(r.out, "recon") == "recon [B, 784] f32");
    CHECK(table_row(r.out, "total") == "total 652,824");
}

TEST_CASE("wengert gradcheck runs the VAE in f64: its sample's dtype follows the run", "[dsl][check][vae]") {
    CliResult r = run_wengert({"gradcheck", (fs::path(WENGERT_MODELS_DIR) / "vae.wg").string(), "--max-elements", "2"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK_THAT(r.out, Catch::Contains("all gradients agree with finite differences"));
}

TEST_CASE("wengert check prints the keras-io convnet's shapes and its 34,826 parameters", "[dsl][check][conv]") {
    CliResult r = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "convnet.wg").string()});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out ==
          "convnet\n"
          "  value                            shape                dtype\n"
          "  h1                               [B, 26, 26, 32]      f32\n"
          "  p1                               [B, 13, 13, 32]      f32\n"
          "  h2                               [B, 11, 11, 64]      f32\n"
          "  p2                               [B, 5, 5, 64]        f32\n"
          "  logits                           [B, 10]              f32\n"
          "  ce                               []                   f32\n"
          "  acc                              []                   f32\n"
          "  act2                             []                   f32\n"
          "  loss ce                          []                   f32\n"
          "  metric acc                       []                   f32\n"
          "  metric act2                      []                   f32\n"
          "\n"
          "parameters\n"
          "  layer                                   count  shapes\n"
          "  h1.conv2d                                 320  w [3, 3, 1, 32], b [32]\n"
          "  h2.conv2d                              18,496  w [3, 3, 32, 64], b [64]\n"
          "  logits.dense                           16,010  w [1600, 10], b [10]\n"
          "  total                                  34,826\n");
    for (const std::string function : {"convnet_actreg", "convnet_explicit"}) {
        CliResult penalised = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "convnet.wg").string(), "--function", function});
        REQUIRE(penalised.exit_code == 0);
        CHECK_THAT(penalised.out, Catch::Contains("34,826\n"));
        CHECK_THAT(penalised.out, Catch::Contains(function == "convnet_actreg" ? "  loss h2.conv2d.activity_regularizer" : "  loss act2_penalty"));
    }
}
