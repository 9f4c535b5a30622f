// Golden error files and robustness.
//
// Each tests/dsl/errors/*.wg holds the headline of every error it must produce, in order, in
// comments of the form `# expect: name.wg:LINE:COL: error: MESSAGE` (several may share a
// line). A file without any expects must parse cleanly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "wengert/dsl/ast_printer.hpp"
#include "wengert/dsl/parser.hpp"

using namespace wengert::dsl;
namespace fs = std::filesystem;

namespace {

const fs::path test_dir = WENGERT_DSL_TEST_DIR;

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() == ".wg") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::vector<std::string> expected_errors(const std::string& text) {
    const std::string marker = "# expect: ";
    std::vector<std::string> expected;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        for (std::size_t at = line.find(marker); at != std::string::npos;) {
            std::size_t begin = at + marker.size();
            at = line.find(marker, begin);
            std::string headline = line.substr(begin, at == std::string::npos ? std::string::npos : at - begin);
            headline.erase(headline.find_last_not_of(" \r") + 1);
            expected.push_back(headline);
        }
    }
    return expected;
}

std::vector<std::string> error_headlines(const DiagnosticSink& sink) {
    std::vector<std::string> headlines;
    for (const Diagnostic& d : sink.diagnostics()) {
        if (d.severity == Severity::error) headlines.push_back(format_headline(d));
    }
    return headlines;
}

bool inside(const Location& loc, const SourceFile& file) {
    if (loc.file != &file || loc.line < 1 || loc.line > file.line_count()) return false;
    return loc.column >= 1 && loc.column <= count_chars(file.line(loc.line)) + 1;
}

// True when `text` ends inside a bracket or a string, so parsing it must report an error.
bool ends_unfinished(const std::string& text) {
    int depth = 0;
    bool in_string = false;
    bool in_comment = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_comment) {
            in_comment = c != '\n';
        } else if (in_string) {
            if (c == '\\') ++i;
            in_string = c != '"' && c != '\n';
        } else if (c == '#') {
            in_comment = true;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '(' || c == '[' || c == '{') {
            ++depth;
        } else if (c == ')' || c == ']' || c == '}') {
            --depth;
        }
    }
    return depth > 0 || in_string;
}

}  // namespace

TEST_CASE("golden error files report exactly their expected errors, in order", "[dsl][golden]") {
    std::vector<fs::path> files = files_in(test_dir / "errors");
    REQUIRE(files.size() >= 20);
    std::size_t total_expected = 0;
    for (const fs::path& path : files) {
        std::string text = read_text(path);
        SourceFile file(path.filename().string(), text);
        DiagnosticSink sink;
        INFO(path.filename().string());
        REQUIRE_NOTHROW(parse(file, sink));
        std::vector<std::string> expected = expected_errors(text);
        total_expected += expected.size();
        CHECK(error_headlines(sink) == expected);
        CHECK_NOTHROW(sink.format_all());
    }
    CHECK(total_expected >= 80);
}

TEST_CASE("the golden expectations are read from comments, several to a line", "[dsl][golden]") {
    CHECK(expected_errors("x = 1 $ ?  # expect: a # expect: b c  \r\ny = 2\n# expect: d") ==
          std::vector<std::string>{"a", "b c", "d"});
    CHECK(expected_errors("x = 1\n").empty());
}

// Every prefix of every file, cut at every byte (mid-token, mid-string, mid-UTF-8 character),
// must parse without throwing, report only locations inside the text, print, and report an
// error when it ends inside a bracket or string.
TEST_CASE("parsing any prefix of a golden file or the sample never throws", "[dsl][golden][robustness]") {
    std::vector<fs::path> files = files_in(test_dir / "errors");
    files.push_back(test_dir / "samples" / "tour.wg");
    std::size_t prefixes_with_errors = 0;
    for (const fs::path& path : files) {
        std::string text = read_text(path);
        INFO(path.filename().string());
        for (std::size_t n = 0; n <= text.size(); ++n) {
            std::string prefix = text.substr(0, n);
            SourceFile file("prefix.wg", prefix);
            DiagnosticSink sink;
            Module module;
            INFO("prefix of " << n << " bytes");
            REQUIRE_NOTHROW(module = parse(file, sink));
            REQUIRE_NOTHROW(to_sexpr(module));
            for (const Diagnostic& d : sink.diagnostics()) {
                REQUIRE(inside(d.loc, file));
                for (const Note& note : d.notes) REQUIRE(inside(note.loc, file));
                REQUIRE_NOTHROW(format_diagnostic(d));
            }
            if (ends_unfinished(prefix)) REQUIRE(sink.has_errors());
            if (sink.has_errors()) ++prefixes_with_errors;
        }
    }
    CHECK(prefixes_with_errors > 0);
}

TEST_CASE("the sample parses cleanly whole and reports errors when cut inside a body", "[dsl][golden][robustness]") {
    std::string text = read_text(test_dir / "samples" / "tour.wg");
    SourceFile whole("tour.wg", text);
    DiagnosticSink sink;
    parse(whole, sink);
    CHECK(sink.diagnostics().empty());
    std::string cut = text.substr(0, text.find("return logits, h2"));
    SourceFile prefix("tour.wg", cut);
    DiagnosticSink cut_sink;
    Module module = parse(prefix, cut_sink);
    CHECK(error_headlines(cut_sink) == std::vector<std::string>{"tour.wg:30:37: error: expected '}' after the body of function 'classify'"});
    CHECK(module.decls.size() == 12);  // everything before classify
}
