// `wengert graph`: every op's inputs are edges, those of ops without a gradient too (argmax,
// comparisons, integer casts), so no node stands alone; --out writes DOT or renders with dot.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "support.hpp"

using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

const std::string sort_model = (fs::path(WENGERT_MODELS_DIR) / "sort_attention.wg").string();

// Sets PATH for the commands run_wengert runs while it lives.
struct PathEnv {
    explicit PathEnv(const std::string& value) : saved(std::getenv("PATH") ? std::getenv("PATH") : "") { ::setenv("PATH", value.c_str(), 1); }
    ~PathEnv() { ::setenv("PATH", saved.c_str(), 1); }
    PathEnv(const PathEnv&) = delete;
    PathEnv& operator=(const PathEnv&) = delete;
    std::string saved;
};

}  // namespace

TEST_CASE("graph draws an edge into every op, with or without a gradient: no node stands alone", "[dsl][cli][graph]") {
    CliResult r = run_wengert({"graph", sort_model});
    REQUIRE(r.exit_code == 0);
    std::map<std::string, std::string> labels;   // node -> label
    std::map<std::string, int> inputs;           // node -> edges into it
    std::set<std::string> touched;
    const std::regex node(R"(^  (n\d+) \[label="([^"]*)\")"), edge(R"(^  (n\d+) -> (n\d+);)");
    for (const std::string& line : lines_of(r.out)) {
        std::smatch m;
        if (std::regex_search(line, m, node)) labels[m[1]] = m[2];
        if (std::regex_search(line, m, edge)) {
            ++inputs[m[2]];
            touched.insert(m[1]);
            touched.insert(m[2]);
        }
    }
    REQUIRE(labels.size() > 50);
    for (const auto& [id, label] : labels) {
        INFO(id << " " << label);
        CHECK(touched.count(id) == 1);
    }
    // the metrics' argmax, == and casts, and the padding mask's !=, each with its inputs
    std::map<std::string, int> expected = {{"argmax", 1}, {"eq", 2}, {"ne", 2}, {"hits\\ncast", 1}, {"real\\ncast", 1}};
    for (const auto& [op, count] : expected) {
        INFO(op);
        bool found = false;
        for (const auto& [id, label] : labels) {
            if (label.rfind(op + "\\n", 0) == 0) {
                found = true;
                CHECK(inputs[id] == count);
            }
        }
        CHECK(found);
    }
}

TEST_CASE("graph --out writes DOT text, or renders it with Graphviz's dot, or says it needs dot", "[dsl][cli][graph]") {
    TempDir tmp;
    CliResult text = run_wengert({"graph", sort_model});
    REQUIRE(run_wengert({"graph", sort_model, "--out", (tmp.path / "g.dot").string()}).exit_code == 0);
    CHECK(read_text(tmp.path / "g.dot") == text.out);

    const bool have_dot = std::system("command -v dot >/dev/null 2>&1") == 0;
    if (have_dot) {
        CliResult svg = run_wengert({"graph", sort_model, "--out", (tmp.path / "g.svg").string()});
        INFO(svg.err);
        REQUIRE(svg.exit_code == 0);
        CHECK(read_text(tmp.path / "g.svg").find("<svg") != std::string::npos);
    }
    // without dot on PATH
    PathEnv no_dot(tmp.path.string());
    CliResult missing = run_wengert({"graph", sort_model, "--out", (tmp.path / "h.svg").string()});
    CHECK(missing.exit_code == 74);
    CHECK(missing.err.rfind("wengert: error: " + (tmp.path / "h.svg").string() + ": rendering the graph needs Graphviz's `dot`", 0) == 0);
}
