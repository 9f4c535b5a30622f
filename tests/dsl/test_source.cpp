// Source files, locations and the diagnostic format.
#include <catch2/catch.hpp>

#include <string>

#include "wengert/dsl/diagnostics.hpp"
#include "wengert/dsl/source.hpp"
#include "wengert/error.hpp"

using namespace wengert::dsl;

TEST_CASE("source lines exclude their line break, \\r\\n included", "[dsl][source]") {
    SourceFile file("m.wg", "a = 1\r\nbb = 2\n\nlast");
    CHECK(file.line_count() == 4);
    CHECK(file.line(1) == "a = 1");
    CHECK(file.line(2) == "bb = 2");
    CHECK(file.line(3) == "");
    CHECK(file.line(4) == "last");
    CHECK(file.line(0) == "");
    CHECK(file.line(5) == "");
    SourceFile unfinished("m.wg", "a\r\nb\r");
    CHECK(unfinished.line(1) == "a");
    CHECK(unfinished.line(2) == "b\r");  // a lone '\r' is no line break
}

TEST_CASE("locations are 1-based and count characters, not bytes", "[dsl][source]") {
    // "é" is two bytes in UTF-8.
    SourceFile file("m.wg", "x = 1\n# é\ny = é + 2\n");
    Location start = file.location(0);
    CHECK(start.file == &file);
    CHECK(start.line == 1);
    CHECK(start.column == 1);

    std::size_t plus = file.text().find('+');
    Location at_plus = file.location(plus, 1);
    CHECK(at_plus.line == 3);
    CHECK(at_plus.column == 7);  // y, ' ', =, ' ', é, ' ', then '+'
    CHECK(at_plus.length == 1);

    Location end = file.location(file.text().size());
    CHECK(end.line == 4);
    CHECK(end.column == 1);
    CHECK(count_chars("é + 2") == 5);
}

TEST_CASE("reading a missing file is an IOError naming it", "[dsl][source]") {
    CHECK_THROWS_AS(SourceFile::read("/nonexistent/model.wg"), wengert::IOError);
    CHECK_THROWS_WITH(SourceFile::read("/nonexistent/model.wg"), "/nonexistent/model.wg: cannot open file");
}

TEST_CASE("a diagnostic prints position, source line and a caret under the token", "[dsl][diagnostics]") {
    SourceFile file("model.wg", "x = 1\nh2 = relu(dense(256 (h1))\n");
    Diagnostic d;
    d.loc = file.location(file.text().find("dense"), 5);
    d.message = "unknown layer 'dense'";
    CHECK(format_headline(d) == "model.wg:2:11: error: unknown layer 'dense'");
    CHECK(format_diagnostic(d) ==
          "model.wg:2:11: error: unknown layer 'dense'\n"
          "h2 = relu(dense(256 (h1))\n"
          "          ^~~~~\n");
}

TEST_CASE("a diagnostic without a known length gets a bare caret", "[dsl][diagnostics]") {
    SourceFile file("m.wg", "y = (1 + 2\n");
    Diagnostic d{Severity::error, file.location(10), "expected ')' after expression", {}, {}};
    CHECK(format_diagnostic(d) ==
          "m.wg:1:11: error: expected ')' after expression\n"
          "y = (1 + 2\n"
          "          ^\n");
}

TEST_CASE("the caret line keeps tabs and counts multi-byte characters once", "[dsl][diagnostics]") {
    SourceFile file("m.wg", "\tz = \"é\" + bad\n");
    Diagnostic d{Severity::error, file.location(file.text().find("bad"), 3), "unknown name 'bad'", {}, {}};
    CHECK(format_diagnostic(d) ==
          "m.wg:1:12: error: unknown name 'bad'\n"
          "\tz = \"é\" + bad\n"
          "\t          ^~~\n");
}

TEST_CASE("an underline never runs past the end of the line", "[dsl][diagnostics]") {
    SourceFile file("m.wg", "ab\n");
    Diagnostic d{Severity::error, file.location(1, 40), "too long", {}, {}};
    CHECK(format_diagnostic(d) == "m.wg:1:2: error: too long\nab\n ^\n");
}

TEST_CASE("notes follow with their own excerpt, then the suggestions", "[dsl][diagnostics]") {
    SourceFile file("m.wg", "h = relu(dense(2)(x)\nloss l = h\n");
    Diagnostic d{Severity::error, file.location(20), "expected ')' after arguments", {}, {}};
    d.notes.push_back(Note{file.location(8, 1), "to match this '('"});
    d.suggestions = {"a", "b", "c"};
    CHECK(format_diagnostic(d) ==
          "m.wg:1:21: error: expected ')' after arguments\n"
          "h = relu(dense(2)(x)\n"
          "                    ^\n"
          "m.wg:1:9: note: to match this '('\n"
          "h = relu(dense(2)(x)\n"
          "        ^\n"
          "help: did you mean 'a', 'b' or 'c'?\n");
}

TEST_CASE("a diagnostic without a location prints only its severity and message", "[dsl][diagnostics]") {
    Diagnostic d{Severity::warning, Location{}, "no train block", {}, {"x"}};
    CHECK(format_diagnostic(d) == "warning: no train block\nhelp: did you mean 'x'?\n");
}

TEST_CASE("the sink keeps diagnostics in order and counts errors", "[dsl][diagnostics]") {
    SourceFile file("m.wg", "a\nb\n");
    DiagnosticSink sink;
    CHECK_FALSE(sink.has_errors());
    sink.error(file.location(2, 1), "second line").suggestions.push_back("c");
    sink.report(Diagnostic{Severity::warning, file.location(0, 1), "first line", {}, {}});
    CHECK(sink.error_count() == 1);
    CHECK(sink.has_errors());
    REQUIRE(sink.diagnostics().size() == 2);
    CHECK(sink.diagnostics()[0].suggestions == std::vector<std::string>{"c"});
    CHECK(sink.format_all() ==
          "m.wg:2:1: error: second line\nb\n^\nhelp: did you mean 'c'?\n"
          "m.wg:1:1: warning: first line\na\n^\n");
}

TEST_CASE("closest_names suggests plausible typos only", "[dsl][diagnostics]") {
    std::vector<std::string> keywords = {"def", "import", "layer", "param", "train"};
    CHECK(closest_names("lyer", keywords) == std::vector<std::string>{"layer"});
    CHECK(closest_names("laeyr", keywords) == std::vector<std::string>{"layer"});  // swap counts one
    CHECK(closest_names("trian", keywords) == std::vector<std::string>{"train"});
    CHECK(closest_names("x", keywords).empty());
    CHECK(closest_names("layer", keywords).empty());  // the name itself is no suggestion
    CHECK(closest_names("dense", {"dense1", "dense2", "dens", "relu"}) ==
          std::vector<std::string>{"dens", "dense1", "dense2"});
    CHECK(closest_names("ab", {"ac", "xy"}) == std::vector<std::string>{"ac"});
    CHECK(closest_names("a", {"b"}).empty());  // one edit is a whole one-letter name
    CHECK(closest_names("relu", {"gelu", "elu", "selu", "tanh"}) == std::vector<std::string>{"elu", "gelu", "selu"});
}

TEST_CASE("reading is bounded: a device or pipe is refused, not read for ever", "[dsl][source]") {
    CHECK_THROWS_WITH(SourceFile::read("/dev/zero"), "/dev/zero: is not a regular file, so not a model file");
}

TEST_CASE("a diagnostic on a very long line shows a window of it around the column", "[dsl][diagnostics]") {
    std::string line = "x = " + std::string(100000, '1') + " + y";
    SourceFile file("m.wg", line + "\n");
    Diagnostic d{Severity::error, file.location(line.find('y'), 1), "unknown name 'y'", {}, {}};
    std::string text = format_diagnostic(d);
    CHECK(text.size() < 400);
    CHECK(text == "m.wg:1:100008: error: unknown name 'y'\n..." + line.substr(line.size() - 81) + "\n" + std::string(83, ' ') +
                      "^\n");
    // the start of a long line is shown without a leading "..."
    Diagnostic first{Severity::error, file.location(0, 1), "unknown name 'x'", {}, {}};
    std::string head = format_diagnostic(first);
    CHECK(head.find("\nx = 111") != std::string::npos);
    CHECK(head.find("...\n^\n") != std::string::npos);
}

TEST_CASE("at most 50 diagnostics are printed, then how many more there are", "[dsl][diagnostics]") {
    SourceFile file("m.wg", "y\n");
    DiagnosticSink sink;
    for (int i = 0; i < 257; ++i) sink.error(file.location(0, 1), "unknown name 'y'");
    std::string text = sink.format_all();
    std::size_t count = 0;
    for (std::size_t at = text.find("error:"); at != std::string::npos; at = text.find("error:", at + 1)) ++count;
    CHECK(count == 50);
    CHECK(text.size() > 0);
    const std::string tail = "... and 207 more (the first 50 are shown)\n";
    REQUIRE(text.size() > tail.size());
    CHECK(text.substr(text.size() - tail.size()) == tail);
    CHECK(sink.error_count() == 257);
}
