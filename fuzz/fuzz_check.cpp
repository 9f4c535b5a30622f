// libFuzzer target: `wengert check` on a model whose text is the input (docs/fuzzing.md).
// Every outcome but a crash, a sanitizer report or a hang is fine: a model error, an I/O
// error (an import that is not there), or a check that passes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "check.hpp"
#include "wengert/dsl/interpreter.hpp"

using namespace wengert;
using namespace wengert::dsl;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    DiagnosticSink sink;
    ParamStore params;
    InterpreterOptions options;
    options.stdlib_dir = WENGERT_STDLIB_DIR;
    Interpreter in(sink, params, options);
    try {
        if (in.load_source("fuzz.wg", text)) check_model(in, std::nullopt);
    } catch (const EvalError&) {
    } catch (const Error&) {
    } catch (const OutOfMemory&) {   // exit 74 in the CLI; ElementLimit keeps it rare
    }
    (void)sink.format_all();   // the diagnostics' rendering is part of what is fuzzed
    return 0;
}
