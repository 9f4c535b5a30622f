// wengert-op-table: docs/dsl.md's op table, generated from the engine's registry as the language
// calls its ops (op_table in dsl/src/builtins.hpp). With no argument it prints the table; given docs/dsl.md it rewrites the
// table between the file's op-table markers in place (`ninja -C build op-table` does that). The
// language's tests fail while the file and the registry differ (tests/dsl/test_binder.cpp).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "builtins.hpp"

namespace {

const std::string kBegin = "<!-- op table: generated from the ops' signatures; regenerate with `ninja -C build op-table` -->\n";
const std::string kEnd = "<!-- end of the op table -->\n";

int rewrite(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        std::fprintf(stderr, "wengert-op-table: cannot read %s\n", path.c_str());
        return 74;
    }
    std::stringstream text;
    text << in.rdbuf();
    std::string docs = text.str();
    const auto begin = docs.find(kBegin), end = docs.find(kEnd);
    if (begin == std::string::npos || end == std::string::npos || end < begin) {
        std::fprintf(stderr, "wengert-op-table: %s has no op-table markers (%s ... %s)\n", path.c_str(), kBegin.c_str(), kEnd.c_str());
        return 65;
    }
    docs.replace(begin + kBegin.size(), end - begin - kBegin.size(), wengert::dsl::op_table());
    std::ofstream(path) << docs;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 1) {
        std::cout << wengert::dsl::op_table();
        return 0;
    }
    if (argc == 2) return rewrite(argv[1]);
    std::fprintf(stderr, "usage: wengert-op-table [docs/dsl.md]\n");
    return 64;
}
