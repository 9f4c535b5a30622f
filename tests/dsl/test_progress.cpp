// The training progress bar in a pseudo-terminal: redrawn in place, never wider than the
// terminal (Note [A bar that fits] in dsl/src/progress.hpp).
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "progress.hpp"
#include "support.hpp"

using namespace wengert::dsl;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

// Runs `wengert args...` with its stderr on a pseudo-terminal `columns` wide (stdout to
// /dev/null) and returns everything it wrote there.
std::string stderr_on_terminal(const std::vector<std::string>& args, unsigned short columns) {
    int master = -1, slave = -1;
    winsize size{};
    size.ws_col = columns;
    size.ws_row = 24;
    REQUIRE(::openpty(&master, &slave, nullptr, nullptr, &size) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(master);
        ::dup2(slave, STDERR_FILENO);
        int null = ::open("/dev/null", O_WRONLY);
        ::dup2(null, STDOUT_FILENO);
        std::vector<char*> argv{const_cast<char*>(WENGERT_CLI)};
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(WENGERT_CLI, argv.data());
        ::_exit(127);
    }
    ::close(slave);
    std::string out;
    char buffer[4096];
    for (;;) {
        ssize_t n = ::read(master, buffer, sizeof buffer);
        if (n > 0) out.append(buffer, static_cast<std::size_t>(n));
        else if (n < 0 && errno == EINTR) continue;
        else break;   // EIO once the child has closed the terminal
    }
    ::close(master);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    return out;
}

// The pieces of terminal output between carriage returns and line breaks, "\033[K" removed.
std::vector<std::string> screen_lines(const std::string& out) {
    std::vector<std::string> lines;
    std::string current;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out.compare(i, 3, "\033[K") == 0) {
            i += 2;
        } else if (out[i] == '\r' || out[i] == '\n') {
            if (!current.empty()) lines.push_back(current);
            current.clear();
        } else {
            current += out[i];
        }
    }
    if (!current.empty()) lines.push_back(current);
    return lines;
}

}  // namespace

TEST_CASE("fit_progress drops the least important fields first and keeps their order", "[dsl][progress]") {
    std::vector<ProgressField> fields{{"epoch 1/3  step 4/10", 0}, {"ce 0.1234", 1}, {"reg 0.5000", 3}, {"acc 0.9000", 4},
                                      {"812 ex/s", 5}, {"ETA 3s", 2}};
    CHECK(fit_progress(fields, 200) == "epoch 1/3  step 4/10  ce 0.1234  reg 0.5000  acc 0.9000  812 ex/s  ETA 3s");
    CHECK(fit_progress(fields, 70) == "epoch 1/3  step 4/10  ce 0.1234  reg 0.5000  acc 0.9000  ETA 3s");
    CHECK(fit_progress(fields, 50) == "epoch 1/3  step 4/10  ce 0.1234  ETA 3s");
    CHECK(fit_progress(fields, 30) == "epoch 1/3  step 4/10");
    CHECK(fit_progress(fields, 12) == "epoch 1/3  ");   // the first field alone, cut
}

TEST_CASE("on an 80-column terminal the progress bar redraws one line that never wraps", "[dsl][progress][cli]") {
    TempDir tmp;
    write_dataset(tmp.path / "data.npz", 64, 4, 3, 5);
    // more loss terms and metrics than 80 columns hold
    write_text(tmp.path / "net.wg", fmt::format(R"(
def net(x: f32[B, 4], y: i64[B]) {{
    logits = dense(3)(dense(16, activation = relu)(x))
    loss cross_entropy_term = cross_entropy(logits, y)
    loss logit_penalty_term = 1e-3 * mean(logits ^ 2)
    metric accuracy_metric  = accuracy(logits, y)
    metric mean_logit_size  = mean(abs(logits))
    return logits
}}

train net {{
    data      = npz_data("{}")
    optimizer = adam(lr = 1e-2)
    epochs    = 2
    batch     = 8
}}
)", (tmp.path / "data.npz").string()));
    const std::vector<std::string> args = {"train", (tmp.path / "net.wg").string()};
    for (unsigned short columns : {80, 200}) {
        INFO(columns << " columns");
        std::string out = stderr_on_terminal(args, columns);
        std::vector<std::string> bars;
        for (const std::string& line : screen_lines(out)) {
            if (line.rfind("epoch ", 0) == 0) bars.push_back(line);   // not the "training ..." line, printed once
        }
        for (const std::string& bar : bars) CHECK(bar.size() < columns);
        REQUIRE(bars.size() == 16);   // one redraw per step: 2 epochs of 8 steps
        CHECK(bars.back().rfind("epoch 2/2  step 8/8  cross_entropy_term ", 0) == 0);
        // every field fits at 200 columns; at 80 the speed and the metrics give way
        CHECK((bars.back().find(" ex/s") != std::string::npos) == (columns == 200));
        CHECK(bars.back().find("ETA ") != std::string::npos);
    }
}
