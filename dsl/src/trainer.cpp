// A training run (trainer.hpp), and the evaluation pass it and `wengert eval` share.
#include "trainer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <span>

#include "wengert/dsl/ast_printer.hpp"
#include "wengert/io.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

// Note [Data-parallel training]
// Under `mpirun -np N wengert train FILE` every process runs the same model on its share of
// each global batch, as PyTorch's DDP and Horovod do; without mpirun there is one process and
// none of this happens (comm.hpp).
// - The train block's batch is the global batch. The epoch's order is drawn from the seed, the
//   same on every process; process r takes a contiguous share of each batch (share_of: the
//   first count % N processes one row more, so a last batch smaller than N leaves the last
//   processes without rows for that step; they take part with zeros). Random draws over the
//   batch axis are per example (Note [Per-example streams] in random.hpp), so the numbers do
//   not depend on N.
// - Rank 0's parameters, optimizer state and run state (initialisation, --init or checkpoint)
//   are broadcast before the first step; from then on every process applies the same update
//   to the same parameters, so they stay equal by construction.
// - Each process's gradients are weighted by its share of the batch (rows / global rows) and
//   summed across processes in buckets while backward runs (Note [Gradient buckets] in
//   grad_reducer.hpp); clipping, the optimizer step and constraints follow the sum. The loss
//   terms and metrics are summed the same way before they are logged, and evaluation splits
//   its rows across processes and sums the totals. So a run equals one process's when every
//   loss term is a mean over the batch's examples (or does not depend on the batch: a penalty
//   on weights); a term that sums over the batch without dividing by `batch` counts each
//   process's sum at its share.
// - Rank 0 alone takes the folder's lock, writes the log and the checkpoints; a resumed run
//   reads the checkpoint on rank 0, at any process count.
// - A process that fails (bad data in its share, a NaN) prints its error and ends every
//   process (MPI_Abort in main), so no process waits for it forever.

namespace fs = std::filesystem;

void RunningMeans::add(const std::string& name, double value, std::int64_t n) {
    for (auto& [k, v] : sums) {
        if (k == name) {
            v += value * static_cast<double>(n);
            return;
        }
    }
    sums.emplace_back(name, value * static_cast<double>(n));
}

double RunningMeans::mean(const std::string& name) const {
    for (const auto& [k, v] : sums) if (k == name) return v / static_cast<double>(std::max<std::int64_t>(examples, 1));
    return 0;
}

namespace {

// Note [Data-parallel training]: the rows [first, first + rows) of a batch of `count` that
// process `rank` of `size` takes: contiguous, the first count % size processes one more.
std::pair<std::int64_t, std::int64_t> share_of(std::int64_t count, int rank, int size) {
    const std::int64_t base = count / size, extra = count % size;
    return {rank * base + std::min<std::int64_t>(rank, extra), base + (rank < extra ? 1 : 0)};
}

// Rank 0's random generator on every process: it always has rows, so it drew for every batch.
void sync_generator(Communicator& comm) {
    std::uint64_t state[2] = {default_generator().seed(), default_generator().offset()};
    comm.broadcast(std::as_writable_bytes(std::span<std::uint64_t>(state, 2)));
    default_generator().set_state(state[0], state[1]);
}

// "1.2 MB", "304 kB", "96 B".
std::string format_bytes(std::int64_t bytes) {
    if (bytes >= 1000000) return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6);
    if (bytes >= 1000) return fmt::format("{:.0f} kB", static_cast<double>(bytes) / 1e3);
    return fmt::format("{} B", bytes);
}

// --init: the parameters of a file or checkpoint folder, all of them (every parameter of the
// model by name and shape) or, partial, those that match, saying what was loaded and what not.
void warm_start(ParamStore& params, const std::string& path, bool partial) {
    NamedTensors values = load_init_params(path);
    if (!partial) {
        assign_params(params, values, path);
        fmt::print("initialised all {} parameters from {}\n", values.size(), path);
        return;
    }
    PartialLoad load = assign_params_partial(params, values);
    fmt::print("initialised {} of {} parameters from {}\n", load.loaded.size(), params.size(), path);
    auto list = [](const char* what, const std::vector<std::string>& names) {
        if (!names.empty()) fmt::print("  {}: {}\n", what, fmt::join(names, ", "));
    };
    list("loaded", load.loaded);
    list("skipped from the file", load.skipped);
    list("left at their initialisers", load.left);
}

// "nan" (whatever its sign bit), "inf" or "-inf".
std::string non_finite_text(double x) { return std::isnan(x) ? "nan" : fmt::format("{}", x); }

// A NaN or infinity in a dataset's floating column is an error naming the dataset, the field
// and the row, found before training starts (not "the loss is nan" some steps later).
void check_finite_rows(const Dataset& data) {
    for (std::size_t f = 0; f < data.columns.size(); ++f) {
        const Tensor& column = data.columns[f];
        if (all_finite(column)) continue;
        std::int64_t rows = column.shape()[0];
        for (std::int64_t r = 0; r < rows; ++r) {
            Tensor row = column.select(0, r);
            if (all_finite(row)) continue;
            std::vector<double> values = row.to_doubles();
            double bad = *std::find_if(values.begin(), values.end(), [](double x) { return !std::isfinite(x); });
            throw IOError(data.description, fmt::format("row {} of '{}' holds {} (rows count from 0)", r,
                                                        f < data.fields.size() ? data.fields[f] : std::to_string(f),
                                                        non_finite_text(bad)));
        }
    }
}

// The error for a non-finite value found under Note [Finite checks]: at the expression that
// recorded the op, saying what went non-finite first (`found`, when a check after the step
// found it) and that nothing was saved.
EvalError non_finite_error(const Interpreter& in, const NonFiniteError& e, const std::string& where, const std::string& found) {
    Location loc = e.site() ? static_cast<const Expr*>(e.site())->loc : train_block_loc(in);
    std::string message = fmt::format("{}: {}{}", where, found.empty() ? "" : found + ": first, ", e.what());
    message += e.in_backward() ? " (in the backward pass)" : "";
    message += "; the parameters were not updated and the last checkpoint (if any) is intact";
    return EvalError(loc, message);
}

// Note [Bad rows]
// A row the model cannot take (a label beyond its classes, an index beyond an embedding, a
// value the model refuses) fails the whole batch it is in, and the op's error can only say
// where it is in that batch, which is shuffled. When a batch fails, each of its rows is run
// alone (without a gradient, in the same mode), and the first row that fails alone is named
// by its place in the dataset (`role` is the train setting that names the dataset), with the
// op's error at its place in the model. When every row of the batch fails alone, the dataset
// as a whole does not fit (a column of the wrong shape): the batch's error names the dataset
// without a row. When none does, the batch failed for another reason and its error stands.
[[noreturn]] void throw_bad_row(Interpreter& in, const std::string& target, const Dataset& data, const char* role,
                                std::span<const std::int64_t> rows, Mode mode, const EvalError& batch_error) {
    NoGrad no_grad;
    std::optional<EvalError> first;
    std::int64_t first_row = 0;
    std::size_t failed = 0;
    for (std::int64_t row : rows) {
        Tape tape;
        try {
            in.run(target, gather_rows(data, std::span<const std::int64_t>(&row, 1)), mode);
        } catch (const EvalError& e) {
            if (!first) {
                first = e;
                first_row = row;
            }
            ++failed;
        }
    }
    if (!first) throw batch_error;
    const bool whole = failed == rows.size() && rows.size() > 1;
    const EvalError& cause = whole ? batch_error : *first;
    EvalError error(cause.loc, whole ? fmt::format("{} {}: {}", role, data.description, cause.what())
                                     : fmt::format("{} {}, row {} (rows count from 0): {}", role, data.description, first_row,
                                                   cause.what()),
                    cause.suggestions);
    error.notes = cause.notes;
    throw error;
}

}  // namespace

EvalSummary evaluate(Interpreter& in, const std::string& target, const Dataset& data, std::int64_t batch) {
    EvalSummary summary;
    RunningMeans run;
    NoGrad no_grad;
    // Note [Data-parallel training]: each process evaluates its share of every batch, with the
    // batch's draws (an eval pass may sample too: a VAE's normal()) per example
    Communicator& comm = communicator();
    const std::int64_t n = data.size();
    bool named = false;
    auto take_names = [&](const RunResult& r) {
        if (named) return;
        for (const auto& [name, _] : r.losses) summary.losses.emplace_back(name, 0.0);
        for (const auto& [name, _] : r.metrics) summary.metrics.emplace_back(name, 0.0);
        named = true;
    };
    for (std::int64_t start = 0; start < n; start += batch) {
        const std::int64_t count = std::min(batch, n - start);
        const auto [first, share] = share_of(count, comm.rank(), comm.size());
        if (share == 0) continue;
        std::vector<std::int64_t> rows(static_cast<std::size_t>(share));
        for (std::int64_t i = 0; i < share; ++i) rows[static_cast<std::size_t>(i)] = start + first + i;
        std::optional<BatchShard> shard;
        if (comm.size() > 1) shard.emplace(count, first, share);
        Tape tape;
        RunResult r;
        try {
            r = in.run(target, gather_rows(data, rows), Mode::eval);
        } catch (const EvalError& e) {
            shard.reset();
            throw_bad_row(in, target, data, "eval_data", rows, Mode::eval, e);   // Note [Bad rows]
        }
        for (const auto& [name, v] : r.losses) run.add(name, v.item(), share);
        for (const auto& [name, v] : r.metrics) run.add(name, v.item(), share);
        if (r.objective.defined()) run.add("$objective", r.objective.item(), share);
        run.examples += share;
        take_names(r);
    }
    if (!named && n > 0) {   // more processes than rows: this one learns the names from row 0, counting nothing
        Tape tape;
        take_names(in.run(target, gather_rows(data, std::vector<std::int64_t>{0}), Mode::eval));
    }
    if (comm.size() > 1) {
        sync_generator(comm);   // a process without rows in a batch drew nothing for it
        std::vector<double> sums;
        for (const auto& [name, _] : summary.losses) sums.push_back(run.mean(name) * static_cast<double>(run.examples));
        for (const auto& [name, _] : summary.metrics) sums.push_back(run.mean(name) * static_cast<double>(run.examples));
        sums.push_back(run.mean("$objective") * static_cast<double>(run.examples));
        sums.push_back(static_cast<double>(run.examples));
        comm.allreduce_sum(sums);
        const double examples = std::max(sums.back(), 1.0);
        std::size_t k = 0;
        for (auto& [name, v] : summary.losses) v = sums[k++] / examples;
        for (auto& [name, v] : summary.metrics) v = sums[k++] / examples;
        summary.objective = sums[k] / examples;
        summary.examples = static_cast<std::int64_t>(sums.back());
        return summary;
    }
    for (auto& [name, v] : summary.losses) v = run.mean(name);
    for (auto& [name, v] : summary.metrics) v = run.mean(name);
    summary.objective = run.mean("$objective");
    summary.examples = run.examples;
    return summary;
}

// ------------------------------------------------------------------ constructing

Trainer::Trainer(Interpreter& in, const std::string& model_path, const std::string& model_text, const TrainSettings& settings,
                 const TrainOverrides& overrides, const DataOptions& data_options)
    : in_(in), params_(in.params()), s_(settings), overrides_(overrides), model_path_(model_path), hash_(text_hash(model_text)),
      structure_(model_structure(in)), comm_(communicator()), distributed_(comm_.size() > 1), lead_(comm_.rank() == 0),
      run_id_(new_run_id()), reducer_(comm_) {
    if (distributed_ && s_.batch < comm_.size()) {
        throw EvalError(train_block_loc(in_), fmt::format("train: batch {} is smaller than the {} processes that share each batch",
                                                          s_.batch, comm_.size()));
    }
    take_folder();
    load_data(data_options);
    set_up_optimizer();
    check_monitors();
}

// Note [One run per folder]: the lock first, so that a second run is refused at once
void Trainer::take_folder() {
    if (s_.checkpoint.empty() || !lead_) return;
    std::error_code ec;
    if (overrides_.resume && !fs::is_directory(s_.checkpoint, ec)) throw IOError(s_.checkpoint, "no such checkpoint folder");
    lock_.emplace(s_.checkpoint);
    if (!overrides_.resume && has_checkpoint(s_.checkpoint)) {
        if (!overrides_.overwrite) {
            std::string what = "a checkpoint";
            try {
                LoadedCheckpoint old = load_checkpoint(s_.checkpoint);
                what = fmt::format("the checkpoint of a run of {} at step {}", old.info.function.empty() ? old.info.model : old.info.function,
                                   old.info.step);
            } catch (const Error&) {
                what = "a checkpoint (unreadable)";
            }
            throw FolderInUse(s_.checkpoint, fmt::format("holds {}; pass --resume to continue it, --overwrite to replace it, "
                                                         "or give another --checkpoint folder",
                                                         what));
        }
        remove_checkpoint(s_.checkpoint);
    }
    clean_checkpoint_folder(s_.checkpoint);
}

// The training and evaluation data, and how many steps they make.
void Trainer::load_data(const DataOptions& options) {
    data_ = load_dataset(*s_.data, options);
    if (s_.eval_data) eval_data_ = load_dataset(*s_.eval_data, options);
    else eval_data_ = companion_eval_dataset(*s_.data, options);

    check_finite_rows(data_);
    if (eval_data_) check_finite_rows(*eval_data_);
    const std::int64_t n = data_.size();
    if (n == 0) throw IOError(data_.description, "the dataset is empty");
    per_epoch_ = (n - 1) / s_.batch + 1;   // the last partial batch is used
    if (s_.steps) total_ = *s_.steps;
    else if (__builtin_mul_overflow(s_.epochs, per_epoch_, &total_)) {
        throw EvalError(train_block_loc(in_), fmt::format("train: {} epochs of {} steps is more than 2^63 steps", s_.epochs, per_epoch_));
    }
}

void Trainer::set_up_optimizer() {
    opt_ = make_optimizer(s_, overrides_.lr, train_block_loc(in_));
    // Note [Schedules]: reduce_on_plateau scales every group's lr by its factor so far
    if (s_.schedule && s_.schedule->name == "reduce_on_plateau") {
        plateau_ = std::make_shared<Plateau>(*s_.schedule);
        opt_->set_schedule([plateau = plateau_](double base_lr, std::int64_t) { return base_lr * plateau->scale(); });
    } else {
        opt_->set_schedule(make_schedule(s_.schedule.get(), total_, per_epoch_));
    }
}

// What watches the evaluation pass needs one, and keep_best a folder to keep it in.
void Trainer::check_monitors() const {
    auto needs_eval = [&](const Monitor& m, const char* setting) {
        if (!eval_data_) {
            throw EvalError(m.loc, fmt::format("{} watches the evaluation pass's '{}', but this run has no evaluation data: add "
                                               "`eval_data = ...` to the train block",
                                               setting, m.name));
        }
    };
    if (plateau_) needs_eval(plateau_->monitor(), "reduce_on_plateau");
    if (s_.early_stopping) needs_eval(s_.early_stopping->monitor, "early_stopping");
    if (s_.keep_best) {
        needs_eval(*s_.keep_best, "keep_best");
        if (s_.checkpoint.empty()) {
            throw EvalError(s_.keep_best->loc, "keep_best keeps a checkpoint, but this run has no checkpoint folder: add `checkpoint = "
                                               "\"DIR\"` or pass --checkpoint DIR");
        }
    }
}

// ------------------------------------------------------------------ initialise

void Trainer::initialise() {
    manual_seed(s_.seed);
    params_.freeze(s_.freeze);
    // the parameters now, to match freeze and group patterns and --init's values against
    if (distributed_ || !s_.freeze.empty() || !s_.groups.empty() || overrides_.init) {
        create_params(in_, s_.target, data_, s_.batch);
        if (!s_.freeze.empty()) check_freeze_patterns(in_, s_);
        if (!s_.groups.empty()) check_group_patterns(in_, s_);
        if (overrides_.init && lead_) warm_start(params_, *overrides_.init, overrides_.init_partial);   // then broadcast
        manual_seed(s_.seed);
    }
    if (overrides_.resume && lead_) resume();
    if (distributed_) share_state();
}

// Note [Resuming a changed file]
// A checkpoint keeps the model's text hash and its structure: every declaration of the main
// file as an S-expression (ast_printer.hpp), one per line, the train block without the
// settings that say only how long and where to train (epochs, steps, checkpoint,
// checkpoint_every, log). --resume on a file whose text hash differs goes on when the
// structure is the same (comments, blank lines, spacing, and those settings changed), says so,
// and otherwise refuses, naming the first declaration that differs. What else must match
// (function, seed, batch, dtype, optimizer, parameters) is checked on its own, by name.
namespace {

const std::vector<std::string> kRunLengthSettings = {"epochs", "steps", "checkpoint", "checkpoint_every", "log"};

// "def with_q: the checkpoint's has `...` where this file has `...`", around the first change.
std::string first_difference(const std::string& before, const std::string& after) {
    auto lines = [](const std::string& text) {
        std::vector<std::string> out;
        std::size_t start = 0;
        while (start < text.size()) {
            std::size_t end = text.find('\n', start);
            if (end == std::string::npos) end = text.size();
            out.push_back(text.substr(start, end - start));
            start = end + 1;
        }
        return out;
    };
    std::vector<std::string> a = lines(before), b = lines(after);
    auto head = [](const std::string& line) {   // "(def with_q (x y) ..." -> "def with_q"
        std::size_t first = line.find(' ', 1);
        std::size_t second = first == std::string::npos ? std::string::npos : line.find_first_of(" )", first + 1);
        return line.substr(1, second == std::string::npos ? std::string::npos : second - 1);
    };
    auto excerpt = [](const std::string& line, std::size_t at) {
        std::size_t from = at > 30 ? at - 30 : 0;
        std::string out = line.substr(from, 70);
        return (from > 0 ? "..." : "") + out + (from + 70 < line.size() ? "..." : "");
    };
    for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        if (i >= a.size()) return fmt::format("this file adds `{}`", head(b[i]));
        if (i >= b.size()) return fmt::format("this file no longer has `{}`", head(a[i]));
        if (a[i] == b[i]) continue;
        if (head(a[i]) != head(b[i])) return fmt::format("the checkpoint's model has `{}` where this file has `{}`", head(a[i]), head(b[i]));
        std::size_t at = 0;
        while (at < a[i].size() && at < b[i].size() && a[i][at] == b[i][at]) ++at;
        return fmt::format("`{}` changed: the checkpoint's has `{}` where this file has `{}`", head(a[i]), excerpt(a[i], at), excerpt(b[i], at));
    }
    return "the declarations differ";
}

}  // namespace

std::string model_structure(const Interpreter& in) {
    std::string out;
    for (const auto& d : in.main_module().decls) {
        if (const auto* tb = d.as<TrainBlock>()) {
            out += "(train " + tb->target;
            for (const auto& kw : tb->settings) {
                if (std::find(kRunLengthSettings.begin(), kRunLengthSettings.end(), kw.name) != kRunLengthSettings.end()) continue;
                out += " :" + kw.name + " " + to_sexpr(*kw.value);
            }
            out += ")";
        } else {
            out += to_sexpr(d);
        }
        out += '\n';
    }
    return out;
}

// Rank 0 continues the run of the checkpoint folder, where its checkpoint stopped.
void Trainer::resume() {
    if (s_.checkpoint.empty()) throw IOError(model_path_, "--resume needs a checkpoint folder (--checkpoint DIR or `checkpoint = ...`)");
    LoadedCheckpoint ck = load_checkpoint(s_.checkpoint);
    check_resumable(ck);
    if (!ck.info.run_id.empty()) run_id_ = ck.info.run_id;
    create_params(in_, s_.target, data_, s_.batch);
    assign_params(params_, ck.params, ck.params_path);
    optimizer_path_ = ck.optimizer_path;
    try {
        opt_->load_state(ck.optimizer_state);
    } catch (const Error& e) {
        throw IOError(optimizer_path_, e.what());
    }
    if (opt_->steps() != ck.info.step) {
        throw IOError(optimizer_path_, fmt::format("holds the state after {} steps, but the manifest says step {}",
                                                   opt_->steps(), ck.info.step));
    }
    default_generator().set_state(ck.info.rng_seed, ck.info.rng_offset);
    start_step_ = ck.info.step;
    running_.sums = ck.info.epoch_sums;
    running_.examples = ck.info.epoch_examples;
    resumed_control_ = ck.info.control;
    apply_control(ck.info.control, (fs::path(s_.checkpoint) / "manifest.json").string());
    fmt::print(stderr, "resuming from {} at step {} (epoch {})\n", s_.checkpoint, start_step_, ck.info.epoch);
}

// The checkpoint's run must be this one: the same model (Note [Resuming a changed file]),
// dtype, seed, batch, optimizer and steps per epoch, and the same function (without
// --function, the run trains the checkpoint's).
void Trainer::check_resumable(const LoadedCheckpoint& ck) {
    const CheckpointInfo& info = ck.info;
    if (info.model_hash != hash_) {   // Note [Resuming a changed file]
        if (info.model_structure.empty()) {
            throw IOError(s_.checkpoint, fmt::format("the checkpoint was made from a different model text ({} hash {}, this "
                                                     "model {}); start a new checkpoint folder", info.model, info.model_hash, hash_));
        }
        if (info.model_structure != structure_) {
            throw IOError(s_.checkpoint, fmt::format("the model changed since the checkpoint was written, beyond comments, "
                                                     "formatting and how long to train: {}; start a new checkpoint folder",
                                                     first_difference(info.model_structure, structure_)));
        }
        fmt::print(stderr, "{} changed since the checkpoint only in comments, formatting or how long to train: resuming\n",
                   model_path_);
    }
    if (info.dtype != dtype_name(in_.options().dtype)) {
        throw IOError(s_.checkpoint, fmt::format("the checkpoint holds {} parameters but this run uses --dtype {}", info.dtype,
                                                 dtype_name(in_.options().dtype)));
    }
    if (!info.function.empty() && info.function != s_.target) {
        if (overrides_.function_given) {
            throw IOError(s_.checkpoint, fmt::format("the checkpoint trained function '{}', not '{}': resume it without "
                                                     "--function, or start a new checkpoint folder",
                                                     info.function, s_.target));
        }
        if (!in_.find_function(info.function)) {
            throw IOError(s_.checkpoint, fmt::format("the checkpoint trained function '{}', which this model does not define",
                                                     info.function));
        }
        s_.target = info.function;
    }
    if (info.seed != s_.seed) {
        throw IOError(s_.checkpoint, fmt::format("the checkpoint's run has seed {}, this run {}: resume with the same seed, or "
                                                 "start a new checkpoint folder",
                                                 info.seed, s_.seed));
    }
    if (info.batch != 0 && info.batch != s_.batch) {
        throw IOError(s_.checkpoint, fmt::format("the checkpoint's run has batch {}, this run {}: resume with the same batch, "
                                                 "or start a new checkpoint folder",
                                                 info.batch, s_.batch));
    }
    if (info.optimizer != opt_->name()) {
        throw IOError(s_.checkpoint, fmt::format("the checkpoint's run used optimizer '{}', this run '{}'", info.optimizer,
                                                 opt_->name()));
    }
    if (info.epoch != info.step / per_epoch_) {
        throw IOError(s_.checkpoint, fmt::format("the checkpoint is at step {} of epoch {}, but this data gives {} steps per "
                                                 "epoch: the dataset or batch changed since it was written",
                                                 info.step, info.epoch, per_epoch_));
    }
}

// A checkpoint's training control state (Note [Training control]).
void Trainer::apply_control(const Json& c, const std::string& where) {
    try {
        if (plateau_ && c.contains("plateau")) plateau_->load_state(c.at("plateau"));
        if (s_.keep_best && c.contains("best") && !c.at("best").at("value").is_null()) {
            best_value_ = c.at("best").at("value").as_number();
            best_epoch_ = c.at("best").at("epoch").as_int();
        }
        if (s_.early_stopping && c.contains("early_stopping")) {
            const Json& e = c.at("early_stopping");
            if (!e.at("best").is_null()) stop_best_ = e.at("best").as_number();
            stop_bad_epochs_ = e.at("bad_epochs").as_int();
            stopped_early_ = e.at("stopped").as_bool();
        }
    } catch (const Error& e) {
        throw IOError(where, fmt::format("corrupt manifest: \"control\": {}", e.what()));
    }
}

// Note [Data-parallel training]: rank 0's run state, parameters and optimizer state (its
// initialisation, warm start or checkpoint) on every process.
void Trainer::share_state() {
    Json state;
    if (lead_) {
        state["target"] = s_.target;
        state["start_step"] = start_step_;
        state["rng_seed"] = fmt::format("{}", default_generator().seed());
        state["rng_offset"] = fmt::format("{}", default_generator().offset());
        for (const auto& [name, sum] : running_.sums) state["epoch_sums"][name] = sum;
        state["epoch_examples"] = running_.examples;
        state["control"] = resumed_control_;
        state["run_id"] = run_id_;
    }
    std::string text = lead_ ? state.dump() : std::string();
    comm_.broadcast(text);
    if (!lead_) {
        state = Json::parse(text);
        if (state.at("target").as_string() != s_.target) {
            s_.target = state.at("target").as_string();
            create_params(in_, s_.target, data_, s_.batch);
        }
        start_step_ = state.at("start_step").as_int();
        default_generator().set_state(std::stoull(state.at("rng_seed").as_string()), std::stoull(state.at("rng_offset").as_string()));
        running_ = RunningMeans{};
        if (state.contains("epoch_sums")) {
            for (const auto& [name, sum] : state.at("epoch_sums").as_object()) running_.sums.emplace_back(name, sum.as_number());
        }
        running_.examples = state.at("epoch_examples").as_int();
        if (!state.at("control").is_null()) apply_control(state.at("control"), "rank 0's checkpoint");
        run_id_ = state.at("run_id").as_string();
    }
    NamedTensors values;
    for (const Parameter* p : std::as_const(params_).all()) values.emplace_back(p->name, p->value);
    broadcast_tensors(comm_, values);
    if (!lead_) assign_params(params_, values, "rank 0's parameters");
    NamedTensors opt_state = lead_ ? opt_->state() : NamedTensors{};
    broadcast_tensors(comm_, opt_state);
    if (!lead_) opt_->load_state(opt_state);
}

bool Trainer::nothing_to_do() const {
    if (stopped_early_) {
        fmt::print(stderr, "nothing to do: the run stopped early at step {} (eval {} had not improved for {} epochs)\n", start_step_,
                   s_.early_stopping->monitor.name, s_.early_stopping->patience);
        return true;
    }
    if (start_step_ >= total_) {
        fmt::print(stderr, "nothing to do: the checkpoint is at step {} of {}\n", start_step_, total_);
        return true;
    }
    return false;
}

void Trainer::check_evaluation() {
    if (!eval_data_) return;
    // Note [Bad rows]: a row of the evaluation data the model cannot take is found now,
    // not at the end of the first epoch. The random state is put back, so that the run
    // draws what it would have drawn without this pass.
    const std::uint64_t rng_seed = default_generator().seed(), rng_offset = default_generator().offset();
    in_.set_progress(TrainingProgress{start_step_, per_epoch_, total_});
    EvalSummary first = evaluate(in_, s_.target, *eval_data_, s_.batch);
    default_generator().set_state(rng_seed, rng_offset);
    // and the names the training control watches are the pass's
    std::vector<std::string> losses, metrics;
    for (const auto& [name, _] : first.losses) losses.push_back(name);
    for (const auto& [name, _] : first.metrics) metrics.push_back(name);
    if (plateau_) resolve_monitor(plateau_->monitor(), losses, metrics, "reduce_on_plateau");
    if (s_.keep_best) resolve_monitor(*s_.keep_best, losses, metrics, "keep_best");
    if (s_.early_stopping) resolve_monitor(s_.early_stopping->monitor, losses, metrics, "early_stopping");
}

RunPlan Trainer::plan() const {
    return RunPlan{s_.target, data_.description, data_.size(), s_.batch, per_epoch_, total_, start_step_};
}

// ------------------------------------------------------------------ run

void Trainer::run(Reporter& reporter) {
    reporter.start();
    for (std::int64_t step = start_step_; step < total_; ++step) {
        begin_epoch(step, reporter);
        // Note [Finite checks]: with --check-finite every op of every step is checked, and of
        // the evaluation at its end
        std::optional<FiniteChecks> checks;
        if (overrides_.check_finite) checks.emplace();
        StepReport r = take_step(step);
        reporter.step(r);
        if (end_of_epoch(step)) reporter.epoch(end_epoch(step, r, reporter));
        save(step, reporter);
        if (stopped_early_) break;
    }
    finish();
}

// A new epoch's order of examples, and its running means from zero (but a run resumed
// mid-epoch continues its checkpoint's).
void Trainer::begin_epoch(std::int64_t step, Reporter& reporter) {
    const std::int64_t epoch = step / per_epoch_;
    if (epoch == order_epoch_) return;
    order_ = epoch_order(data_.size(), s_.seed, epoch);
    order_epoch_ = epoch;
    if (step != start_step_ || step % per_epoch_ == 0) {
        running_ = RunningMeans{};
        reporter.begin_epoch();
    }
}

StepReport Trainer::take_step(std::int64_t step) {
    const std::int64_t epoch = step / per_epoch_, pos = step % per_epoch_;
    const std::int64_t first = pos * s_.batch, count = std::min(s_.batch, data_.size() - first);
    // Note [Data-parallel training]: this process's contiguous share of the global batch
    const auto [share_first, share_rows] = share_of(count, comm_.rank(), comm_.size());
    std::span<const std::int64_t> rows(order_.data() + first + share_first, static_cast<std::size_t>(share_rows));
    std::vector<Tensor> batch = share_rows > 0 ? gather_rows(data_, rows) : std::vector<Tensor>{};
    std::optional<BatchShard> shard;   // Note [Per-example streams]
    if (distributed_) shard.emplace(count, share_first, share_rows);

    const std::string where = fmt::format("step {} (epoch {}, batch {})", step + 1, epoch + 1, pos + 1);
    const std::uint64_t rng_seed = default_generator().seed(), rng_offset = default_generator().offset();
    Tape tape;
    RunResult r;
    in_.set_progress(TrainingProgress{step, per_epoch_, total_});
    if (share_rows > 0) r = forward(batch, rows, where);
    StepReport values = step_values(r, share_rows > 0);
    values.step = step;
    // this process's values; under data-parallel training summed below, each weighted by its share
    const double share = static_cast<double>(share_rows) / static_cast<double>(count);
    if (distributed_) reducer_.begin(params_);
    const std::string bad = share_rows > 0 ? backward(tape, r, values, share, where) : std::string();
    if (!bad.empty()) replay(batch, rng_seed, rng_offset, where, bad);
    if (distributed_) reduce(values, share);
    shard.reset();
    update(values, where);
    if (distributed_ && count < comm_.size()) {
        sync_generator(comm_);   // a process without rows drew nothing (Note [Per-example streams])
    }
    values.schedules = r.schedules;
    record(values, count);
    return values;
}

// The target on this process's rows of the batch, in train mode.
RunResult Trainer::forward(const std::vector<Tensor>& batch, std::span<const std::int64_t> rows, const std::string& where) {
    RunResult r;
    try {
        r = in_.run(s_.target, batch, Mode::train);
    } catch (const NonFiniteError& e) {
        throw non_finite_error(in_, e, where, "");
    } catch (const EvalError& e) {
        throw_bad_row(in_, s_.target, data_, "data", rows, Mode::train, e);   // Note [Bad rows]
    }
    if (!r.objective.defined()) {
        throw EvalError(Location{in_.main_module().file, 0, 0, 0}, fmt::format("{} defines no loss: add a `loss name = ...` statement", s_.target));
    }
    return r;
}

// The step's loss, loss terms and metrics on this process's rows; a process without rows
// reports the names of its last step with rows.
StepReport Trainer::step_values(const RunResult& r, bool has_rows) {
    StepReport values;
    if (!has_rows) {
        values.losses = last_losses_;
        values.metrics = last_metrics_;
        return values;
    }
    for (const auto& [name, v] : r.losses) values.losses.emplace_back(name, v.item());
    for (const auto& [name, v] : r.metrics) values.metrics.emplace_back(name, v.item());
    last_losses_ = values.losses;
    last_metrics_ = values.metrics;
    values.loss = r.objective.item();
    return values;
}

// The backward pass; what is not finite, if anything: the loss (naming its terms) or a
// parameter's gradient ("" when everything is).
std::string Trainer::backward(Tape& tape, const RunResult& r, const StepReport& values, double share, const std::string& where) {
    if (!std::isfinite(values.loss)) {
        std::vector<std::string> terms;
        for (const auto& [name, v] : values.losses) {
            if (!std::isfinite(v)) terms.push_back(fmt::format("'{}' is {}", name, non_finite_text(v)));
        }
        return fmt::format("the loss is {}{}", non_finite_text(values.loss),
                           terms.empty() ? "" : fmt::format(" (loss term {})", fmt::join(terms, ", ")));
    }
    try {
        if (distributed_) {
            // weighted by this process's share; each parameter's gradient is summed as
            // soon as backward finishes it (Note [Gradient buckets])
            tape.backward(r.objective, Tensor::full(Shape{}, share, r.objective.value().dtype()),
                          [&](Parameter& p) { reducer_.ready(p); });
        } else {
            tape.backward(r.objective);
        }
    } catch (const NonFiniteError& e) {
        throw non_finite_error(in_, e, where, "");
    }
    for (const Parameter* p : params_.all()) {
        if (p->grad.defined() && !all_finite(p->grad)) {
            return fmt::format("the gradient of parameter '{}' is not finite, while the loss is {:.6g}", p->name, values.loss);
        }
    }
    return "";
}

// Note [Finite checks]: the step replayed with every op checked, from the same random state,
// to name the op that made `bad`; an error either way.
void Trainer::replay(const std::vector<Tensor>& batch, std::uint64_t rng_seed, std::uint64_t rng_offset, const std::string& where,
                     const std::string& bad) {
    params_.zero_grad();
    default_generator().set_state(rng_seed, rng_offset);
    FiniteChecks replay_checks;
    try {
        Tape tape;
        RunResult again = in_.run(s_.target, batch, Mode::train);
        if (again.objective.defined() && again.objective.requires_grad()) tape.backward(again.objective);
    } catch (const NonFiniteError& e) {
        throw non_finite_error(in_, e, where, bad);
    }
    throw EvalError(train_block_loc(in_), fmt::format("{}: {}; no op made it from finite inputs when the step was "
                                                      "replayed. The parameters were not updated and the last "
                                                      "checkpoint (if any) is intact",
                                                      where, bad));
}

// Note [Data-parallel training]: the global batch's gradients, then its losses and metrics:
// the weighted sums.
void Trainer::reduce(StepReport& values, double share) {
    std::vector<double> sums;
    reducer_.finish(sums);   // one flag per parameter: whether this process had a gradient
    std::vector<double> all = {values.loss * share};
    for (const auto& [_, v] : values.losses) all.push_back(v * share);
    for (const auto& [_, v] : values.metrics) all.push_back(v * share);
    all.insert(all.end(), sums.begin(), sums.end());
    comm_.allreduce_sum(all);
    std::size_t k = 0;
    values.loss = all[k++];
    for (auto& [_, v] : values.losses) v = all[k++];
    for (auto& [_, v] : values.metrics) v = all[k++];
    reducer_.settle(all.data() + k);
    ++reduced_steps_;
}

// The optimizer's step (after clipping); a parameter the update makes non-finite stops the run.
void Trainer::update(StepReport& values, const std::string& where) {
    values.lr = opt_->current_lr();
    for (std::size_t g = 0; g < opt_->groups().size(); ++g) {
        values.group_lrs.emplace_back(opt_->groups()[g].label(), opt_->current_lr(static_cast<int>(g)));
    }
    if (s_.clip_norm > 0) clip_grad_norm(params_, s_.clip_norm);
    try {
        opt_->step(params_);
    } catch (const Error& e) {
        // step() checks the optimizer's state against the parameters: on a resumed run, the checkpoint's
        if (optimizer_path_.empty()) throw;
        throw IOError(optimizer_path_, e.what());
    }
    for (const Parameter* p : params_.all()) {
        if (!all_finite(p->value)) {
            throw EvalError(s_.optimizer ? s_.optimizer->loc : train_block_loc(in_),
                            fmt::format("{}: parameter '{}' became non-finite in the {} update from finite "
                                        "gradients (lr {:g}: too large?); nothing of this step was saved and "
                                        "the last checkpoint (if any) is intact",
                                        where, p->name, opt_->name(), values.lr));
        }
    }
    params_.zero_grad();
}

// The step's `count` examples in the epoch's running means.
void Trainer::record(StepReport& values, std::int64_t count) {
    running_.examples += count;
    running_.add("loss", values.loss, count);
    for (const auto& [name, x] : values.losses) running_.add(name, x, count);
    for (const auto& [name, x] : values.metrics) running_.add(name, x, count);
    for (const auto& [name, _] : values.losses) values.loss_means.emplace_back(name, running_.mean(name));
    for (const auto& [name, _] : values.metrics) values.metric_means.emplace_back(name, running_.mean(name));
    values.epoch_examples = running_.examples;
}

// ------------------------------------------------------------------ the end of an epoch

// The epoch's means, its evaluation pass and what the training control makes of it.
EpochReport Trainer::end_epoch(std::int64_t step, const StepReport& last, Reporter& reporter) {
    const std::int64_t pos = step % per_epoch_;
    EpochReport report;
    report.epoch = step / per_epoch_ + 1;
    report.step = step + 1;
    if (pos != per_epoch_ - 1) report.partial = pos + 1;   // the run stops mid-epoch
    report.loss = running_.mean("loss");
    report.losses = last.loss_means;
    report.metrics = last.metric_means;
    report.examples = running_.examples;
    if (!eval_data_) return report;
    report.eval = evaluate_epoch(step, reporter);
    if (!report.partial) watch(*report.eval, step, report);   // Note [Training control]: at the end of whole epochs
    return report;
}

// The evaluation pass; the epoch's training is kept, whatever its evaluation met (Note [Bad rows]).
EvalSummary Trainer::evaluate_epoch(std::int64_t step, Reporter& reporter) {
    try {
        return evaluate(in_, s_.target, *eval_data_, s_.batch);
    } catch (EvalError& e) {
        save(step, reporter);
        if (checkpoint_due(step)) {
            e.notes.push_back({train_block_loc(in_), fmt::format("the checkpoint of step {} was saved before this "
                                                                 "evaluation: --resume continues from it",
                                                                 step + 1)});
        }
        throw;
    }
}

// Note [Training control]: the plateau schedule, keep_best and early stopping take the epoch's
// evaluation.
void Trainer::watch(const EvalSummary& eval, std::int64_t step, EpochReport& report) {
    auto value_of = [&](const Monitor& m) {
        if (m.name == "loss") return eval.objective;
        for (const auto& [name, v] : eval.losses) if (name == m.name) return v;
        for (const auto& [name, v] : eval.metrics) if (name == m.name) return v;
        return std::numeric_limits<double>::quiet_NaN();
    };
    if (plateau_ && plateau_->step(value_of(plateau_->monitor()), opt_->base_lr())) {
        report.notices.push_back(fmt::format("eval {} has not improved for more than {} epochs: the lr is now {:g}",
                                             plateau_->monitor().name, plateau_->patience(), opt_->current_lr()));
        report.lr_reduced_to = opt_->current_lr();
    }
    if (s_.keep_best && improves(*s_.keep_best, value_of(*s_.keep_best), best_value_)) {
        best_value_ = value_of(*s_.keep_best);
        best_epoch_ = report.epoch;
        report.best = true;
        if (lead_) save_best(step);
    }
    if (s_.early_stopping) {
        const Monitor& m = s_.early_stopping->monitor;
        if (improves(m, value_of(m), stop_best_)) {
            stop_best_ = value_of(m);
            stop_bad_epochs_ = 0;
        } else if (++stop_bad_epochs_ >= s_.early_stopping->patience && step != total_ - 1) {
            stopped_early_ = true;
            report.notices.push_back(fmt::format("stopping early: eval {} has not improved on {:.6g} for {} epochs", m.name,
                                                 stop_best_ ? *stop_best_ : std::numeric_limits<double>::quiet_NaN(), stop_bad_epochs_));
            report.stopped_early = true;
        }
    }
}

// ------------------------------------------------------------------ checkpoints

bool Trainer::end_of_epoch(std::int64_t step) const { return step % per_epoch_ == per_epoch_ - 1 || step == total_ - 1; }

// Rank 0 checkpoints into the run's folder at the end of every epoch (or every
// checkpoint_every steps and at the last), and when the run stops early.
bool Trainer::checkpoint_due(std::int64_t step) const {
    if (!lead_ || s_.checkpoint.empty()) return false;
    if (stopped_early_) return true;
    return s_.checkpoint_every > 0 ? ((step + 1) % s_.checkpoint_every == 0 || step == total_ - 1) : end_of_epoch(step);
}

CheckpointInfo Trainer::checkpoint_info(std::int64_t step) const {
    CheckpointInfo info;
    info.run_id = run_id_;
    info.function = s_.target;
    info.batch = s_.batch;
    info.model = model_path_;
    info.model_hash = hash_;
    info.step = step + 1;
    info.epoch = (step + 1) / per_epoch_;
    info.steps_per_epoch = per_epoch_;
    info.total_steps = total_;
    info.seed = s_.seed;
    info.dtype = dtype_name(in_.options().dtype);
    info.rng_seed = default_generator().seed();
    info.rng_offset = default_generator().offset();
    info.optimizer = opt_->name();
    if (step % per_epoch_ != per_epoch_ - 1) {   // mid-epoch: the resumed run continues these means
        info.epoch_sums = running_.sums;
        info.epoch_examples = running_.examples;
    }
    info.model_structure = structure_;
    info.control = control_state();
    return info;
}

// The training control's state, for checkpoints (Note [Training control]).
Json Trainer::control_state() const {
    Json c;
    if (plateau_) c["plateau"] = plateau_->state();
    if (s_.keep_best) {
        c["best"]["metric"] = s_.keep_best->name;
        c["best"]["value"] = best_value_ ? Json(*best_value_) : Json();
        c["best"]["epoch"] = best_epoch_;
        c["best"]["dir"] = "best";
    }
    if (s_.early_stopping) {
        c["early_stopping"]["metric"] = s_.early_stopping->monitor.name;
        c["early_stopping"]["best"] = stop_best_ ? Json(*stop_best_) : Json();
        c["early_stopping"]["bad_epochs"] = stop_bad_epochs_;
        c["early_stopping"]["stopped"] = stopped_early_;
    }
    return c;
}

// The log reaches the checkpoint's step before the checkpoint does.
void Trainer::save(std::int64_t step, Reporter& reporter) {
    reporter.flush();
    if (checkpoint_due(step)) save_checkpoint(s_.checkpoint, checkpoint_info(step), params_, opt_.get());
}

// The best first, then the last that records it (Note [Training control]).
void Trainer::save_best(std::int64_t step) {
    CheckpointInfo info = checkpoint_info(step);
    info.control = Json();
    info.control["role"] = "best";
    info.control["metric"] = s_.keep_best->name;
    info.control["value"] = *best_value_;
    info.control["epoch"] = best_epoch_;
    save_checkpoint(best_checkpoint_dir(s_.checkpoint), info, params_, opt_.get());
}

void Trainer::finish() const {
    if (distributed_ && reduced_steps_ > 0) {
        fmt::print("data-parallel over {}: {} of gradients summed per step in {} bucket{}, {:.2f} ms per step waiting for sums\n",
                   comm_.describe(), format_bytes(reducer_.bytes_per_step()), reducer_.buckets(), reducer_.buckets() == 1 ? "" : "s",
                   1e3 * comm_.wait_seconds / static_cast<double>(reduced_steps_));
    }
    if (s_.keep_best && best_value_) {
        fmt::print("best checkpoint: {} (eval {} {:.6g} at epoch {}); the last is {}\n", best_checkpoint_dir(s_.checkpoint),
                   s_.keep_best->name, *best_value_, best_epoch_, s_.checkpoint);
    }
}

}  // namespace wengert::dsl
