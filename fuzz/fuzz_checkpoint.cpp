// libFuzzer target: a checkpoint folder whose manifest.json is the input (docs/fuzzing.md):
// the JSON parser and every check of the manifest against what it names. An IOError is the
// expected answer to a damaged manifest; anything else that escapes, a crash or a sanitizer
// report is a bug.
#include <cstddef>
#include <cstdint>
#include <filesystem>

#include "checkpoint.hpp"
#include "fuzz_file.hpp"

using namespace wengert;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string manifest = wengert::fuzzing::write_input(data, size, "manifest.json");
    try {
        (void)dsl::load_checkpoint(std::filesystem::path(manifest).parent_path().string());
    } catch (const IOError&) {
    }
    return 0;
}
