// Attention, fused and unfused. Two figures:
//   - time: one AttentionQKV forward + backward (three dense projections, pure_attention, the
//     output dense) at B = 32, T = 128, d = 256, 8 heads, f32, dropout 0 and 0.1, median of
//     bench::kRepetitions, with pure_attention fused and as the composition of primitive ops
//     it replaces; bench/attention.py times the same computation in PyTorch eager.
//   - memory: the peak resident memory one pure_attention forward + backward adds, at
//     B x h = 32 (B = 4, h = 8), T = 1024, d_head = 64, f32, dropout 0.1, fused and unfused.
//     Each runs in a fresh child process (this program with --peak fused|unfused), which reports
//     its peak resident set (VmHWM) after minus before: the high-water mark of one process
//     never goes down. (getrusage's ru_maxrss would not do: it survives exec, so a child
//     spawned from this process starts at the parent's peak.)
#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "bench.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

namespace {

// The composition pure_attention replaces (SPEC.md section 1), as a user would write it.
Var unfused_attention(Var q, Var k, Var v, std::int64_t n_heads, double p) {
    const std::int64_t batch = q.size(0), lq = q.size(1), d = q.size(2), d_head = d / n_heads;
    auto split_heads = [&](Var x) { return permute(reshape(x, Shape{batch, x.size(1), n_heads, d_head}), {0, 2, 1, 3}); };
    Var logits = matmul(split_heads(q), transpose(split_heads(k), -2, -1)) / std::sqrt(static_cast<double>(d_head));
    Var weights = dropout(softmax(logits, -1), p);
    return reshape(permute(matmul(weights, split_heads(v)), {0, 2, 1, 3}), Shape{batch, lq, d});
}

Tensor random_uniform(const Shape& shape, double limit, std::uint64_t seed) {
    Tensor t = Tensor::empty(shape, DType::f32);
    Generator(seed).fill_uniform(t, -limit, limit);
    return t;
}

// This process's peak resident set so far, in MB.
double peak_rss_mb() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;   // "VmHWM:  1234 kB"
    }
    return 0.0;
}

// One AttentionQKV forward + backward, self-attention on x, PyTorch's Linear initialisation.
void time_attention_qkv() {
    constexpr std::int64_t kBatch = 32, kLength = 128, kDim = 256, kHeads = 8;
    const double limit = 1.0 / std::sqrt(static_cast<double>(kDim));
    Tensor x = random_uniform(Shape{kBatch, kLength, kDim}, 1.0, 1);
    Tensor grad = random_uniform(Shape{kBatch, kLength, kDim}, 1.0, 2);
    std::vector<Tensor> weights, biases;
    for (std::uint64_t i = 0; i < 4; ++i) {
        weights.push_back(random_uniform(Shape{kDim, kDim}, limit, 10 + i));
        biases.push_back(random_uniform(Shape{kDim}, limit, 20 + i));
    }
    // The four variants take turns, one repetition each, so that a burst of load on the shared
    // machine hits them alike.
    struct Variant {
        bool fused;
        double p;
        std::vector<double> times;
    };
    std::vector<Variant> variants = {{true, 0.0, {}}, {true, 0.1, {}}, {false, 0.0, {}}, {false, 0.1, {}}};
    Tape tape;
    auto step = [&](const Variant& variant) {
        tape.clear();
        Var input = tape.input(x);
        std::vector<Var> w, b;
        for (int i = 0; i < 4; ++i) {
            w.push_back(tape.leaf(weights[i]));
            b.push_back(tape.leaf(biases[i]));
        }
        auto dense = [&](Var t, int i) { return matmul(t, w[i]) + b[i]; };
        Var q = dense(input, 0), k = dense(input, 1), v = dense(input, 2);
        Var attended = variant.fused ? pure_attention(q, k, v, std::nullopt, kHeads, variant.p)
                                     : unfused_attention(q, k, v, kHeads, variant.p);
        tape.backward(dense(attended, 3), grad);
    };
    for (const auto& variant : variants) step(variant);
    for (int r = 0; r < bench::kRepetitions; ++r) {
        for (auto& variant : variants) variant.times.push_back(bench::seconds([&] { step(variant); }));
    }
    fmt::print("AttentionQKV forward + backward, B = {}, T = {}, d = {}, {} heads, f32, {} threads, median of {}:\n",
               kBatch, kLength, kDim, kHeads, max_threads(), bench::kRepetitions);
    for (const auto& variant : variants) {
        fmt::print("{} dropout {}: {:.3f} ms\n", variant.fused ? "fused" : "unfused", variant.p,
                   bench::median(variant.times) * 1e3);
    }
}

// Child: the peak memory one pure_attention forward + backward adds.
int peak(bool fused) {
    constexpr std::int64_t kBatch = 4, kHeads = 8, kLength = 1024, kDHead = 64, kDim = kHeads * kDHead;
    constexpr double kDropout = 0.1;
    Tape tape;
    Var q = tape.leaf(random_uniform(Shape{kBatch, kLength, kDim}, 1.0, 1));
    Var k = tape.leaf(random_uniform(Shape{kBatch, kLength, kDim}, 1.0, 2));
    Var v = tape.leaf(random_uniform(Shape{kBatch, kLength, kDim}, 1.0, 3));
    Tensor grad = random_uniform(Shape{kBatch, kLength, kDim}, 1.0, 4);
    const double before = peak_rss_mb();
    double time = bench::seconds([&] {
        Var y = fused ? pure_attention(q, k, v, std::nullopt, kHeads, kDropout) : unfused_attention(q, k, v, kHeads, kDropout);
        tape.backward(y, grad);
    });
    fmt::print("{} peak: {:.0f} MB above the inputs ({:.0f} ms forward + backward)\n", fused ? "fused" : "unfused",
               peak_rss_mb() - before, time * 1e3);
    return 0;
}

void spawn_peak(const char* variant) {
    std::string self = "/proc/self/exe", flag = "--peak", which = variant;
    char* argv[] = {self.data(), flag.data(), which.data(), nullptr};
    pid_t pid = 0;
    if (posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, environ) != 0) {
        fmt::print("could not start {} --peak {}: {}\n", self, variant, std::strerror(errno));
        return;
    }
    int status = 0;
    waitpid(pid, &status, 0);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::string(argv[1]) == "--peak") return peak(std::string(argv[2]) == "fused");
    time_attention_qkv();
    fmt::print("pure_attention forward + backward, B x h = 4 x 8 = 32, T = 1024, d_head = 64, f32, dropout 0.1 "
               "(peak RSS delta):\n");
    std::fflush(stdout);
    spawn_peak("fused");
    spawn_peak("unfused");
}
