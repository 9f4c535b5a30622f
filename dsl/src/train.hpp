// Internal: the train block's settings, and training and evaluation for the CLI (the loops are
// in trainer.cpp, what a run says in reporter.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "data.hpp"
#include "schedules.hpp"
#include "wengert/dsl/interpreter.hpp"
#include "wengert/optim.hpp"

namespace wengert::dsl {

// Note [Training control]
// Three settings watch one value of the evaluation pass run at the end of each whole epoch (a
// run that stops mid-epoch evaluates its partial epoch but decides nothing on it; a loss
// term, a metric, or "loss", the objective), named as the pass names it; the names are checked
// against the pass that runs before training, so a misspelt one fails before the first step.
// - keep_best = "acc": when the value improves on the best so far (larger for a metric, smaller
//   for a loss, unless monitor(..., mode =) says), the checkpoint of that step is written to
//   DIR/best (a whole checkpoint: `wengert eval --checkpoint DIR/best`), before DIR's own, whose
//   manifest records the best value and epoch ("control"); DIR/best's says "role": "best".
// - early_stopping(metric, patience): after `patience` epochs without an improvement the run
//   checkpoints and stops; a resumed run that stopped early has nothing to do.
// - reduce_on_plateau(metric, ...) as the schedule: PyTorch's ReduceLROnPlateau.
// Their state (best values, epochs without improvement, the lr factor) is in the manifest, so a
// resumed run decides as the uninterrupted one would.

// Settings of a train block, after the CLI's flags override it.
struct TrainSettings {
    std::string target;                          // the function trained
    std::shared_ptr<Record> data;
    std::shared_ptr<Record> eval_data;           // null: the data's companion split, if any
    std::shared_ptr<Record> optimizer;           // adam(...) by default
    std::shared_ptr<Record> schedule;            // constant by default
    std::int64_t epochs = 1;
    std::optional<std::int64_t> steps;           // total optimizer steps; overrides epochs
    std::int64_t batch = 32;
    std::uint64_t seed = 1;
    double clip_norm = 0.0;                      // 0: no clipping
    std::string checkpoint;                      // folder; empty: no checkpoints
    std::int64_t checkpoint_every = 0;           // steps; 0: at the end of every epoch
    std::string log;                             // JSONL metrics; empty: <checkpoint>/metrics.jsonl or none
    std::vector<std::string> freeze;             // name patterns of parameters that do not train
    Location freeze_loc;
    std::vector<std::shared_ptr<Record>> groups; // group(...) records (Note [Parameter groups] in optim.hpp)
    std::optional<Monitor> keep_best;            // keep the best checkpoint by this eval value
    struct EarlyStopping {
        Monitor monitor;
        std::int64_t patience = 5;
    };
    std::optional<EarlyStopping> early_stopping;
};

// The optimizer the settings name (adam() by default) with the settings' parameter groups,
// its lr replaced by `lr` when given. EvalError at the record the engine refuses.
std::unique_ptr<Optimizer> make_optimizer(const TrainSettings& s, std::optional<double> lr, Location fallback);

// Each group pattern must match some parameter, and no parameter two groups: an EvalError at
// the group naming the first that does not (the parameters must exist).
void check_group_patterns(Interpreter& in, const TrainSettings& s);

// The freeze patterns of `s` that match none of the model's parameters: an EvalError at the
// setting naming the first, with the closest parameter names (the parameters must exist).
void check_freeze_patterns(Interpreter& in, const TrainSettings& s);

// Flags that override a train block (absent: keep the block's value).
struct TrainOverrides {
    std::optional<std::int64_t> epochs, steps, batch;
    std::optional<std::uint64_t> seed;
    std::optional<double> lr;
    std::optional<std::string> checkpoint, log;
    bool resume = false;
    bool overwrite = false;                      // replace a checkpoint already in the folder
    bool function_given = false;                 // --function: the target was chosen, not defaulted
    bool check_finite = false;                   // --check-finite: every op of every step (Note [Finite checks])
    bool progress = true;                        // a progress bar when stderr is a terminal
    std::optional<std::string> init;             // --init: start from these parameters (.npz or checkpoint folder)
    bool init_partial = false;                   // --init-partial: load what matches, say the rest
};

// Where errors about the train block as a whole point: the block (the file's start without one).
Location train_block_loc(const Interpreter& in);

// The model's declarations as a resumed run compares them (Note [Resuming a changed file] in
// trainer.cpp).
std::string model_structure(const Interpreter& in);

// Reads the model's train block (EvalError at a bad or unknown setting).
TrainSettings read_train_settings(Interpreter& in, const TrainOverrides& overrides);

// Reports every bad or unknown setting of the train block (if any) to the interpreter's sink,
// without reading data: for `wengert check`. Returns the settings it could read.
TrainSettings check_train_block(Interpreter& in);


// Runs `target` once without a tape, so that the model creates its parameters, to be matched
// against a checkpoint's, a file's or freeze patterns.
void create_params(Interpreter& in, const std::string& target, const std::vector<Tensor>& inputs, Mode mode);
// The same on the first `batch` rows of `data` (all of them when it has fewer), in eval mode.
void create_params(Interpreter& in, const std::string& target, const Dataset& data, std::int64_t batch);

struct EvalSummary {
    std::vector<std::pair<std::string, double>> losses;    // means over examples
    std::vector<std::pair<std::string, double>> metrics;
    double objective = 0;
    std::int64_t examples = 0;
};

// Runs the target over a dataset in eval mode, without gradients, batch by batch in order.
EvalSummary evaluate(Interpreter& in, const std::string& target, const Dataset& data, std::int64_t batch);

// Trains as the settings say. `model_path` and `model_text` identify the model in checkpoints.
void train(Interpreter& in, const std::string& model_path, const std::string& model_text, const TrainSettings& settings,
           const TrainOverrides& overrides, const DataOptions& data_options);

}  // namespace wengert::dsl
