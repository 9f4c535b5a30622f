// wengert language: the interpreter. It loads .wg files (with their imports and the standard
// library), and runs a `def` on tensors by building the tape from engine ops.
//
// Note [Paths]
// Every named value and every layer has a path: the names of the statements being executed,
// outermost first, joined by dots. In the model function the statement `h1 = relu(dense(256)(x))`
// names its value "h1", and the dense layer created and applied inside it "h1.dense" (a second
// dense in the same statement is "h1.dense_1"), so its parameters are "h1.dense.w" and
// "h1.dense.b". A function called from a statement `a = block(x)` runs its own statements under
// "a": "a.h", "a.h.dense.w". A layer bound to a name (`enc = attention_qkv(64)`) takes that
// name as its path, and keeps it wherever it is applied, directly or inside combinators
// (`serial(enc)` does not rename it: Note [Parameter names] in wengert/layers.hpp): reusing a
// layer value shares its parameters, in any order of its uses. Running the model again (the next training step) rebuilds the same paths, so a
// call site reuses its own parameters. A `param` declaration's parameter is named as declared.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "wengert/dsl/ast.hpp"
#include "wengert/dsl/diagnostics.hpp"
#include "wengert/dsl/value.hpp"
#include "wengert/params.hpp"

namespace wengert::dsl {

// Note [Element limit] in the language: a tensor whose size the model gives (a creation op's
// result, zeros(n) or alibi_bias(h, lq, lk); a parameter; an input `check` makes from an
// annotation) has at most kMaxElements elements, 2^28 (1 GiB of f32): a larger one is an error
// at its place in the source before anything is allocated (docs/dsl.md, "Limits"). Tensors
// sized by data (a batch's activations) have no such limit.
constexpr std::int64_t kMaxElements = std::int64_t{1} << 28;

struct InterpreterOptions {
    std::uint64_t seed = 1;
    DType dtype = DType::f32;
    // Where `import name` finds the standard library; empty means the built-in default.
    std::string stdlib_dir;
    // Loading for `wengert check`: a call whose arguments do not fit its callee's signature
    // (Note [Signatures]) is reported and does not stop the load, since the check's run meets
    // the same call, skips its statement and goes on to find the other errors. Any other
    // error before running (a name that does not resolve) still stops it.
    bool check = false;
};

// Where training is, for schedules used as numbers in a model function (Note [Schedules] in
// dsl/src/schedules.hpp): the optimizer step being taken (0 for the first), of how many.
struct TrainingProgress {
    std::int64_t step = 0;
    std::int64_t steps_per_epoch = 1;
    std::int64_t total_steps = 1;
};

// What one run of a model function produced.
struct RunResult {
    std::vector<std::pair<std::string, Var>> losses;    // every `loss` term and layer penalty, in order
    std::vector<std::pair<std::string, Var>> metrics;
    std::vector<Value> outputs;                          // the function's return values
    Var objective;                                       // the sum of the losses (undefined if none)
    // the value of every schedule the run used as a number, by the path of the statement that
    // used it ("trace" for `loss trace = piecewise(...) * trace(Q)`), in order
    std::vector<std::pair<std::string, double>> schedules;
};

struct NamedValue {
    std::string path;
    Value value;
    Location loc;
};

class Interpreter {
public:
    Interpreter(DiagnosticSink& sink, ParamStore& params, InterpreterOptions options = {});
    ~Interpreter();

    // Parses `path` and everything it imports; reports syntax and declaration errors to the
    // sink. Returns false when there were errors.
    bool load_file(const std::string& path);
    // The same, for text already in memory (tests).
    bool load_source(const std::string& path, const std::string& text);

    // The declarations of the loaded main file.
    const Module& main_module() const;
    // Every loaded module: the main file first, then imports and the standard library.
    std::vector<const Module*> modules() const;
    // Rewrites every error message reported in check mode (the check's symbolic sizes).
    void set_message_filter(MessageFilter filter);
    const FunctionDef* find_function(const std::string& name) const;
    // The train block of the main file (the first, if several); null when it has none.
    const TrainBlock* train_block() const;
    const ParamDecl* find_param_decl(const std::string& name) const;

    // Runs function `name` on `inputs` on the current tape, in `mode`. Throws EvalError. An
    // undefined tensor among the inputs is an absent argument: the statements that read it are
    // skipped, and a return value that needs it is an error (Note [Absent inputs]).
    RunResult run(const std::string& name, const std::vector<Tensor>& inputs, Mode mode);
    // In check mode a failing statement is reported to the sink instead of thrown, and the
    // statements that do not depend on it still run.
    void set_check_mode(bool on);
    // Values named during the last run, in execution order, then the inspected values asked for
    // with want_values that the run computed.
    const std::vector<NamedValue>& named_values() const { return named_; }
    // Values that layers compute only on request, such as the attention weights
    // "h1.attention.weights" (Note [Inspected values] in wengert/layers.hpp): the runs from now
    // on compute these and add them to named_values().
    void want_values(std::set<std::string> names) { wanted_ = std::move(names); }
    // The names of the values that layers offered during the last run, wanted or not.
    const std::vector<std::string>& offered_values() const { return offered_; }

    // Evaluates a top-level expression (a train block setting) in the global scope.
    Value eval_global(const Expr& expr);

    // Where training is: the step schedules used as numbers take their value at.
    void set_progress(TrainingProgress progress) { progress_ = progress; }
    const TrainingProgress& progress() const { return progress_; }

    ParamStore& params() { return params_; }
    const InterpreterOptions& options() const { return options_; }
    // The seed the model's randomness draws from (parameters are created lazily, at their first
    // use in a run): `wengert train` reads it from the train block of the file it loaded. The
    // constants evaluated so far are evaluated again under it, so the numbers are those of a
    // fresh load with this seed (with the process's generator seeded as the trainer seeds it,
    // manual_seed). Parameters already created are an error: they drew from the
    // seed before.
    void set_seed(std::uint64_t seed);
    DiagnosticSink& sink() { return sink_; }

    // What `wengert help NAME` shows of a name the loaded files can call: its signature (Note
    // [Signatures] in value.hpp), and where it is defined (no file: a builtin). None when
    // nothing callable has that name.
    struct Callable {
        const Signature* signature;
        Location defined_at;
    };
    std::optional<Callable> find_callable(const std::string& name) const;
    // The names find_callable finds, sorted: the builtins' (builtins = true) or the loaded
    // files' defs and layers (the standard library's among them).
    std::vector<std::string> callable_names(bool builtins) const;

    // ---- used by builtins ----
    Value call(const Value& callee, CallArgs& args);
    // A value used where a layer is expected: a layer, or a function that can act as one.
    LayerPtr as_layer(const Value& value, Location loc);
    Var as_tensor(const Value& value, Location loc, const char* what);
    LayerContext& layer_context();
    // Names an unnamed layer at the current path, as it is applied.
    void name_layer(Layer& layer);
    std::int64_t current_batch() const { return batch_; }
    void record_loss(const std::string& name, Var value);

    struct Impl;

private:
    bool finish_load();
    DiagnosticSink& sink_;
    ParamStore& params_;
    InterpreterOptions options_;
    std::unique_ptr<Impl> impl_;
    std::vector<NamedValue> named_;
    std::set<std::string> wanted_;
    std::vector<std::string> offered_;
    std::int64_t batch_ = 0;
    TrainingProgress progress_;
};

// Lists every builtin name (for "did you mean" and the docs).
std::vector<std::string> builtin_names();

}  // namespace wengert::dsl
