// conv2d forward and forward+backward at the keras-io convnet's two shapes (batch 128), and the
// max-pools after them, with GFLOP/s counting 2 multiply-adds... per product: forward 2 N OH OW
// KH KW C F, backward twice that (dx and dw; the first layer's dx is not needed and not run).
// bench/run_convnet.sh prints these beside PyTorch's on the same shapes (bench/conv_step.py).
#include <fmt/format.h>

#include <functional>
#include <vector>

#include "bench.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

namespace {

Tensor random(const Shape& s, std::uint64_t seed) {
    Tensor t = Tensor::empty(s, DType::f32);
    Generator(seed).fill_uniform(t, -1.0, 1.0);
    return t;
}

double median_ms(const std::function<void()>& f) {
    f();
    std::vector<double> times;
    for (int r = 0; r < bench::kRepetitions; ++r) times.push_back(bench::seconds(f));
    return bench::median(times) * 1e3;
}

}  // namespace

int main() {
    fmt::print("conv2d f32 NHWC, batch 128, {} threads, products on '{}' kernels, median of {} repetitions\n", max_threads(),
               kern::gemm_kernels(), bench::kRepetitions);
    fmt::print("{:<44} {:>9} {:>9}\n", "case", "ms", "GFLOP/s");
    struct Layer {
        const char* name;
        Shape x, w;
        bool input_grad;
    };
    for (const Layer& l : {Layer{"conv 1: (128,28,28,1) * (3,3,1,32)", Shape{128, 28, 28, 1}, Shape{3, 3, 1, 32}, false},
                           Layer{"conv 2: (128,13,13,32) * (3,3,32,64)", Shape{128, 13, 13, 32}, Shape{3, 3, 32, 64}, true}}) {
        Tensor x = random(l.x, 1), w = random(l.w, 2), b = random(Shape{l.w[3]}, 3);
        Conv2dOptions relu;
        relu.activation = Activation::relu;
        const double oh = static_cast<double>(l.x[1] - 2), flops = 2.0 * 128 * oh * oh * 9 * static_cast<double>(l.w[2] * l.w[3]);
        double fwd = median_ms([&] {
            Tape tape;
            conv2d(tape.input(x), tape.input(w), tape.input(b), relu);
        });
        double both = median_ms([&] {
            Tape tape;
            Var xv = l.input_grad ? tape.leaf(x) : tape.input(x);
            Var y = conv2d(xv, tape.leaf(w), tape.leaf(b), relu);
            tape.backward(y, Tensor::ones(y.shape()));
        });
        fmt::print("{:<44} {:>9.3f} {:>9.1f}\n", fmt::format("{} forward", l.name), fwd, flops / fwd * 1e-6);
        fmt::print("{:<44} {:>9.3f} {:>9.1f}\n", fmt::format("{} forward+backward", l.name), both,
                   flops * (l.input_grad ? 3 : 2) / both * 1e-6);
    }
    for (const Shape& s : {Shape{128, 26, 26, 32}, Shape{128, 11, 11, 64}}) {
        Tensor x = random(s, 4);
        double both = median_ms([&] {
            Tape tape;
            Var xv = tape.leaf(x);
            Var y = max_pool2d(xv);
            tape.backward(y, Tensor::ones(y.shape()));
        });
        fmt::print("{:<44} {:>9.3f}\n", fmt::format("max_pool2d 2 on {} forward+backward", s.str()), both);
    }
}
