// Internal: what a training run says as it goes: a progress bar on a terminal (Note [A bar that
// fits] in progress.hpp), a line per epoch on standard output, and the JSONL metrics log. The
// Trainer (trainer.hpp) decides what happened; the Reporter only says it.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "train.hpp"

namespace wengert::dsl {

// Numbers by name, in the order the model names them (loss terms, metrics, learning rates).
using NamedNumbers = std::vector<std::pair<std::string, double>>;

// What a run trains, as its first line says it.
struct RunPlan {
    std::string target;                 // the function trained
    std::string data;                   // the training data's description
    std::int64_t examples = 0;
    std::int64_t batch = 0;
    std::int64_t steps_per_epoch = 1;
    std::int64_t total_steps = 1;
    std::int64_t start_step = 0;        // 0, or the step of the checkpoint a resumed run continues
};

// One optimizer step, as the log records it and the bar shows it.
struct StepReport {
    std::int64_t step = 0;              // counted from 0
    double lr = 0;                      // the lr the step used
    NamedNumbers group_lrs;             // each parameter group's, by its label
    NamedNumbers schedules;             // the schedules the run used as numbers, by path
    double loss = 0;                    // the objective on the (global) batch
    NamedNumbers losses, metrics;       // its loss terms and metrics
    NamedNumbers loss_means, metric_means;   // the epoch's running means so far, for the bar
    std::int64_t epoch_examples = 0;    // the examples of the epoch so far
};

// The end of an epoch, or of a run that stops mid-epoch, as its line and log record say it.
struct EpochReport {
    std::int64_t epoch = 0;             // counted from 1
    std::int64_t step = 0;              // the steps taken so far
    std::optional<std::int64_t> partial;   // the epoch's steps taken, when the run stops mid-epoch
    double loss = 0;                    // the means over the epoch's training examples
    NamedNumbers losses, metrics;
    std::int64_t examples = 0;
    std::optional<EvalSummary> eval;    // the evaluation pass, when the run has evaluation data
    // what the training control did at this epoch (Note [Training control])
    std::optional<double> lr_reduced_to;
    bool best = false;
    bool stopped_early = false;
    std::vector<std::string> notices;   // said under the epoch's line
};

class Reporter {
public:
    // Opens the metrics log at `log` (none when empty): a resumed run continues it from its
    // checkpoint's step, dropping what an interrupted run wrote after it, so that the log
    // equals an uninterrupted run's; a new run replaces it. The bar is drawn when `progress`
    // and standard error is a terminal.
    Reporter(const RunPlan& plan, const std::string& log, bool resume, bool progress);

    // "training net on ... (60000 examples, batch 32, ...)", on standard error.
    void start() const;
    // The epoch's clock starts (its examples per second count from here).
    void begin_epoch();
    // The step's record in the log, and the bar redrawn.
    void step(const StepReport& r);
    // The epoch's line, the notices under it and its record in the log.
    void epoch(const EpochReport& r);
    // The log on disk: a checkpoint is written only after the log reaches its step.
    void flush();

private:
    using Clock = std::chrono::steady_clock;
    void draw_bar(const StepReport& r);

    RunPlan plan_;
    std::string log_path_;
    std::optional<std::ofstream> log_;
    bool tty_ = false;
    Clock::time_point run_start_ = Clock::now(), epoch_start_ = Clock::now();
    std::int64_t steps_this_run_ = 0;
    double epoch_seconds_ = 0;          // the epoch's training so far, up to its last step's report
};

}  // namespace wengert::dsl
