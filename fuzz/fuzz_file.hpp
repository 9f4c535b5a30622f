// The readers take paths: a fuzz input is written to a file of this process first.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace wengert::fuzzing {

// A path under the temporary folder, one per process and `name` ("input.npy"), holding `data`.
inline std::string write_input(const std::uint8_t* data, std::size_t size, const std::string& name) {
    const auto dir = std::filesystem::temp_directory_path() / ("wengert-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto path = dir / name;
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                   static_cast<std::streamsize>(size));
    return path.string();
}

}  // namespace wengert::fuzzing
