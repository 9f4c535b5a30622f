// Helpers shared by the language's semantic and CLI tests: files, temporary folders, and
// running the built `wengert` binary.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "wengert/dsl/interpreter.hpp"

namespace wengert::dsl::testing {

std::string read_text(const std::filesystem::path& path);
void write_text(const std::filesystem::path& path, const std::string& text);
// The .wg files directly in `dir`, sorted.
std::vector<std::filesystem::path> wg_files_in(const std::filesystem::path& dir);

// Sets WENGERT_GEMM_KERNELS for the commands run_wengert runs while it lives.
struct GemmKernelsEnv {
    explicit GemmKernelsEnv(const std::string& value) { ::setenv("WENGERT_GEMM_KERNELS", value.c_str(), 1); }
    ~GemmKernelsEnv() { ::unsetenv("WENGERT_GEMM_KERNELS"); }
    GemmKernelsEnv(const GemmKernelsEnv&) = delete;
    GemmKernelsEnv& operator=(const GemmKernelsEnv&) = delete;
};

// A fresh folder under the system's temporary folder, removed with everything in it.
struct TempDir {
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::filesystem::path path;
};

struct CliResult {
    int exit_code = -1;
    std::string out, err;
};

// Runs the built `wengert` with `args` (in `cwd` when given) and collects its exit code,
// stdout and stderr.
CliResult run_wengert(const std::vector<std::string>& args, const std::filesystem::path& cwd = {});
// The same with its address space limited to `kib` KiB (`ulimit -v`): out of memory on purpose,
// without taking the machine's.
CliResult run_wengert_in_memory(std::size_t kib, const std::vector<std::string>& args, const std::filesystem::path& cwd = {});

// `text` with "<dir>/" removed and the standard library's folder written "<std>".
std::string normalize_paths(std::string text, const std::filesystem::path& dir);

// A classification dataset as .npz: "x" (n, features) uniform in [-1, 1) of `dtype`, and "y"
// (n,) i64 labels in [0, classes), both drawn from `seed`.
void write_dataset(const std::filesystem::path& path, std::int64_t n, std::int64_t features, std::int64_t classes,
                   std::uint64_t seed, DType dtype = DType::f32);

// The lines of `text` (without their line breaks).
std::vector<std::string> lines_of(const std::string& text);

// Interpreter options with the source tree's standard library.
InterpreterOptions test_interpreter_options();

}  // namespace wengert::dsl::testing
