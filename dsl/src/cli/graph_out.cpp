// `wengert graph --out FILE`: the DOT text written to FILE.dot, or rendered by Graphviz's `dot`
// into the format FILE's extension names (svg, png, pdf, ...).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli.hpp"

namespace wengert::dsl {

namespace {

// The `dot` program on PATH, or empty.
std::string find_dot() {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        if (dir.empty()) continue;
        std::string candidate = dir + "/dot";
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
}

}  // namespace

void write_graph(const std::string& out, const std::string& dot_text) {
    std::string format = std::filesystem::path(out).extension().string();
    if (format.empty() || format == ".") throw UsageError(fmt::format("graph: --out {} needs an extension: .dot, .svg, .png, .pdf", out));
    format = format.substr(1);
    if (format == "dot" || format == "gv") {
        std::ofstream file(out, std::ios::binary);
        file << dot_text;
        if (!file.flush()) throw IOError(out, fmt::format("cannot write the graph: {}", std::strerror(errno)));
        return;
    }
    const std::string dot = find_dot();
    if (dot.empty()) {
        throw IOError(out, "rendering the graph needs Graphviz's `dot`, which is not on PATH (Debian: apt-get install graphviz); "
                           "without it, `--out graph.dot` or `wengert graph FILE > graph.dot` writes the DOT text");
    }
    int pipe_fds[2];
    if (::pipe(pipe_fds) != 0) throw IOError(out, fmt::format("cannot start dot: {}", std::strerror(errno)));
    const std::string type = "-T" + format;
    pid_t pid = ::fork();
    if (pid < 0) throw IOError(out, fmt::format("cannot start dot: {}", std::strerror(errno)));
    if (pid == 0) {
        ::dup2(pipe_fds[0], STDIN_FILENO);
        ::close(pipe_fds[0]);
        ::close(pipe_fds[1]);
        ::execl(dot.c_str(), "dot", type.c_str(), "-o", out.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(pipe_fds[0]);
    const char* p = dot_text.data();
    std::size_t left = dot_text.size();
    while (left > 0) {
        ssize_t n = ::write(pipe_fds[1], p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;   // dot stopped reading: its exit status says why
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    ::close(pipe_fds[1]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw IOError(out, fmt::format("dot {} failed (exit status {}); its message is above", type,
                                       WIFEXITED(status) ? WEXITSTATUS(status) : -1));
    }
}

}  // namespace wengert::dsl
