#include "support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "wengert/io.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl::testing {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path.string());
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void write_text(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::vector<fs::path> wg_files_in(const fs::path& dir) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
        if (entry.is_regular_file() && entry.path().extension() == ".wg") files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

TempDir::TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("wengert-dsl-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
}

namespace {

std::string quoted(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

// Runs `prefix WENGERT_CLI args` in a shell, in `cwd` when given.
CliResult run_command(const std::vector<std::string>& prefix, const std::vector<std::string>& args, const fs::path& cwd) {
    TempDir capture;
    std::vector<std::string> words;
    if (!cwd.empty()) words = {"cd", quoted(cwd.string()), "&&"};
    words.insert(words.end(), prefix.begin(), prefix.end());
    words.push_back(quoted(WENGERT_CLI));
    for (const auto& a : args) words.push_back(quoted(a));
    words.push_back(">" + quoted((capture.path / "out").string()));
    words.push_back("2>" + quoted((capture.path / "err").string()));
    words.push_back("</dev/null");
    std::string command;
    for (const auto& w : words) {
        command.append(w);
        command.push_back(' ');
    }
    int status = std::system(command.c_str());
    CliResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_text(capture.path / "out");
    r.err = read_text(capture.path / "err");
    return r;
}

}  // namespace

CliResult run_wengert(const std::vector<std::string>& args, const fs::path& cwd) { return run_command({}, args, cwd); }

CliResult run_wengert_in_memory(std::size_t kib, const std::vector<std::string>& args, const fs::path& cwd) {
    return run_command({"ulimit", "-v", std::to_string(kib), "&&"}, args, cwd);
}

std::string normalize_paths(std::string text, const fs::path& dir) {
    auto replace_all = [&](const std::string& from, const std::string& to) {
        for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
            text.replace(at, from.size(), to);
        }
    };
    replace_all(std::string(WENGERT_STDLIB_DIR), "<std>");
    replace_all(dir.string() + "/", "");
    return text;
}

void write_dataset(const fs::path& path, std::int64_t n, std::int64_t features, std::int64_t classes, std::uint64_t seed,
                   DType dtype) {
    Generator gen(seed);
    Tensor x = Tensor::zeros(Shape{n, features}, dtype);
    gen.fill_uniform(x, -1.0, 1.0);
    Tensor draws = Tensor::zeros(Shape{n}, DType::f64);
    gen.fill_uniform(draws, 0.0, static_cast<double>(classes));
    Tensor y = Tensor::zeros(Shape{n}, DType::i64);
    for (std::int64_t i = 0; i < n; ++i) {
        y.data<std::int64_t>()[i] = std::min<std::int64_t>(classes - 1, static_cast<std::int64_t>(draws.data<double>()[i]));
    }
    save_npz(path.string(), {{"x", x}, {"y", y}});
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

InterpreterOptions test_interpreter_options() {
    InterpreterOptions o;
    o.stdlib_dir = WENGERT_STDLIB_DIR;
    return o;
}

}  // namespace wengert::dsl::testing
