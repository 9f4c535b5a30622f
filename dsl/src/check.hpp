// Internal: the static check (a dry run at a symbolic batch), gradient checks of whole models,
// and the graph printer.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "wengert/dsl/interpreter.hpp"

namespace wengert::dsl {

struct CheckReport {
    std::string table;        // values and parameters, for `wengert check`
    std::int64_t total_params = 0;
};

// Note [Symbolic batch]
// The check runs the target function on zeros made from its annotations, with every symbolic
// size (B, T, ...) given a distinct prime that no integer literal of the model uses. Printed
// shapes and error messages show those primes by their names again. No data is read.
// Errors go to the interpreter's sink; every independent one is reported.
CheckReport check_model(Interpreter& in, std::optional<std::string> function);

// Inputs made from a function's annotations: floating ones uniform in [0, 1), integer ones 0,
// masks 1; symbolic sizes other than B become 3. Throws EvalError for an unannotated parameter.
std::vector<Tensor> example_inputs(Interpreter& in, const std::string& function, std::int64_t batch, std::uint64_t seed);

struct GradcheckReport {
    bool ok = true;           // every exact gradient agrees
    int surrogate = 0;        // parameters whose surrogate gradient disagrees, by design
    std::string table;
};
// f64 central differences of the summed loss against the tape, per parameter; a parameter
// behind a surrogate op is reported as such, not as a mismatch (Note [Surrogate gradients]).
GradcheckReport gradcheck_model(Interpreter& in, const std::string& function, const std::vector<Tensor>& inputs,
                                std::int64_t max_elements, double eps);

// The tape of one forward pass as Graphviz DOT.
std::string graph_dot(Interpreter& in, const std::string& function);

}  // namespace wengert::dsl
