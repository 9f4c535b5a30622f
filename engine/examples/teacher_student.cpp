// A student MLP learns to imitate a fixed random teacher MLP on generated data: the engine
// used as a library, with no model file. Prints the loss falling.
//
//   ./build/engine/examples/teacher_student [steps]
#include <fmt/format.h>

#include <cstdlib>

#include "wengert/layers.hpp"
#include "wengert/ops.hpp"
#include "wengert/optim.hpp"
#include "wengert/random.hpp"

using namespace wengert;

int main(int argc, char** argv) {
    int steps = argc > 1 ? std::atoi(argv[1]) : 1000;
    const std::int64_t batch = 64, d_in = 32, d_hidden = 64;

    // The teacher: fixed random weights, never trained.
    ParamStore teacher_params;
    LayerContext teacher_ctx(teacher_params, /*seed=*/7);
    auto teacher = serial({dense(d_hidden), fn_layer("tanh", 1, 1, [](auto x, auto&, auto&) { return std::vector<Var>{tanh(x[0])}; }),
                           dense(1)});
    teacher->set_path("teacher");

    // The student: a wider MLP with ReLU, trained with Adam.
    ParamStore student_params;
    LayerContext student_ctx(student_params, /*seed=*/1);
    auto student = serial({dense(128), fn_layer("relu", 1, 1, [](auto x, auto&, auto&) { return std::vector<Var>{relu(x[0])}; }),
                           dense(1)});
    student->set_path("student");
    Adam opt(AdamOptions{.lr = 3e-3});

    Generator data(42);
    for (int step = 1; step <= steps; ++step) {
        Tensor x = Tensor::empty(Shape{batch, d_in});
        data.fill_normal(x);
        Tape tape;
        Var input = tape.input(x);
        Var target;
        {
            NoGrad no_grad;
            target = detach((*teacher)(std::vector<Var>{input}, teacher_ctx));
        }
        Var prediction = (*student)(std::vector<Var>{input}, student_ctx);
        Var loss = mse(prediction, target);
        tape.backward(loss);
        opt.step(student_params);
        student_params.zero_grad();
        if (step == 1 || step % 100 == 0) fmt::print("step {:5d}  mse {:.6f}\n", step, loss.item());
    }
    return 0;
}
