// What the `wengert` command's files share: the parsed command line, usage errors and exit
// codes, and the steps every command that loads a model takes (main.cpp parses and dispatches;
// each command of its own file, predict.cpp, sample.cpp, show.cpp, plot.cpp, is one function).
#pragma once

#include <fmt/format.h>

#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "wengert/dsl/interpreter.hpp"
#include "../checkpoint.hpp"
#include "../train.hpp"   // create_params
#include "wengert/io.hpp"

namespace wengert::dsl {

// Note [Exit codes]
// The `wengert` command exits with sysexits.h's codes, which `wengert --help` lists and tests
// and scripts rely on. A command returns kExitOk, or kExitModel when it has reported the
// model's errors itself (reporting_model_errors, check, a failed gradient check); whatever it
// throws, exit_code_for reports and maps to a code. Only an environment the command cannot
// run in at all (MPI that does not start, WENGERT_GEMM_KERNELS this CPU cannot run) is
// refused in main.cpp before a command runs, as a usage error.
constexpr int kExitOk = 0;
constexpr int kExitUsage = 64;        // EX_USAGE: a bad command line
constexpr int kExitModel = 65;        // EX_DATAERR: an error in the model or in training
constexpr int kExitInternal = 70;     // EX_SOFTWARE: a bug in wengert
constexpr int kExitCantCreate = 73;   // EX_CANTCREAT: the checkpoint folder is in use
constexpr int kExitIO = 74;           // EX_IOERR: a file, a disk or the machine's memory

struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Cli {
    std::string command;
    std::string file;
    std::map<std::string, std::vector<std::string>> options;
    std::set<std::string> flags;

    bool has(const std::string& k) const { return options.count(k) > 0; }
    std::string get(const std::string& k) const { return options.at(k).back(); }
    std::optional<std::int64_t> integer(const std::string& k) const;
    std::optional<double> number(const std::string& k) const;
};

// Reports `failure`, what the command named `command` threw (a usage error with a pointer to
// its help), and returns the exit code it ends the process with (Note [Exit codes]).
int exit_code_for(std::exception_ptr failure, const std::string& command);

std::string read_text(const std::string& path);
void print_diagnostics(const DiagnosticSink& sink);
void report(const EvalError& e);

// Runs a command's body and reports a model error while the interpreter that owns the source
// its location points into is still alive: call it inside that interpreter's scope.
template <class Body> int reporting_model_errors(Body&& body) {
    try {
        return body();
    } catch (const EvalError& e) {
        report(e);
        return kExitModel;
    }
}

// Loads the model file into a fresh interpreter and runs body(in, params, sink) inside
// reporting_model_errors; a file that does not load prints its diagnostics.
template <class Body> int with_model(const Cli& cli, const InterpreterOptions& options, Body&& body) {
    DiagnosticSink sink;
    ParamStore params;
    Interpreter in(sink, params, options);
    return reporting_model_errors([&] {
        if (!in.load_file(cli.file)) {
            print_diagnostics(sink);
            return kExitModel;
        }
        return body(in, params, sink);
    });
}

InterpreterOptions interpreter_options(const Cli& cli, DType default_dtype = DType::f32);
// The function a command runs: --function, else the train block's target, else the only def.
std::string target_function(const Interpreter& in, const Cli& cli);
// Inputs for the target from an .npz: by parameter name when every name is there, else in order.
std::vector<Tensor> inputs_from_npz(const Interpreter& in, const std::string& fname, const std::string& path);
// --dump NAME=FILE, split; a spec without '=' is a usage error.
std::pair<std::string, std::string> dump_spec(const std::string& spec);
// The tensor named `name` in the last run (Note [Paths]), or a usage error that names the
// closest of the values the run named or its layers offered.
Var named_tensor(const Interpreter& in, const std::string& name);

// Copies every parameter the model has created from the checkpoint's, which must hold each by
// name and shape; parameters of the checkpoint the model has not created (another function's:
// the encoder, when only the decoder runs) are left. Otherwise an IOError listing the missing
// and misshapen ones.
void params_from_checkpoint(ParamStore& params, const NamedTensors& values, const std::string& source);
// Where the checkpoint's training stopped, for schedules used as numbers (Note [Schedules]).
TrainingProgress checkpoint_progress(const CheckpointInfo& info);
// The names `def` returns its values by: a returned name (`return logits`) is its own name,
// anything else output (one value) or output_i (the i-th of several).
std::vector<std::string> output_names(const FunctionDef& def);
// Rows [start, stop) of every defined tensor (an undefined one, an absent input, stays so).
std::vector<Tensor> rows_of(const std::vector<Tensor>& inputs, std::int64_t start, std::int64_t stop);
// Joins per-batch tensors along the first axis.
Tensor join_rows(const std::vector<Tensor>& parts);

// `graph --out FILE` (graph_out.cpp): FILE.dot gets the DOT text; any other extension names
// the format Graphviz's `dot` renders it to.
void write_graph(const std::string& out, const std::string& dot_text);

// The commands of their own files.
int cmd_predict(const Cli& cli);
int cmd_sample(const Cli& cli);
int cmd_show(const Cli& cli);
int cmd_plot(const Cli& cli);
// `wengert help TOPIC [FILE]` for a TOPIC that is not a command: a builtin, standard-library
// or FILE's name, or "names" (help.cpp). An empty `file`: no model, only what every model sees.
int cmd_help(const std::string& topic, const std::string& file);

}  // namespace wengert::dsl
