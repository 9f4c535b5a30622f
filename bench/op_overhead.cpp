// The cost of recording one small op and running its backward: a chain of adds of 4-element
// f32 tensors, z = z + y, then one backward through all of them. Reported in µs per op
// (forward + backward). bench/op_overhead.py measures the same chain in PyTorch eager.
#include <fmt/format.h>

#include <vector>

#include "bench.hpp"
#include "wengert/ops.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

int main() {
    constexpr int kOps = 20000;
    Tensor x0 = Tensor::from(std::vector<float>{1, 2, 3, 4}, Shape{4});
    Tensor y0 = Tensor::from(std::vector<float>{0.5f, 0.25f, 0.125f, 1}, Shape{4});
    Tensor grad = Tensor::ones(Shape{4}, DType::f32);
    Tape tape;
    auto chain = [&] {
        tape.clear();
        Var x = tape.leaf(x0), y = tape.leaf(y0);
        Var z = x;
        for (int i = 0; i < kOps; ++i) z = z + y;
        tape.backward(z, grad);
    };
    chain();
    std::vector<double> times;
    for (int r = 0; r < bench::kRepetitions; ++r) times.push_back(bench::seconds(chain));
    fmt::print("wengert add+backward, 4 elements, {} threads: {:.3f} us/op (median of {} chains of {} ops)\n",
               max_threads(), bench::median(times) / kOps * 1e6, bench::kRepetitions, kOps);
}
