// Internal: schedule records (constant_lr(), cosine_lr(), piecewise(...), ...) as the engine's
// learning-rate schedules and as numbers in loss expressions, and reduce_on_plateau's state.
//
// Note [Schedules]
// Every schedule is a factor of a base value, a function of the optimizer step (0 for the first
// update): the optimizer's lr is the base of the schedule a train block names, 1 is the base of
// a schedule used as a number in a model function (`loss trace = piecewise((5,), (1, 0),
// by = "epoch") * ...`), which takes the value of the step being trained (Interpreter::progress;
// outside training, step 0, or a checkpoint's step for `wengert eval`). Counts given in epochs
// (by = "epoch") are turned into steps with the run's steps per epoch, so epoch e's steps are
// [e * per_epoch, (e + 1) * per_epoch): boundary 5 by epoch switches at the first step of the
// sixth epoch. reduce_on_plateau is the one schedule with state (it watches an evaluation
// value at the end of each epoch): it scales the lr only, and its state is checkpointed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "wengert/dsl/interpreter.hpp"
#include "wengert/json.hpp"
#include "wengert/optim.hpp"

namespace wengert::dsl {

// The engine schedule of a schedule record (null: constant). EvalError at a bad field.
Schedule make_schedule(const Record* record, std::int64_t total_steps, std::int64_t steps_per_epoch);

// The value of a schedule record at `progress`, on base 1 (Note [Schedules]). EvalError at a
// bad field, and for reduce_on_plateau, which only the lr can take.
double schedule_value(const Record& record, const TrainingProgress& progress);

// Whether `v` is a schedule record.
bool is_schedule(const Value& v);

// An evaluation value to watch (reduce_on_plateau, early_stopping, keep_best): its name, and
// whether smaller is better.
struct Monitor {
    std::string name;          // a loss term or metric of the eval pass, or "loss" (the objective)
    std::optional<bool> minimize;   // none: "auto", settled by resolve_monitor
    double min_delta = 0;      // an improvement must beat the best by more than this
    Location loc;
};

// True when `value` improves on `best` (none: the first value always does).
bool improves(const Monitor& m, double value, std::optional<double> best);

// reduce_on_plateau(metric, factor, patience, mode, threshold, min_lr): PyTorch's
// ReduceLROnPlateau in its default "rel" threshold mode, without cooldown. step() is called
// with the monitored value at the end of each epoch.
class Plateau {
public:
    explicit Plateau(const Record& record);
    Monitor& monitor() { return monitor_; }
    const Monitor& monitor() const { return monitor_; }
    // The lr factor so far (1 until the first reduction).
    double scale() const { return scale_; }
    std::int64_t patience() const { return patience_; }
    // Takes one epoch's value; returns true when it reduced the lr.
    bool step(double value, double base_lr);
    Json state() const;
    void load_state(const Json& state);

private:
    Monitor monitor_;
    double factor_ = 0.1, threshold_ = 1e-4, min_lr_ = 0;
    std::int64_t patience_ = 10;
    std::optional<double> best_;
    std::int64_t bad_epochs_ = 0;
    double scale_ = 1.0;
};

// The Monitor of a `keep_best`/`early_stopping` setting or a reduce_on_plateau record:
// a name ("acc") or monitor("acc", mode = "max", min_delta = 0). `mode` "auto" makes a metric's
// value better when larger and a loss's when smaller; which one the name is, is only known once
// the eval pass ran: resolve_mode says.
Monitor monitor_from_value(const Value& v, Location loc, const char* setting);
// Settles an "auto" monitor against the names of an eval pass, or throws an EvalError at the
// setting naming the names there are.
void resolve_monitor(Monitor& m, const std::vector<std::string>& losses, const std::vector<std::string>& metrics,
                     const char* setting);

}  // namespace wengert::dsl
