// Elementwise throughput over 10^7 f32: add, mul and exp beside memcpy of the same bytes.
// GB/s counts bytes read plus bytes written. Each kernel allocates its output, as every
// engine op does; memcpy is shown into a preallocated buffer and into a fresh one, so the cost
// of the allocation (first-touch page faults) is visible apart from the loop.
// add_ (x += y in place) is the add loop without the allocation. exp is the op (forward only,
// nothing recorded: Note [exp in f32]), beside the generic loop it replaced in f32 (detail::map1 with
// std::exp, a libm call per element).
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "../engine/src/kernels/elementwise.hpp"
#include "bench.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;

int main() {
    constexpr std::int64_t kCount = 10'000'000;
    constexpr double kBytes = kCount * sizeof(float);
    Tensor x = Tensor::empty(Shape{kCount}, DType::f32), y = Tensor::empty(Shape{kCount}, DType::f32);
    Generator(1).fill_uniform(x, -1.0, 1.0);
    Generator(2).fill_uniform(y, -1.0, 1.0);
    Tensor copy_target = Tensor::empty(Shape{kCount}, DType::f32);
    std::memset(copy_target.raw(), 0, static_cast<std::size_t>(kBytes));
    Tensor accumulator = x.clone();

    struct Case {
        const char* name;
        double bytes;
        std::function<void()> run;
    };
    std::vector<Case> cases = {
        {"memcpy (into a preallocated buffer)", 2 * kBytes,
         [&] { std::memcpy(copy_target.raw(), x.raw(), static_cast<std::size_t>(kBytes)); }},
        {"memcpy (into a fresh buffer)", 2 * kBytes,
         [&] {
             Tensor fresh = Tensor::empty(Shape{kCount}, DType::f32);
             std::memcpy(fresh.raw(), x.raw(), static_cast<std::size_t>(kBytes));
         }},
        {"add", 3 * kBytes, [&] { kern::add(x, y); }},
        {"mul", 3 * kBytes, [&] { kern::mul(x, y); }},
        {"add_ (in place, no allocation)", 3 * kBytes, [&] { kern::add_(accumulator, y); }},
        {"exp", 2 * kBytes,
         [&] {
             Tape tape;
             NoGrad no_grad;
             exp(tape.input(x));
         }},
        {"map1 of std::exp", 2 * kBytes, [&] { detail::map1<float, float>(x, [](float v) { return std::exp(v); }); }},
    };
    fmt::print("elementwise f32 over 10^7 elements, {} threads, median of {} repetitions\n", max_threads(),
               bench::kRepetitions);
    fmt::print("{:<38} {:>10} {:>8} {:>16}\n", "kernel", "ms", "GB/s", "vs memcpy (pre)");
    double memcpy_rate = 0;
    for (const auto& c : cases) {
        c.run();
        std::vector<double> times;
        for (int r = 0; r < bench::kRepetitions; ++r) times.push_back(bench::seconds(c.run));
        double t = bench::median(times);
        double rate = c.bytes / t * 1e-9;
        if (memcpy_rate == 0) memcpy_rate = rate;
        fmt::print("{:<38} {:>10.2f} {:>8.1f} {:>15.0f}%\n", c.name, t * 1e3, rate, 100.0 * rate / memcpy_rate);
    }
}
