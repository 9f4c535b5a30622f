// libFuzzer target: the .npz reader (load_npz: zip, zip64, deflate, CRC, every member's .npy) on the input's bytes
// (docs/fuzzing.md). An IOError is the expected answer to a damaged file; anything else that
// escapes, a crash or a sanitizer report is a bug.
#include <cstddef>
#include <cstdint>

#include "fuzz_file.hpp"
#include "wengert/io.hpp"

using namespace wengert;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        (void)load_npz(wengert::fuzzing::write_input(data, size, "input.npz"));
    } catch (const IOError&) {
    }
    return 0;
}
