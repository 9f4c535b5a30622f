// models/mlp_actreg.wg built with the engine API directly, on in-memory data: Fashion-MNIST
// 784-256-256-10 ReLU, cross-entropy plus the activity penalty l2(1e-4) / batch on the second
// hidden layer, Adam lr 1e-3, batch 128, PyTorch's default Linear init. Prints the median time
// of one training step (gather the batch, record the forward, backward, Adam, zero the
// gradients), of one training epoch (shuffled, the last partial batch included) and of one
// evaluation pass over the 10k test images (no tape: loss and accuracy), in the format of
// bench/mlp_epoch.py, which measures the same in PyTorch. bench/run_mlp.sh runs both.
// The gemm kernels are the engine's choice (Note [BLIS kernels]); WENGERT_GEMM_KERNELS=blis runs
// BLIS's own, the ones PyTorch gets from the same BLIS.
// Usage: bench-mlp-step [EPOCHS [STEPS]] (defaults 3 and 200; EPOCHS 0 times steps only, e.g.
// under callgrind).
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <iterator>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "bench.hpp"
#include "wengert/io.hpp"
#include "wengert/kernels.hpp"
#include "wengert/layers.hpp"
#include "wengert/ops.hpp"
#include "wengert/optim.hpp"
#include "wengert/random.hpp"
#include "wengert/regularizers.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

namespace {

constexpr const char* kData = "/usr/share/datasets/fashion-mnist";
constexpr std::int64_t kBatch = 128;

struct Split {
    Tensor x;   // (N, 784) f32 in [0, 1]
    Tensor y;   // (N) i64
};

Split load_split(const std::string& prefix) {
    Tensor images = load_idx(fmt::format("{}/{}-images-idx3-ubyte.gz", kData, prefix));
    Tensor labels = load_idx(fmt::format("{}/{}-labels-idx1-ubyte.gz", kData, prefix));
    std::int64_t n = images.shape()[0];
    Tensor x = Tensor::empty(Shape{n, 784}, DType::f32);
    const std::uint8_t* pixels = images.contiguous().data<std::uint8_t>();
    float* out = x.data<float>();
    for (std::int64_t i = 0; i < n * 784; ++i) out[i] = static_cast<float>(pixels[i]) / 255.0f;
    return {x, labels.to(DType::i64)};
}

// The rows of t (N, ...) at `rows`, as a new (rows, ...) tensor.
Tensor gather(const Tensor& t, std::span<const std::int64_t> rows) {
    Shape shape = t.shape();
    std::size_t row_bytes = static_cast<std::size_t>(shape.numel() / shape[0]) * dtype_size(t.dtype());
    shape[0] = static_cast<std::int64_t>(rows.size());
    Tensor out = Tensor::empty(shape, t.dtype());
    const char* src = static_cast<const char*>(t.raw());
    char* dst = static_cast<char*>(out.raw());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        std::memcpy(dst + i * row_bytes, src + static_cast<std::size_t>(rows[i]) * row_bytes, row_bytes);
    }
    return out;
}

struct Model {
    ParamStore params;
    LayerContext ctx{params, 1};
    LayerPtr h1, h2, out;

    Model() {
        DenseOptions hidden;
        hidden.fused_activation = Activation::relu;
        hidden.kernel_init = Init::fan_in_uniform();
        hidden.bias_init = Init::fan_in_uniform();
        DenseOptions penalised = hidden;
        penalised.activity_regularizer = l2(1e-4).penalty;
        DenseOptions logits = hidden;
        logits.fused_activation = Activation::none;
        h1 = dense(256, hidden);
        h2 = dense(256, penalised);
        out = dense(10, logits);
        h1->set_path("h1");
        h2->set_path("h2");
        out->set_path("logits");
    }

    // The objective (cross-entropy plus the penalties the layers added) and the logits.
    std::pair<Var, Var> objective(Var x, Var y) {
        ctx.added_losses.clear();
        Var h = (*h1)(std::span(&x, 1), ctx);
        h = (*h2)(std::span(&h, 1), ctx);
        Var logits = (*out)(std::span(&h, 1), ctx);
        Var total = cross_entropy(logits, y);
        for (const auto& [name, penalty] : ctx.added_losses) total = total + penalty;
        return {total, logits};
    }
};

}  // namespace

int main(int argc, char** argv) {
    int epochs = argc > 1 ? std::atoi(argv[1]) : 3;
    int steps = argc > 2 ? std::atoi(argv[2]) : 200;
    Split train = load_split("train"), test = load_split("t10k");
    const std::int64_t n = train.x.shape()[0];
    Model model;
    Adam opt(AdamOptions{.lr = 1e-3, .eps = 1e-8});

    // The step's phases, timed separately when `phases` is given: gather, forward, backward,
    // optimizer (Adam and zeroing the gradients), and the tape's destruction.
    auto train_step = [&](std::span<const std::int64_t> rows, std::vector<double>* phases = nullptr) {
        auto clock = std::chrono::steady_clock::now();
        auto lap = [&](int phase) {
            if (!phases) return;
            auto now = std::chrono::steady_clock::now();
            (*phases)[static_cast<std::size_t>(phase)] = std::chrono::duration<double>(now - clock).count();
            clock = now;
        };
        double value = 0;
        {
            Tape tape;
            Var x = tape.input(gather(train.x, rows)), y = tape.input(gather(train.y, rows));
            lap(0);
            Var loss = model.objective(x, y).first;
            value = loss.item();
            lap(1);
            tape.backward(loss);
            lap(2);
            opt.step(model.params);
            model.params.zero_grad();
            lap(3);
        }
        lap(4);
        return value;
    };

    std::vector<std::int64_t> order = Generator(1).permutation(n);
    std::span<const std::int64_t> rows(order.data(), kBatch);
    for (int i = 0; i < 20; ++i) train_step(rows);
    std::vector<double> step_times;
    const char* phase_names[] = {"gather", "forward", "backward", "optimizer", "tape release"};
    std::vector<std::vector<double>> phase_times(std::size(phase_names));
    for (int i = 0; i < steps; ++i) {
        std::vector<double> phases(std::size(phase_names));
        step_times.push_back(bench::seconds([&] { train_step(rows, &phases); }));
        for (std::size_t k = 0; k < phases.size(); ++k) phase_times[k].push_back(phases[k]);
    }

    std::vector<double> epoch_times;
    double epoch_loss = 0;
    for (int e = 0; e < epochs; ++e) {
        order = Generator(static_cast<std::uint64_t>(100 + e)).permutation(n);
        epoch_times.push_back(bench::seconds([&] {
            double total = 0;
            for (std::int64_t first = 0; first < n; first += kBatch) {
                std::int64_t count = std::min(kBatch, n - first);
                total += train_step(std::span<const std::int64_t>(order.data() + first, static_cast<std::size_t>(count))) *
                         static_cast<double>(count);
            }
            epoch_loss = total / static_cast<double>(n);
        }));
    }

    // the eval pass is short (tens of ms) and a shared machine's noise moves it most: three
    // passes an epoch, as bench/mlp_epoch.py does
    const int eval_passes = 3 * epochs;
    std::vector<double> eval_times;
    double accuracy = 0;
    for (int e = 0; e < eval_passes; ++e) {
        eval_times.push_back(bench::seconds([&] {
            NoGrad no_grad;
            ModeGuard mode(Mode::eval);
            const std::int64_t n_test = test.x.shape()[0];
            double total = 0, correct = 0;
            for (std::int64_t first = 0; first < n_test; first += kBatch) {
                std::int64_t count = std::min(kBatch, n_test - first);
                Tape tape;
                Var x = tape.input(test.x.slice(0, first, first + count));
                Var y = tape.input(test.y.slice(0, first, first + count));
                auto [loss, logits] = model.objective(x, y);
                total += loss.item() * static_cast<double>(count);
                correct += sum(cast(eq(argmax(logits, -1), y), DType::f64)).item();
            }
            accuracy = correct / static_cast<double>(n_test);
        }));
    }

    fmt::print("wengert, {} threads, gemm kernels '{}': step {:.3f} ms (median of {})\n", max_threads(), kern::gemm_kernels(),
               bench::median(step_times) * 1e3, steps);
    std::string split;
    for (std::size_t k = 0; k < phase_times.size(); ++k) {
        split += fmt::format("{}{} {:.3f}", k ? ", " : "", phase_names[k], bench::median(phase_times[k]) * 1e3);
    }
    fmt::print("wengert, {} threads: step phases in ms (medians): {}\n", max_threads(), split);
    if (epochs > 0) {
        fmt::print("wengert, {} threads: epoch {:.3f} s (median of {}; train loss {:.4f})\n", max_threads(),
                   bench::median(epoch_times), epochs, epoch_loss);
        fmt::print("wengert, {} threads: eval {:.3f} s (median of {}; test accuracy {:.4f})\n", max_threads(),
                   bench::median(eval_times), eval_passes, accuracy);
    }
}
