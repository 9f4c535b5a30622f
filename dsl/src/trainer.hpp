// Internal: a training run of a train block's settings, from the folder it takes to its last
// checkpoint (train() in train.cpp drives it; the Reporter of reporter.hpp says what it does).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "comm.hpp"
#include "data.hpp"
#include "grad_reducer.hpp"
#include "reporter.hpp"
#include "schedules.hpp"
#include "train.hpp"
#include "wengert/json.hpp"
#include "wengert/optim.hpp"

namespace wengert::dsl {

// Running means over an epoch, weighted by batch size.
struct RunningMeans {
    NamedNumbers sums;
    std::int64_t examples = 0;
    void add(const std::string& name, double value, std::int64_t n);
    double mean(const std::string& name) const;
};

// One run, in its phases: constructed, it holds its checkpoint folder (Note [One run per
// folder]), its data and its optimizer; initialise() creates the parameters the run starts
// from; check_evaluation() runs the evaluation pass once before the first step; run() trains,
// checkpoints and watches the evaluation (Note [Training control]) to the end.
class Trainer {
public:
    Trainer(Interpreter& in, const std::string& model_path, const std::string& model_text, const TrainSettings& settings,
            const TrainOverrides& overrides, const DataOptions& data_options);

    // The parameters the run starts from: the model's initialisation or --init's values, or
    // with --resume the checkpoint's, with its optimizer state and where it stopped; under
    // data-parallel training rank 0's on every process.
    void initialise();
    // True, having said why, when a resumed run has nothing left to do.
    bool nothing_to_do() const;
    // Note [Bad rows]: a row of the evaluation data the model cannot take is found before the
    // first step, and the names the training control watches are checked against the pass's.
    void check_evaluation();
    // What the run trains, for the Reporter.
    RunPlan plan() const;
    // Where the metrics log goes: none ("") on processes other than rank 0.
    std::string log_path() const { return lead_ ? s_.log : std::string(); }
    // Trains to the last step (or an early stop), saying what it does through `reporter`.
    void run(Reporter& reporter);

private:
    // constructing
    void take_folder();
    void load_data(const DataOptions& options);
    void set_up_optimizer();
    void check_monitors() const;
    // initialise()
    void resume();
    void check_resumable(const LoadedCheckpoint& ck);
    void apply_control(const Json& control, const std::string& where);
    void share_state();
    // run()
    void begin_epoch(std::int64_t step, Reporter& reporter);
    StepReport take_step(std::int64_t step);
    RunResult forward(const std::vector<Tensor>& batch, std::span<const std::int64_t> rows, const std::string& where);
    StepReport step_values(const RunResult& r, bool has_rows);
    std::string backward(Tape& tape, const RunResult& r, const StepReport& values, double share, const std::string& where);
    [[noreturn]] void replay(const std::vector<Tensor>& batch, std::uint64_t rng_seed, std::uint64_t rng_offset,
                             const std::string& where, const std::string& bad);
    void reduce(StepReport& values, double share);
    void update(StepReport& values, const std::string& where);
    void record(StepReport& values, std::int64_t count);
    EpochReport end_epoch(std::int64_t step, const StepReport& last, Reporter& reporter);
    EvalSummary evaluate_epoch(std::int64_t step, Reporter& reporter);
    void watch(const EvalSummary& eval, std::int64_t step, EpochReport& report);
    // checkpoints
    bool end_of_epoch(std::int64_t step) const;
    bool checkpoint_due(std::int64_t step) const;
    CheckpointInfo checkpoint_info(std::int64_t step) const;
    Json control_state() const;
    void save(std::int64_t step, Reporter& reporter);
    void save_best(std::int64_t step);
    void finish() const;

    Interpreter& in_;
    ParamStore& params_;
    TrainSettings s_;                      // a resumed run trains the checkpoint's function
    TrainOverrides overrides_;
    std::string model_path_, hash_, structure_;
    // Note [Data-parallel training]: rank 0 alone writes the log and checkpoints
    Communicator& comm_;
    bool distributed_ = false, lead_ = true;
    std::optional<FolderLock> lock_;
    Dataset data_;
    std::optional<Dataset> eval_data_;
    std::int64_t per_epoch_ = 1, total_ = 0;
    std::unique_ptr<Optimizer> opt_;
    std::shared_ptr<Plateau> plateau_;
    // the training control's best values so far (Note [Training control])
    std::optional<double> best_value_, stop_best_;
    std::int64_t best_epoch_ = 0, stop_bad_epochs_ = 0;
    bool stopped_early_ = false;
    // where the run starts: 0, or where a resumed run's checkpoint stopped
    std::int64_t start_step_ = 0;
    std::string optimizer_path_;           // where the optimizer's state came from, on a resumed run
    Json resumed_control_;
    std::string run_id_;
    RunningMeans running_;
    std::vector<std::int64_t> order_;      // the epoch's order of examples
    std::int64_t order_epoch_ = -1;
    GradReducer reducer_;
    std::int64_t reduced_steps_ = 0;
    // the loss terms and metrics of the last step with rows: a process without rows in a step
    // reports these, weighted by its share, 0
    NamedNumbers last_losses_, last_metrics_;
};

}  // namespace wengert::dsl
