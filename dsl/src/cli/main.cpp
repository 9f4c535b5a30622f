// The `wengert` command: train, eval, check, run, predict, gradcheck, graph and sample a .wg
// model; show and plot arrays and metrics logs. Commands of their own files are declared in cli.hpp.
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../checkpoint.hpp"
#include "../data.hpp"
#include "../train.hpp"
#include "../check.hpp"
#include "../comm.hpp"
#include "cli.hpp"
#include "wengert/dsl/interpreter.hpp"
#include "wengert/io.hpp"
#include "wengert/kernels.hpp"
#include "wengert/random.hpp"
#include "wengert/threading.hpp"

using namespace wengert;
using namespace wengert::dsl;

namespace {

// More threads than any machine has cores: a larger --threads is a mistake (3000000000 wrapped
// negative as an int).
constexpr std::int64_t kMaxThreads = 4096;

const char* kMainHelp = R"(wengert: train and run models written in the .wg language

usage: wengert <command> FILE [options]

commands:
  train FILE       train the model as its train block says
  eval FILE        evaluate a checkpoint on the evaluation data (--checkpoint DIR)
  check FILE       check the model without touching data: every named value's shape,
                   every layer's parameters, totals
  run FILE         one forward and backward on given tensors (--inputs in.npz)
  gradcheck FILE   compare the tape's gradients with finite differences in f64
  graph FILE       print the computation graph as Graphviz DOT
  predict FILE     outputs of a checkpoint's model on inputs without labels (--out y.npz)
  sample FILE      a generative model's decoded samples as a PNG grid (--out grid.png)
  show FILE.npy    a PNG of an array: heatmaps (attention per head) or an image grid
  plot FILE.jsonl  a PNG of a metrics log: every loss term and metric against step

common options:
  --threads N      threads for the engine (default: all cores or WENGERT_NUM_THREADS)
  --seed N         random seed (overrides the train block's)
  --dtype f32|f64  the precision the model runs in (default f32)
  --data DIR       where datasets are read from (default: WENGERT_DATA or the Debian
                   package's folder)
  --help           help for a command: wengert <command> --help (or wengert help <command>)

wengert help NAME [FILE] prints what a builtin, a standard-library definition or a def or
layer of FILE takes and does (wengert help softmax); wengert help names [FILE] lists them all.

wengert --version prints the version and the gemm kernels in use (WENGERT_GEMM_KERNELS=
auto|blis|skx|haswell|generic forces a set).

exit codes: 0 ok, 64 usage, 65 error in the model or training, 70 internal error, 73 checkpoint
folder in use, 74 I/O error
)";

const std::map<std::string, std::string> kCommandHelp = {
    {"train", R"(usage: wengert train FILE [--function NAME] [--epochs N] [--steps N] [--batch N] [--lr X] [--seed N]
                     [--checkpoint DIR] [--resume | --overwrite] [--log FILE] [--no-progress]
                     [--check-finite] [--init FILE|DIR [--init-partial]] [common options]

Trains the function the model's train block names (or --function NAME, with the block's
settings). Flags override the block's settings.
A progress bar on a terminal, one line per epoch otherwise; a JSONL metrics log (--log, or
DIR/metrics.jsonl with a checkpoint folder); a checkpoint at the end of every epoch.
--resume continues from DIR's checkpoint exactly as an uninterrupted run would: the function,
seed and batch it was trained with, and its metrics log cut back to the checkpoint's step.
One run trains into a folder at a time, and a folder that holds a checkpoint is refused
(exit 73) unless --resume continues it or --overwrite replaces it.
A loss, gradient or parameter that is not finite stops the run (exit 65) at the first op that
made a NaN or infinity from finite inputs, found by replaying the step with every op checked;
nothing of that step is saved. --check-finite checks every op on every step, for debugging.
--init starts from saved parameters (an .npz file, or a checkpoint folder's) with a fresh
optimizer: every parameter of the model must be there by name and shape, or with
--init-partial, those that match are loaded and the rest listed.
)"},
    {"eval", R"(usage: wengert eval FILE --checkpoint DIR [--function NAME] [--batch N] [common options]

Loads the parameters of DIR's checkpoint and reports every loss term and metric of the function
it was trained with, averaged over the evaluation data (the train block's eval_data, or the
test split of its data). --function must name that function, if given.
)"},
    {"check", R"(usage: wengert check FILE [--function NAME] [common options]

Parses and checks the model without reading any data: names, arguments, and the shape of every
value for a symbolic batch B, and the train block's settings. Checks the function the train
block names (--function another; without either, every def whose inputs are all annotated).
Prints every named value's shape and every layer's parameter count. Exits 65 when there are
errors, each printed as file:line:col with the source line.
)"},
    {"run", R"(usage: wengert run FILE --inputs in.npz [--function NAME] [--params p.npz] [--save-params p.npz]
                   [--dump NAME=out.npy ...] [--grads out.npz] [--eval] [common options]

Runs the model function once on the arrays of in.npz (matched to its parameters by name, or in
order), prints each loss term, and with a loss runs backward. --params loads every parameter
from p.npz (missing, extra or misshapen ones are an error listing them); --save-params writes
them; --dump writes a named value (e.g. h1, or a.h inside a called function); --grads writes
every parameter's gradient by name.
)"},
    {"gradcheck", R"(usage: wengert gradcheck FILE [--inputs in.npz] [--function NAME] [--max-elements N] [--eps X]
                         [common options]

Runs the model in float64 and compares the tape's gradient of the summed loss with central
finite differences for every parameter (at most N elements each, default 64), naming the worst
element. Without --inputs, random inputs are made from the function's annotations (batch 3).
)"},
    {"graph", R"(usage: wengert graph FILE [--function NAME] [--out graph.svg] [common options]

Prints the tape of one forward pass (batch B) as Graphviz DOT, with every value's op and shape,
and an edge from every input of an op, those of ops without a gradient (argmax, comparisons,
integer casts) too. --out writes it to a file instead: graph.dot as DOT text, any other
extension (svg, png, pdf) rendered by Graphviz's dot, which must be installed.
)"},
    {"predict", R"(usage: wengert predict FILE --checkpoint DIR --inputs x.npz --out y.npz [--function NAME] [--batch N]
                       [--dump NAME=out.npy ...] [common options]

Runs the function DIR's checkpoint trained (or --function NAME) in predict mode (no dropout) on
the arrays of x.npz, --batch rows at a time (default 256), and writes its return values to
y.npz: each under the name it is returned by (`return logits`), else output (output_0, ...
for several). Arguments the file does not give are absent: the statements that read them
(the loss and metrics on the labels) are skipped, and an output that needs one is an error.
--dump writes a named value, batches joined along the first axis: h1, a.h inside a called
function, or a value a layer offers, such as an attention layer's weights (B, heads, Lq, Lk),
h1.attention.weights.
)"},
    {"sample", R"(usage: wengert sample FILE --checkpoint DIR --out grid.png [--function NAME] [--n N] [--seed S]
                      [--reconstruct N | --walk] [--steps N] [--scale N] [common options]

For a generative model whose file declares `sampling = sampler(decode = decode, encode = encode,
image = (28, 28), range = (0, 1))`: decodes N codes z ~ N(0, I) (--n, default 64) with the
decode def (or --function NAME) and writes them as a PNG grid of images. --reconstruct N shows
N images of the evaluation data (the first N) beside their reconstructions decode(encode(x));
--walk decodes the codes on the line between two evaluation images' codes (--steps, default
10, per row; 8 rows). --scale: pixels per image pixel (default 2).
)"},
    {"show", R"(usage: wengert show FILE.npy --out map.png [--index I] [--images] [--scale N]

Draws an array: a 2-D array as a heatmap with a colour scale; a 3-D stack (h, Lq, Lk) as one
heatmap per map (attention per head); a 4-D (B, h, Lq, Lk) stack picks batch item --index
(default 0). --images draws (N, H, W) or (N, H, W, C) (C = 1 or 3, values in [0, 1]) as a grid of
images instead. --scale: pixels per array element.
)"},
    {"plot", R"(usage: wengert plot FILE.jsonl --out curves.png

Draws a training run's metrics log (DIR/metrics.jsonl, as train writes it): one panel per loss
term and metric, its value at every step (train) and at the end of every epoch (train means and,
with evaluation data, eval), against step.
)"},
};

// Options that take a value, per command; flags take none.
const std::map<std::string, std::set<std::string>> kValueOptions = {
    {"train", {"function", "epochs", "steps", "batch", "lr", "seed", "checkpoint", "log", "threads", "dtype", "data", "init"}},
    {"eval", {"checkpoint", "function", "batch", "threads", "dtype", "data", "seed"}},
    {"check", {"function", "threads", "dtype", "seed", "data"}},
    {"run", {"inputs", "function", "params", "save-params", "dump", "grads", "threads", "dtype", "seed", "data"}},
    {"gradcheck", {"inputs", "function", "max-elements", "eps", "threads", "seed", "data"}},
    {"graph", {"function", "out", "threads", "dtype", "seed", "data"}},
    {"predict", {"checkpoint", "inputs", "out", "function", "batch", "dump", "threads", "dtype", "seed", "data"}},
    {"sample", {"checkpoint", "out", "function", "n", "seed", "reconstruct", "steps", "scale", "threads", "dtype", "data"}},
    {"show", {"out", "index", "scale", "threads"}},
    {"plot", {"out", "threads"}},
};
const std::map<std::string, std::set<std::string>> kFlags = {
    {"train", {"resume", "overwrite", "no-progress", "check-finite", "init-partial"}}, {"eval", {}}, {"check", {}}, {"run", {"eval"}}, {"gradcheck", {}}, {"graph", {}},
    {"predict", {}}, {"sample", {"walk"}}, {"show", {"images"}}, {"plot", {}},
};

// Fills `cli` as it reads, so a usage error can still name the command.
void parse_cli(int argc, char** argv, Cli& cli) {
    if (argc < 2) throw UsageError("no command given");
    cli.command = argv[1];
    if (cli.command == "--help" || cli.command == "-h" || cli.command == "help") {
        cli.command.clear();
        cli.flags.insert("help");
        // help TOPIC [FILE]: a command, or a name a model (FILE, if given) can call (help.cpp)
        if (argc > 4) throw UsageError("help takes a command or a name, and for a name, a model file to look in");
        if (argc >= 3) cli.file = argv[2];
        if (argc == 4) cli.options["model"].push_back(argv[3]);
        return;
    }
    if (cli.command == "--version" || cli.command == "version") {
        cli.command.clear();
        cli.flags.insert("version");
        return;
    }
    if (!kValueOptions.count(cli.command)) {
        std::vector<std::string> names;
        for (const auto& [k, _] : kValueOptions) names.push_back(k);
        auto near = closest_names(cli.command, names);
        std::string command = std::move(cli.command);
        cli.command.clear();
        throw UsageError(fmt::format("unknown command '{}'{}", command,
                                     near.empty() ? "" : fmt::format("; did you mean '{}'?", near.front())));
    }
    const auto& values = kValueOptions.at(cli.command);
    const auto& flags = kFlags.at(cli.command);
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            cli.flags.insert("help");
            continue;
        }
        if (a.rfind("--", 0) == 0) {
            std::string key = a.substr(2), value;
            bool inline_value = false;
            if (auto eq = key.find('='); eq != std::string::npos && values.count(key.substr(0, eq))) {
                value = key.substr(eq + 1);
                key = key.substr(0, eq);
                inline_value = true;
            }
            if (flags.count(key)) {
                cli.flags.insert(key);
            } else if (values.count(key)) {
                if (!inline_value) {
                    if (i + 1 >= argc) throw UsageError(fmt::format("--{} needs a value", key));
                    value = argv[++i];
                }
                cli.options[key].push_back(value);
            } else {
                std::vector<std::string> known(values.begin(), values.end());
                known.insert(known.end(), flags.begin(), flags.end());
                auto near = closest_names(key, known);
                throw UsageError(fmt::format("{}: unknown option --{}{}", cli.command, key,
                                             near.empty() ? "" : fmt::format("; did you mean --{}?", near.front())));
            }
        } else if (cli.file.empty()) {
            cli.file = a;
        } else {
            throw UsageError(fmt::format("{}: unexpected argument '{}'", cli.command, a));
        }
    }
    if (cli.file.empty() && !cli.flags.count("help")) throw UsageError(fmt::format("{}: no model file given", cli.command));
}

// ------------------------------------------------------------------ commands

int cmd_check(const Cli& cli) {
    InterpreterOptions options = interpreter_options(cli);
    options.check = true;
    return with_model(cli, options, [&](Interpreter& in, ParamStore&, DiagnosticSink& sink) {
        CheckReport rep = check_model(in, cli.has("function") ? std::optional(cli.get("function")) : std::nullopt);
        print_diagnostics(sink);   // warnings too
        if (sink.has_errors()) return kExitModel;
        fmt::print("{}", rep.table);
        return kExitOk;
    });
}

int cmd_train(const Cli& cli) {
    InterpreterOptions options = interpreter_options(cli);
    return with_model(cli, options, [&](Interpreter& in, ParamStore&, DiagnosticSink&) {
        TrainOverrides o;
        o.epochs = cli.integer("epochs");
        o.steps = cli.integer("steps");
        o.batch = cli.integer("batch");
        if (auto seed = cli.integer("seed")) o.seed = static_cast<std::uint64_t>(*seed);
        o.lr = cli.number("lr");
        if (o.lr && !(*o.lr >= 0)) throw UsageError(fmt::format("--lr must be a non-negative number, got {}", cli.get("lr")));
        if (cli.has("checkpoint")) o.checkpoint = cli.get("checkpoint");
        if (cli.has("log")) o.log = cli.get("log");
        o.resume = cli.flags.count("resume") > 0;
        o.overwrite = cli.flags.count("overwrite") > 0;
        if (o.resume && o.overwrite) throw UsageError("--resume and --overwrite exclude each other");
        if (cli.has("init")) o.init = cli.get("init");
        o.init_partial = cli.flags.count("init-partial") > 0;
        if (o.init_partial && !o.init) throw UsageError("--init-partial needs --init FILE|DIR");
        if (o.init && o.resume) throw UsageError("--init and --resume exclude each other: --resume continues a run, --init starts one");
        o.function_given = cli.has("function");
        o.check_finite = cli.flags.count("check-finite") > 0;
        o.progress = cli.flags.count("no-progress") == 0;
        for (const auto* v : {&o.epochs, &o.steps, &o.batch}) {
            if (*v && **v <= 0) throw UsageError("--epochs, --steps and --batch must be positive");
        }
        TrainSettings s = read_train_settings(in, o);
        if (cli.has("function")) s.target = target_function(in, cli);
        in.set_seed(s.seed);   // the model's own seed decides parameter initialisation too
        DataOptions data;
        data.dtype = options.dtype;
        if (cli.has("data")) data.data_dir = cli.get("data");
        return reporting_model_errors([&] {
            train(in, cli.file, in.main_module().file->text(), s, o, data);
            return kExitOk;
        });
    });
}

int cmd_eval(const Cli& cli) {
    if (!cli.has("checkpoint")) throw UsageError("eval: --checkpoint DIR is required");
    return with_model(cli, interpreter_options(cli), [&](Interpreter& in, ParamStore& params, DiagnosticSink&) {
        LoadedCheckpoint ck = load_checkpoint(cli.get("checkpoint"));
        TrainOverrides o;
        TrainSettings s = read_train_settings(in, o);
        // the function the checkpoint was trained with (Note [One run per folder])
        if (cli.has("function")) s.target = target_function(in, cli);
        if (!ck.info.function.empty() && ck.info.function != s.target) {
            if (cli.has("function")) {
                throw IOError(cli.get("checkpoint"), fmt::format("the checkpoint trained function '{}', not '{}'",
                                                                 ck.info.function, s.target));
            }
            if (!in.find_function(ck.info.function)) {
                throw IOError(cli.get("checkpoint"), fmt::format("the checkpoint trained function '{}', which this model does "
                                                                 "not define", ck.info.function));
            }
            s.target = ck.info.function;
        }
        DataOptions data;
        data.dtype = in.options().dtype;
        if (cli.has("data")) data.data_dir = cli.get("data");
        std::optional<Dataset> eval_data = s.eval_data ? std::optional(load_dataset(*s.eval_data, data)) : companion_eval_dataset(*s.data, data);
        if (!eval_data) throw UsageError("eval: the train block has no eval_data and its data has no test split");
        std::int64_t batch = cli.integer("batch").value_or(s.batch);
        create_params(in, s.target, *eval_data, batch);
        assign_params(params, ck.params, ck.params_path);
        // schedules used as numbers take the checkpoint's step (Note [Schedules])
        in.set_progress(TrainingProgress{ck.info.step, std::max<std::int64_t>(1, ck.info.steps_per_epoch),
                                         std::max<std::int64_t>(1, ck.info.total_steps)});
        EvalSummary e = evaluate(in, s.target, *eval_data, batch);
        fmt::print("eval of {} on {} ({} examples, checkpoint step {})\n", s.target, eval_data->description, e.examples,
                   ck.info.step);
        fmt::print("  loss {:.6f}\n", e.objective);
        for (const auto& [name, v] : e.losses) fmt::print("  {} {:.6f}\n", name, v);
        for (const auto& [name, v] : e.metrics) fmt::print("  {} {:.6f}\n", name, v);
        return kExitOk;
    });
}

int cmd_run(const Cli& cli) {
    if (!cli.has("inputs")) throw UsageError("run: --inputs in.npz is required");
    return with_model(cli, interpreter_options(cli), [&](Interpreter& in, ParamStore& params, DiagnosticSink&) {
        std::string fname = target_function(in, cli);
        std::vector<Tensor> inputs = inputs_from_npz(in, fname, cli.get("inputs"));
        Mode mode = cli.flags.count("eval") ? Mode::eval : Mode::train;
        manual_seed(in.options().seed);
        if (cli.has("params")) {
            create_params(in, fname, inputs, mode);
            assign_params(params, load_npz(cli.get("params")), cli.get("params"));
            manual_seed(in.options().seed);
        }
        // values layers compute only when asked for (Note [Inspected values])
        const std::vector<std::string> dumps = cli.has("dump") ? cli.options.at("dump") : std::vector<std::string>{};
        std::set<std::string> wanted;
        for (const auto& spec : dumps) wanted.insert(dump_spec(spec).first);
        in.want_values(wanted);
        Tape tape;
        RunResult r = in.run(fname, inputs, mode);
        for (const auto& [name, v] : r.losses) fmt::print("loss {} = {:.9g}\n", name, v.item());
        for (const auto& [name, v] : r.metrics) fmt::print("metric {} = {:.9g}\n", name, v.item());
        if (r.objective.defined()) {
            fmt::print("objective = {:.9g}\n", r.objective.item());
            if (r.objective.requires_grad()) tape.backward(r.objective);
        }
        for (const auto& spec : dumps) {
            auto [name, path] = dump_spec(spec);
            save_npy(path, named_tensor(in, name).value());
        }
        if (cli.has("grads")) {
            NamedTensors grads;
            for (const Parameter* p : params.all()) {
                grads.emplace_back(p->name, p->grad.defined() ? p->grad : Tensor::zeros(p->value.shape(), p->value.dtype()));
            }
            save_npz(cli.get("grads"), grads);
        }
        if (cli.has("save-params")) {
            NamedTensors values;
            for (const Parameter* p : params.all()) values.emplace_back(p->name, p->value);
            save_npz(cli.get("save-params"), values);
        }
        return kExitOk;
    });
}

int cmd_gradcheck(const Cli& cli) {
    InterpreterOptions options = interpreter_options(cli, DType::f64);
    options.dtype = DType::f64;
    return with_model(cli, options, [&](Interpreter& in, ParamStore&, DiagnosticSink&) {
        std::string fname = target_function(in, cli);
        std::vector<Tensor> inputs = cli.has("inputs") ? inputs_from_npz(in, fname, cli.get("inputs")) : example_inputs(in, fname, 3, options.seed);
        std::int64_t max_elements = cli.integer("max-elements").value_or(64);
        double eps = cli.number("eps").value_or(1e-6);
        if (max_elements < 1) throw UsageError(fmt::format("--max-elements must be at least 1, got {}", max_elements));
        if (!(eps > 0 && std::isfinite(eps))) throw UsageError(fmt::format("--eps must be a positive number, got {}", cli.get("eps")));
        GradcheckReport rep = gradcheck_model(in, fname, inputs, max_elements, eps);
        fmt::print("{}", rep.table);
        return rep.ok ? kExitOk : kExitModel;
    });
}

int cmd_graph(const Cli& cli) {
    return with_model(cli, interpreter_options(cli), [&](Interpreter& in, ParamStore&, DiagnosticSink&) {
        std::string fname = target_function(in, cli);
        std::string dot = graph_dot(in, fname);
        if (cli.has("out")) write_graph(cli.get("out"), dot);
        else fmt::print("{}", dot);
        return kExitOk;
    });
}

// `wengert --version`: the version and build type, and what matrix products run on (Note [BLIS
// kernels]) with how many threads.
void print_version() {
    const char* forced = std::getenv("WENGERT_GEMM_KERNELS");
    fmt::print("wengert {} ({} build)\n", WENGERT_VERSION, WENGERT_BUILD_TYPE);
    fmt::print("gemm kernels: {} ({}; BLIS {} detects '{}'; chosen by {})\n", kern::gemm_kernels(), kern::cpu_vector_isa(),
               kern::blis_version(), kern::blis_kernels(),
               forced && *forced ? fmt::format("WENGERT_GEMM_KERNELS={}", forced) : std::string("the CPU's features"));
    std::vector<std::string> sets = kern::gemm_kernel_sets();
    fmt::print("kernel sets this CPU runs: {} (WENGERT_GEMM_KERNELS=auto|{})\n", fmt::join(sets, ", "), fmt::join(sets, "|"));
    fmt::print("threads: {}\n", max_threads());
    fmt::print("data-parallel training: {}\n", built_with_mpi() ? "Open MPI (mpirun -np N wengert train FILE)"
                                                                 : "not built (install libopenmpi-dev and rebuild)");
}

}  // namespace

// Note [Data-parallel training] in dsl/src/trainer.cpp: under mpirun every process runs this
// command; rank 0 speaks. The others keep their standard output to themselves and their
// standard error in a file, which they print (each line marked with the rank) only when they
// fail, before the failure ends every process.
struct QuietRank {
    int saved_stderr = -1;
    std::FILE* held = nullptr;

    void start() {
        std::fflush(stdout);
        std::fflush(stderr);
        if (std::FILE* null = std::fopen("/dev/null", "w")) ::dup2(::fileno(null), STDOUT_FILENO);
        held = std::tmpfile();
        if (!held) return;
        saved_stderr = ::dup(STDERR_FILENO);
        ::dup2(::fileno(held), STDERR_FILENO);
    }
    void speak(int rank) {
        if (!held || saved_stderr < 0) return;
        std::fflush(stderr);
        std::rewind(held);
        std::string text, line;
        char buffer[4096];
        std::size_t n;
        while ((n = std::fread(buffer, 1, sizeof buffer, held)) > 0) text.append(buffer, n);
        std::istringstream lines(text);
        std::string out;
        while (std::getline(lines, line)) out += fmt::format("[rank {}] {}\n", rank, line);
        if (::write(saved_stderr, out.data(), out.size()) < 0) return;
    }
};

int run_command(int argc, char** argv);

int main(int argc, char** argv) {
    try {
        init_communicator(&argc, &argv);
    } catch (const wengert::Error& e) {
        fmt::print(stderr, "wengert: error: {}\n", e.what());
        return kExitUsage;
    }
    Communicator& comm = communicator();
    if (comm.size() > 1 && !std::getenv("WENGERT_NUM_THREADS")) {
        // the processes on one machine share its cores (--threads still decides)
        const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        const int on_machine = local ? std::max(1, std::atoi(local)) : 1;
        const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        set_num_threads(std::max(1, cores / on_machine));
    }
    QuietRank quiet;
    if (comm.size() > 1 && comm.rank() != 0) quiet.start();
    int rc = run_command(argc, argv);
    std::fflush(stdout);
    std::fflush(stderr);
    if (comm.size() > 1 && rc != kExitOk) {
        // A process that failed ends them all, with its error, rather than leave them waiting.
        // The others first give rank 0 two seconds: when it failed too (a mistake every process
        // meets), its abort ends them before they repeat its error, and Open MPI 4.1's mpirun
        // can crash when several processes abort at once.
        if (comm.rank() != 0) {
            std::this_thread::sleep_for(std::chrono::seconds(2));
            quiet.speak(comm.rank());
        }
        comm.abort(rc);
    }
    finalize_communicator();
    return rc;
}

int run_command(int argc, char** argv) {
    Cli cli;
    try {
        parse_cli(argc, argv, cli);
        if (cli.flags.count("help")) {
            if (cli.command.empty() && !cli.file.empty()) {
                if (!kCommandHelp.count(cli.file)) return cmd_help(cli.file, cli.has("model") ? cli.get("model") : std::string());
                fmt::print("{}", kCommandHelp.at(cli.file));
            } else if (cli.command.empty() || !kCommandHelp.count(cli.command)) fmt::print("{}", kMainHelp);
            else fmt::print("{}", kCommandHelp.at(cli.command));
            return kExitOk;
        }
        // The kernels are chosen here, so that a WENGERT_GEMM_KERNELS this CPU cannot run is
        // refused before any work (Note [BLIS kernels]).
        try {
            kern::gemm_kernels();
        } catch (const wengert::Error& e) {
            fmt::print(stderr, "wengert: error: {}\n", e.what());
            return kExitUsage;
        }
        if (cli.flags.count("version")) {
            print_version();
            return kExitOk;
        }
        std::error_code ec;   // the non-throwing forms: a name the system rejects (too long) is an I/O error too
        // show and plot read an array or a metrics log, the others a model
        const std::string kind = cli.command == "show" ? "array file" : cli.command == "plot" ? "metrics log" : "model file";
        if (!std::filesystem::exists(cli.file, ec)) throw IOError(cli.file, ec ? ec.message() : "no such " + kind);
        if (std::filesystem::is_directory(cli.file, ec)) throw IOError(cli.file, "is a folder, not a " + kind);
        if (!std::filesystem::is_regular_file(cli.file, ec)) throw IOError(cli.file, "is not a regular file, so not a " + kind);
        if (auto threads = cli.integer("threads")) {
            if (*threads < 1) throw UsageError("--threads must be at least 1");
            if (*threads > kMaxThreads) throw UsageError(fmt::format("--threads must be at most {}", kMaxThreads));
            set_num_threads(static_cast<int>(*threads));
        }
        if (communicator().size() > 1 && cli.command != "train") {
            throw UsageError(fmt::format("only `wengert train` runs over several processes; run `wengert {}` as one", cli.command));
        }
        if (cli.command == "check") return cmd_check(cli);
        if (cli.command == "train") return cmd_train(cli);
        if (cli.command == "eval") return cmd_eval(cli);
        if (cli.command == "run") return cmd_run(cli);
        if (cli.command == "gradcheck") return cmd_gradcheck(cli);
        if (cli.command == "graph") return cmd_graph(cli);
        if (cli.command == "predict") return cmd_predict(cli);
        if (cli.command == "sample") return cmd_sample(cli);
        if (cli.command == "show") return cmd_show(cli);
        if (cli.command == "plot") return cmd_plot(cli);
    } catch (...) {
        return exit_code_for(std::current_exception(), cli.command);
    }
    return kExitUsage;   // parse_cli refuses any other command
}
