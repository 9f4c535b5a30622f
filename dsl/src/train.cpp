#include "train.hpp"

#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <string_view>

#include "builtins.hpp"
#include "checkpoint.hpp"
#include "progress.hpp"
#include "wengert/io.hpp"
#include "wengert/json.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kSettings = {"data", "eval_data", "optimizer", "schedule", "epochs", "steps", "batch",
                                            "seed", "clip_norm", "checkpoint", "checkpoint_every", "log", "freeze"};

std::shared_ptr<Record> record_setting(const Value& v, const KeywordArg& kw, const char* kind) {
    if (!v.is<std::shared_ptr<Record>>() || v.get<std::shared_ptr<Record>>()->kind != kind) {
        const char* article = std::string_view("aeiou").find(kind[0]) == std::string_view::npos ? "a" : "an";
        throw EvalError(kw.value->loc, fmt::format("train: '{}' must be {} {}, got {}", kw.name, article, kind, describe(v)));
    }
    return v.get<std::shared_ptr<Record>>();
}

std::int64_t positive_int(const Value& v, const KeywordArg& kw, bool allow_zero = false) {
    if (!v.is<std::int64_t>() || v.get<std::int64_t>() < (allow_zero ? 0 : 1)) {
        throw EvalError(kw.value->loc, fmt::format("train: '{}' must be a{} integer, got {}", kw.name,
                                                   allow_zero ? " non-negative" : " positive", describe(v)));
    }
    return v.get<std::int64_t>();
}

std::string format_duration(double seconds) {
    auto s = static_cast<std::int64_t>(seconds + 0.5);
    return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60) : fmt::format("{}:{:02d}", s / 60, s % 60);
}

// Running means over an epoch, weighted by batch size.
struct Running {
    std::vector<std::pair<std::string, double>> sums;
    std::int64_t examples = 0;
    void add(const std::string& name, double value, std::int64_t n) {
        for (auto& [k, v] : sums) {
            if (k == name) {
                v += value * static_cast<double>(n);
                return;
            }
        }
        sums.emplace_back(name, value * static_cast<double>(n));
    }
    double mean(const std::string& name) const {
        for (const auto& [k, v] : sums) if (k == name) return v / static_cast<double>(std::max<std::int64_t>(examples, 1));
        return 0;
    }
};

}  // namespace

namespace {

// Reads one setting of a train block into `s`; EvalError at an unknown name or a bad value.
void apply_setting(Interpreter& in, const KeywordArg& kw, TrainSettings& s) {
    if (std::find(kSettings.begin(), kSettings.end(), kw.name) == kSettings.end()) {
        throw EvalError(kw.loc, fmt::format("train has no setting '{}'", kw.name), closest_names(kw.name, kSettings));
    }
    Value v = in.eval_global(*kw.value);
    if (kw.name == "data") s.data = record_setting(v, kw, "dataset");
    else if (kw.name == "eval_data") s.eval_data = record_setting(v, kw, "dataset");
    else if (kw.name == "optimizer") s.optimizer = record_setting(v, kw, "optimizer");
    else if (kw.name == "schedule") s.schedule = record_setting(v, kw, "schedule");
    else if (kw.name == "epochs") s.epochs = positive_int(v, kw);
    else if (kw.name == "steps") s.steps = positive_int(v, kw);
    else if (kw.name == "batch") s.batch = positive_int(v, kw);
    else if (kw.name == "seed") s.seed = static_cast<std::uint64_t>(positive_int(v, kw, true));
    else if (kw.name == "checkpoint_every") s.checkpoint_every = positive_int(v, kw, true);
    else if (kw.name == "clip_norm") {
        if (!v.is_number() || v.number() < 0) {
            throw EvalError(kw.value->loc, fmt::format("train: 'clip_norm' must be a non-negative number, got {}", describe(v)));
        }
        s.clip_norm = v.number();
    } else if (kw.name == "freeze") {
        // a name pattern or a tuple or list of them
        auto bad = [&] {
            return EvalError(kw.value->loc, fmt::format("train: 'freeze' must be a name pattern such as \"h1.*\" or a list of them, got {}",
                                                        describe(v)));
        };
        s.freeze.clear();
        if (v.is<std::string>()) {
            s.freeze.push_back(v.get<std::string>());
        } else if (v.is<std::shared_ptr<TupleValue>>()) {
            for (const auto& e : *v.get<std::shared_ptr<TupleValue>>()) {
                if (!e.is<std::string>()) throw bad();
                s.freeze.push_back(e.get<std::string>());
            }
        } else {
            throw bad();
        }
        s.freeze_loc = kw.value->loc;
    } else if (kw.name == "checkpoint" || kw.name == "log") {
        if (!v.is<std::string>()) throw EvalError(kw.value->loc, fmt::format("train: '{}' must be a string (a path), got {}", kw.name, describe(v)));
        (kw.name == "checkpoint" ? s.checkpoint : s.log) = v.get<std::string>();
    }
}

}  // namespace

namespace {

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

}  // namespace

void check_freeze_patterns(Interpreter& in, const TrainSettings& s) {
    std::vector<std::string> unmatched = std::as_const(in.params()).unmatched_freeze_patterns();
    if (unmatched.empty()) return;
    std::vector<std::string> names;
    for (const Parameter* p : std::as_const(in.params()).all()) names.push_back(p->name);
    throw EvalError(s.freeze_loc, fmt::format("train: freeze pattern \"{}\" matches no parameter of {}", unmatched.front(), s.target),
                    closest_names(unmatched.front(), names));
}

namespace {

Location train_block_loc(const Interpreter& in) {
    for (const auto& d : in.main_module().decls) if (d.as<TrainBlock>() == in.train_block()) return d.loc;
    return Location{in.main_module().file, 0, 0, 0};
}

}  // namespace

TrainSettings check_train_block(Interpreter& in) {
    TrainSettings s;
    const TrainBlock* block = in.train_block();
    if (!block) return s;
    s.target = block->target;
    for (const auto& kw : block->settings) {
        try {
            apply_setting(in, kw, s);
        } catch (const EvalError& e) {
            auto& d = in.sink().error(e.loc, e.what());
            d.suggestions = e.suggestions;
            d.notes = e.notes;
        } catch (const Error& e) {
            in.sink().error(kw.value->loc, e.what());
        }
    }
    try {
        if (s.optimizer) make_optimizer(*s.optimizer, std::nullopt);
        make_schedule(s.schedule.get(), 1);
    } catch (const EvalError& e) {
        in.sink().error(e.loc, e.what());
    } catch (const Error& e) {
        in.sink().error(s.optimizer ? s.optimizer->loc : train_block_loc(in), e.what());
    }
    bool has_data = std::any_of(block->settings.begin(), block->settings.end(), [](const KeywordArg& kw) { return kw.name == "data"; });
    if (!has_data) in.sink().error(train_block_loc(in), fmt::format("train {}: the block names no data (add `data = ...`)", block->target));
    return s;
}

TrainSettings read_train_settings(Interpreter& in, const TrainOverrides& overrides) {
    const TrainBlock* block = in.train_block();
    if (!block) throw EvalError(Location{in.main_module().file, 0, 0, 0}, "the model has no train block: add `train <function> { ... }`");
    TrainSettings s;
    s.target = block->target;
    for (const auto& kw : block->settings) apply_setting(in, kw, s);
    if (!s.data) throw EvalError(train_block_loc(in), fmt::format("train {}: the block names no data (add `data = ...`)", block->target));
    if (overrides.epochs) s.epochs = *overrides.epochs;
    if (overrides.steps) s.steps = *overrides.steps;
    if (overrides.batch) s.batch = *overrides.batch;
    if (overrides.seed) s.seed = *overrides.seed;
    if (overrides.checkpoint) s.checkpoint = *overrides.checkpoint;
    if (overrides.log) s.log = *overrides.log;
    if (s.log.empty() && !s.checkpoint.empty()) s.log = (fs::path(s.checkpoint) / "metrics.jsonl").string();
    return s;
}

std::unique_ptr<Optimizer> make_optimizer(const Record& r, std::optional<double> lr) {
    auto num = [&](const char* k) { return r.fields.at(k).number(); };
    for (const auto& [k, v] : r.fields) {
        if (!v.is_number() && !v.is<bool>()) throw EvalError(r.loc, fmt::format("{}: '{}' must be a number", r.name, k));
    }
    if (r.name == "sgd") {
        SGDOptions o;
        o.lr = lr.value_or(num("lr"));
        o.momentum = num("momentum");
        o.nesterov = r.fields.at("nesterov").get<bool>();
        o.weight_decay = num("weight_decay");
        return std::make_unique<SGD>(o);
    }
    if (r.name == "adam") {
        AdamOptions o;
        o.lr = lr.value_or(num("lr"));
        o.beta1 = num("beta1");
        o.beta2 = num("beta2");
        o.eps = num("eps");
        o.weight_decay = num("weight_decay");
        return std::make_unique<Adam>(o);
    }
    AdamWOptions o;
    o.lr = lr.value_or(num("lr"));
    o.beta1 = num("beta1");
    o.beta2 = num("beta2");
    o.eps = num("eps");
    o.weight_decay = num("weight_decay");
    return std::make_unique<AdamW>(o);
}

Schedule make_schedule(const Record* r, std::int64_t total_steps) {
    if (!r || r->name == "constant_lr") return constant_lr();
    auto integer = [&](const char* k) {
        const Value& v = r->fields.at(k);
        if (!v.is<std::int64_t>() || v.get<std::int64_t>() <= 0) {
            throw EvalError(r->loc, fmt::format("{}: '{}' must be a positive integer, got {}", r->name, k, describe(v)));
        }
        return v.get<std::int64_t>();
    };
    if (r->name == "step_lr") return step_lr(integer("step_size"), r->fields.at("gamma").number());
    if (r->name == "cosine_lr") {
        std::int64_t t_max = r->fields.at("t_max").is_none() ? total_steps : integer("t_max");
        return cosine_lr(t_max, r->fields.at("min_lr").number());
    }
    const Value& then = r->fields.at("then");
    const Record* next = nullptr;
    if (!then.is_none()) {
        if (!then.is<std::shared_ptr<Record>>() || then.get<std::shared_ptr<Record>>()->kind != "schedule") {
            throw EvalError(r->loc, "warmup: 'then' must be a schedule");
        }
        next = then.get<std::shared_ptr<Record>>().get();
    }
    std::int64_t steps = integer("steps");
    return linear_warmup(steps, make_schedule(next, std::max<std::int64_t>(1, total_steps - steps)));
}

namespace {

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

// Keeps the records of the log at `path` up to step `step`: every step record, and every
// epoch record, at or before it, but a partial epoch record at it (where an earlier run
// stopped; an uninterrupted run writes none). Rewritten atomically.
void truncate_log(const std::string& path, std::int64_t step) {
    std::ifstream in(path);
    if (!in) throw IOError(path, fmt::format("cannot read the metrics log: {}", std::strerror(errno)));
    std::string kept, line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        Json rec;
        try {
            rec = Json::parse(line);
        } catch (const Error&) {
            break;   // a record cut short by a crash: nothing after it was written whole
        }
        if (!rec.contains("step") || !rec.at("step").is_number()) continue;
        std::int64_t at = rec.at("step").as_int();
        bool partial = rec.contains("partial") && rec.at("partial").is_bool() && rec.at("partial").as_bool();
        if (at > step || (at == step && partial)) continue;
        kept += line;
        kept += '\n';
    }
    write_file_atomic(path, kept);
}

// Flushes the metrics log; a failed write (a full disk) is an error, not a shorter log.
void flush_log(std::ofstream& log, const std::string& path) {
    log.flush();
    if (!log) throw IOError(path, fmt::format("cannot write the metrics log: {}", errno ? std::strerror(errno) : "write failed"));
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
    Running run;
    NoGrad no_grad;
    std::int64_t n = data.size();
    for (std::int64_t start = 0; start < n; start += batch) {
        std::int64_t count = std::min(batch, n - start);
        std::vector<std::int64_t> rows(static_cast<std::size_t>(count));
        for (std::int64_t i = 0; i < count; ++i) rows[static_cast<std::size_t>(i)] = start + i;
        Tape tape;
        RunResult r;
        try {
            r = in.run(target, gather_rows(data, rows), Mode::eval);
        } catch (const EvalError& e) {
            throw_bad_row(in, target, data, "eval_data", rows, Mode::eval, e);   // Note [Bad rows]
        }
        for (const auto& [name, v] : r.losses) run.add(name, v.item(), count);
        for (const auto& [name, v] : r.metrics) run.add(name, v.item(), count);
        if (r.objective.defined()) run.add("$objective", r.objective.item(), count);
        run.examples += count;
        if (start == 0) {
            for (const auto& [name, _] : r.losses) summary.losses.emplace_back(name, 0.0);
            for (const auto& [name, _] : r.metrics) summary.metrics.emplace_back(name, 0.0);
        }
    }
    for (auto& [name, v] : summary.losses) v = run.mean(name);
    for (auto& [name, v] : summary.metrics) v = run.mean(name);
    summary.objective = run.mean("$objective");
    summary.examples = run.examples;
    return summary;
}

int train(Interpreter& in, const std::string& model_path, const std::string& model_text, const TrainSettings& settings,
          const TrainOverrides& overrides, const DataOptions& data_options) {
    using Clock = std::chrono::steady_clock;
    TrainSettings s = settings;   // a resumed run trains the checkpoint's function
    // Note [One run per folder]: the lock first, so that a second run is refused at once
    std::optional<FolderLock> lock;
    if (!s.checkpoint.empty()) {
        std::error_code ec;
        if (overrides.resume && !fs::is_directory(s.checkpoint, ec)) throw IOError(s.checkpoint, "no such checkpoint folder");
        lock.emplace(s.checkpoint);
        if (!overrides.resume && has_checkpoint(s.checkpoint)) {
            if (!overrides.overwrite) {
                std::string what = "a checkpoint";
                try {
                    LoadedCheckpoint old = load_checkpoint(s.checkpoint);
                    what = fmt::format("the checkpoint of a run of {} at step {}", old.info.function.empty() ? old.info.model : old.info.function,
                                       old.info.step);
                } catch (const Error&) {
                    what = "a checkpoint (unreadable)";
                }
                throw FolderInUse(s.checkpoint, fmt::format("holds {}; pass --resume to continue it, --overwrite to replace it, "
                                                            "or give another --checkpoint folder",
                                                            what));
            }
            remove_checkpoint(s.checkpoint);
        }
        clean_checkpoint_folder(s.checkpoint);
    }
    Dataset data = load_dataset(*s.data, data_options);
    std::optional<Dataset> eval_data;
    if (s.eval_data) eval_data = load_dataset(*s.eval_data, data_options);
    else eval_data = companion_eval_dataset(*s.data, data_options);

    check_finite_rows(data);
    if (eval_data) check_finite_rows(*eval_data);
    std::int64_t n = data.size();
    if (n == 0) throw IOError(data.description, "the dataset is empty");
    std::int64_t per_epoch = (n - 1) / s.batch + 1;   // the last partial batch is used
    std::int64_t total = 0;
    if (s.steps) total = *s.steps;
    else if (__builtin_mul_overflow(s.epochs, per_epoch, &total)) {
        throw EvalError(train_block_loc(in), fmt::format("train: {} epochs of {} steps is more than 2^63 steps", s.epochs, per_epoch));
    }

    auto default_opt = std::make_shared<Record>(Record{"optimizer", "adam",
                                                       {{"lr", Value(1e-3)}, {"beta1", Value(0.9)}, {"beta2", Value(0.999)},
                                                        {"eps", Value(1e-8)}, {"weight_decay", Value(0.0)}}, {}});
    std::unique_ptr<Optimizer> opt;
    try {
        opt = make_optimizer(s.optimizer ? *s.optimizer : *default_opt, overrides.lr);
    } catch (const Error& e) {   // a value the engine rejects (lr < 0, beta1 >= 1), reported as `wengert check` does
        throw EvalError(s.optimizer ? s.optimizer->loc : train_block_loc(in), e.what());
    }
    opt->set_schedule(make_schedule(s.schedule.get(), total));
    ParamStore& params = in.params();
    std::string hash = text_hash(model_text);
    std::int64_t start_step = 0;
    std::string optimizer_path;   // where the optimizer's state came from, on a resumed run
    Running running;
    manual_seed(s.seed);

    // a first pass creates the model's parameters, to match a checkpoint's or freeze patterns against
    auto create_params = [&] {
        std::vector<std::int64_t> rows(static_cast<std::size_t>(std::min(s.batch, n)));
        std::iota(rows.begin(), rows.end(), 0);
        Tape tape;
        NoGrad no_grad;
        in.run(s.target, gather_rows(data, rows), Mode::eval);
    };
    params.freeze(s.freeze);
    if (!s.freeze.empty() || overrides.init) {
        create_params();
        if (!s.freeze.empty()) check_freeze_patterns(in, s);
        if (overrides.init) warm_start(params, *overrides.init, overrides.init_partial);
        manual_seed(s.seed);
    }

    std::string run_id = new_run_id();
    if (overrides.resume) {
        if (s.checkpoint.empty()) throw IOError(model_path, "--resume needs a checkpoint folder (--checkpoint DIR or `checkpoint = ...`)");
        LoadedCheckpoint ck = load_checkpoint(s.checkpoint);
        if (ck.info.model_hash != hash) {
            throw IOError(s.checkpoint, fmt::format("the checkpoint was made from a different model text ({} hash {}, this "
                                                    "model {}); start a new checkpoint folder", ck.info.model, ck.info.model_hash, hash));
        }
        if (ck.info.dtype != dtype_name(in.options().dtype)) {
            throw IOError(s.checkpoint, fmt::format("the checkpoint holds {} parameters but this run uses --dtype {}", ck.info.dtype,
                                                    dtype_name(in.options().dtype)));
        }
        if (!ck.info.function.empty() && ck.info.function != s.target) {
            if (overrides.function_given) {
                throw IOError(s.checkpoint, fmt::format("the checkpoint trained function '{}', not '{}': resume it without "
                                                        "--function, or start a new checkpoint folder",
                                                        ck.info.function, s.target));
            }
            if (!in.find_function(ck.info.function)) {
                throw IOError(s.checkpoint, fmt::format("the checkpoint trained function '{}', which this model does not define",
                                                        ck.info.function));
            }
            s.target = ck.info.function;
        }
        if (ck.info.seed != s.seed) {
            throw IOError(s.checkpoint, fmt::format("the checkpoint's run has seed {}, this run {}: resume with the same seed, or "
                                                    "start a new checkpoint folder",
                                                    ck.info.seed, s.seed));
        }
        if (ck.info.batch != 0 && ck.info.batch != s.batch) {
            throw IOError(s.checkpoint, fmt::format("the checkpoint's run has batch {}, this run {}: resume with the same batch, "
                                                    "or start a new checkpoint folder",
                                                    ck.info.batch, s.batch));
        }
        if (ck.info.optimizer != opt->name()) {
            throw IOError(s.checkpoint, fmt::format("the checkpoint's run used optimizer '{}', this run '{}'", ck.info.optimizer,
                                                    opt->name()));
        }
        if (ck.info.epoch != ck.info.step / per_epoch) {
            throw IOError(s.checkpoint, fmt::format("the checkpoint is at step {} of epoch {}, but this data gives {} steps per "
                                                    "epoch: the dataset or batch changed since it was written",
                                                    ck.info.step, ck.info.epoch, per_epoch));
        }
        if (!ck.info.run_id.empty()) run_id = ck.info.run_id;
        create_params();
        assign_params(params, ck.params, ck.params_path);
        optimizer_path = ck.optimizer_path;
        try {
            opt->load_state(ck.optimizer_state);
        } catch (const Error& e) {
            throw IOError(optimizer_path, e.what());
        }
        if (opt->steps() != ck.info.step) {
            throw IOError(optimizer_path, fmt::format("holds the state after {} steps, but the manifest says step {}",
                                                      opt->steps(), ck.info.step));
        }
        default_generator().set_state(ck.info.rng_seed, ck.info.rng_offset);
        start_step = ck.info.step;
        running.sums = ck.info.epoch_sums;
        running.examples = ck.info.epoch_examples;
        fmt::print(stderr, "resuming from {} at step {} (epoch {})\n", s.checkpoint, start_step, ck.info.epoch);
    }
    if (start_step >= total) {
        fmt::print(stderr, "nothing to do: the checkpoint is at step {} of {}\n", start_step, total);
        return 0;
    }

    std::unique_ptr<std::ofstream> log;
    if (!s.log.empty()) {
        fs::path lp(s.log);
        std::error_code ec;
        if (lp.has_parent_path()) fs::create_directories(lp.parent_path(), ec);
        if (ec) throw IOError(s.log, fmt::format("cannot create the metrics log's folder: {}", ec.message()));
        // a resumed run continues the log from its checkpoint: records an interrupted run wrote
        // after it are dropped, so the log equals an uninterrupted run's
        if (overrides.resume && fs::exists(lp, ec)) truncate_log(s.log, start_step);
        log = std::make_unique<std::ofstream>(s.log, overrides.resume ? std::ios::app : std::ios::trunc);
        if (!*log) throw IOError(s.log, fmt::format("cannot open the metrics log for writing: {}", std::strerror(errno)));
    }
    bool tty = overrides.progress && ::isatty(STDERR_FILENO);
    if (eval_data) {
        // Note [Bad rows]: a row of the evaluation data the model cannot take is found now,
        // not at the end of the first epoch. The random state is put back, so that the run
        // draws what it would have drawn without this pass.
        const std::uint64_t rng_seed = default_generator().seed(), rng_offset = default_generator().offset();
        evaluate(in, s.target, *eval_data, s.batch);
        default_generator().set_state(rng_seed, rng_offset);
    }
    fmt::print(stderr, "training {} on {} ({} examples, batch {}, {} steps per epoch, {} steps)\n", s.target, data.description, n,
               s.batch, per_epoch, total);

    std::vector<std::int64_t> order;
    std::int64_t order_epoch = -1;
    auto epoch_start = Clock::now();
    auto run_start = Clock::now();
    std::int64_t steps_this_run = 0;

    for (std::int64_t step = start_step; step < total; ++step) {
        std::int64_t epoch = step / per_epoch, pos = step % per_epoch;
        if (epoch != order_epoch) {
            order = epoch_order(n, s.seed, epoch);
            order_epoch = epoch;
            if (step != start_step || pos == 0) {
                running = Running{};
                epoch_start = Clock::now();
            }
        }
        std::int64_t first = pos * s.batch, count = std::min(s.batch, n - first);
        std::span<const std::int64_t> rows(order.data() + first, static_cast<std::size_t>(count));
        std::vector<Tensor> batch = gather_rows(data, rows);

        const std::string where = fmt::format("step {} (epoch {}, batch {})", step + 1, epoch + 1, pos + 1);
        const std::uint64_t rng_seed = default_generator().seed(), rng_offset = default_generator().offset();
        // Note [Finite checks]: with --check-finite every op of every step is checked
        std::optional<FiniteChecks> checks;
        if (overrides.check_finite) checks.emplace();
        Tape tape;
        RunResult r;
        try {
            r = in.run(s.target, batch, Mode::train);
        } catch (const NonFiniteError& e) {
            throw non_finite_error(in, e, where, "");
        } catch (const EvalError& e) {
            throw_bad_row(in, s.target, data, "data", rows, Mode::train, e);   // Note [Bad rows]
        }
        if (!r.objective.defined()) {
            throw EvalError(Location{in.main_module().file, 0, 0, 0}, fmt::format("{} defines no loss: add a `loss name = ...` statement", s.target));
        }
        double objective = r.objective.item();
        // what is not finite, if anything: the loss (naming its terms) or a parameter's gradient
        std::string bad;
        if (!std::isfinite(objective)) {
            std::vector<std::string> terms;
            for (const auto& [name, v] : r.losses) {
                if (!std::isfinite(v.item())) terms.push_back(fmt::format("'{}' is {}", name, non_finite_text(v.item())));
            }
            bad = fmt::format("the loss is {}{}", non_finite_text(objective),
                              terms.empty() ? "" : fmt::format(" (loss term {})", fmt::join(terms, ", ")));
        } else {
            try {
                tape.backward(r.objective);
            } catch (const NonFiniteError& e) {
                throw non_finite_error(in, e, where, "");
            }
            for (const Parameter* p : params.all()) {
                if (p->grad.defined() && !all_finite(p->grad)) {
                    bad = fmt::format("the gradient of parameter '{}' is not finite, while the loss is {:.6g}", p->name, objective);
                    break;
                }
            }
        }
        if (!bad.empty()) {
            // replay the step with every op checked, from the same random state, to name the op
            params.zero_grad();
            default_generator().set_state(rng_seed, rng_offset);
            FiniteChecks replay_checks;
            try {
                Tape replay;
                RunResult again = in.run(s.target, batch, Mode::train);
                if (again.objective.defined() && again.objective.requires_grad()) replay.backward(again.objective);
            } catch (const NonFiniteError& e) {
                throw non_finite_error(in, e, where, bad);
            }
            throw EvalError(train_block_loc(in), fmt::format("{}: {}; no op made it from finite inputs when the step was "
                                                             "replayed. The parameters were not updated and the last "
                                                             "checkpoint (if any) is intact",
                                                             where, bad));
        }
        double lr = opt->current_lr();
        if (s.clip_norm > 0) clip_grad_norm(params, s.clip_norm);
        try {
            opt->step(params);
        } catch (const Error& e) {
            // step() checks the optimizer's state against the parameters: on a resumed run, the checkpoint's
            if (optimizer_path.empty()) throw;
            throw IOError(optimizer_path, e.what());
        }
        for (const Parameter* p : params.all()) {
            if (!all_finite(p->value)) {
                throw EvalError(s.optimizer ? s.optimizer->loc : train_block_loc(in), fmt::format("{}: parameter '{}' became non-finite in the {} update from finite "
                                                     "gradients (lr {:g}: too large?); nothing of this step was saved and "
                                                     "the last checkpoint (if any) is intact",
                                                     where, p->name, opt->name(), lr));
            }
        }
        params.zero_grad();
        ++steps_this_run;

        running.examples += count;
        Json rec;
        rec["step"] = step + 1;
        rec["epoch"] = epoch + 1;
        rec["lr"] = lr;
        rec["loss"] = objective;
        running.add("loss", objective, count);
        for (const auto& [name, v] : r.losses) {
            double x = v.item();
            rec["losses"][name] = x;
            running.add(name, x, count);
        }
        for (const auto& [name, v] : r.metrics) {
            double x = v.item();
            rec["metrics"][name] = x;
            running.add(name, x, count);
        }
        if (log) *log << rec.dump() << '\n';

        double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
        double per_step = elapsed / static_cast<double>(steps_this_run);
        if (tty) {
            // Note [A bar that fits]: the loss terms, then the ETA, the metrics and the speed go as the width requires
            std::vector<ProgressField> fields{{fmt::format("epoch {}/{}  step {}/{}", epoch + 1, (total + per_epoch - 1) / per_epoch, pos + 1, per_epoch), 0}};
            for (const auto& [name, _] : r.losses) fields.push_back({fmt::format("{} {:.4f}", name, running.mean(name)), fields.size() == 1 ? 1 : 3});
            for (const auto& [name, _] : r.metrics) fields.push_back({fmt::format("{} {:.4f}", name, running.mean(name)), 4});
            double ex_s = static_cast<double>(running.examples) / std::max(1e-9, std::chrono::duration<double>(Clock::now() - epoch_start).count());
            fields.push_back({fmt::format("{:.0f} ex/s", ex_s), 5});
            fields.push_back({fmt::format("ETA {}", format_duration(per_step * static_cast<double>(total - step - 1))), 2});
            fmt::print(stderr, "\r\033[K{}", fit_progress(fields, terminal_width(STDERR_FILENO)));
        }

        bool end_of_epoch = pos == per_epoch - 1 || step == total - 1;
        bool checkpoint_now = !s.checkpoint.empty() && (s.checkpoint_every > 0 ? ((step + 1) % s.checkpoint_every == 0 || step == total - 1)
                                                                                : end_of_epoch);
        // the log reaches the checkpoint's step before the checkpoint does
        auto save = [&] {
            if (log) flush_log(*log, s.log);
            if (!checkpoint_now) return;
            CheckpointInfo info;
            info.run_id = run_id;
            info.function = s.target;
            info.batch = s.batch;
            info.model = model_path;
            info.model_hash = hash;
            info.step = step + 1;
            info.epoch = (step + 1) / per_epoch;
            info.seed = s.seed;
            info.dtype = dtype_name(in.options().dtype);
            info.rng_seed = default_generator().seed();
            info.rng_offset = default_generator().offset();
            info.optimizer = opt->name();
            if (pos != per_epoch - 1) {   // mid-epoch: the resumed run continues these means
                info.epoch_sums = running.sums;
                info.epoch_examples = running.examples;
            }
            save_checkpoint(s.checkpoint, info, params, opt.get());
        };
        if (end_of_epoch) {
            double secs = std::chrono::duration<double>(Clock::now() - epoch_start).count();
            bool partial = pos != per_epoch - 1;   // the run stops mid-epoch
            std::string line = fmt::format("epoch {}{}  loss {:.4f}", epoch + 1,
                                           partial ? fmt::format(" (stopped after {} of {} steps)", pos + 1, per_epoch) : "",
                                           running.mean("loss"));
            Json erec;
            erec["event"] = "epoch";
            erec["epoch"] = epoch + 1;
            if (partial) erec["partial"] = true;
            erec["step"] = step + 1;
            erec["seconds"] = secs;
            erec["train"]["loss"] = running.mean("loss");
            for (const auto& [name, _] : r.losses) {
                line += fmt::format("  {} {:.4f}", name, running.mean(name));
                erec["train"][name] = running.mean(name);
            }
            for (const auto& [name, _] : r.metrics) {
                line += fmt::format("  {} {:.4f}", name, running.mean(name));
                erec["train"][name] = running.mean(name);
            }
            if (eval_data) {
                EvalSummary e;
                try {
                    e = evaluate(in, s.target, *eval_data, s.batch);
                } catch (EvalError& e) {
                    save();   // the epoch's training is kept, whatever its evaluation met (Note [Bad rows])
                    if (checkpoint_now) {
                        e.notes.push_back({train_block_loc(in), fmt::format("the checkpoint of step {} was saved before this "
                                                                            "evaluation: --resume continues from it",
                                                                            step + 1)});
                    }
                    throw;
                }
                line += "  | eval";
                erec["eval"]["loss"] = e.objective;
                for (const auto& [name, v] : e.losses) {
                    line += fmt::format("  {} {:.4f}", name, v);
                    erec["eval"][name] = v;
                }
                for (const auto& [name, v] : e.metrics) {
                    line += fmt::format("  {} {:.4f}", name, v);
                    erec["eval"][name] = v;
                }
            }
            line += fmt::format("  ({:.1f} s, {:.0f} ex/s)", secs, static_cast<double>(running.examples) / std::max(secs, 1e-9));
            if (tty) fmt::print(stderr, "\r\033[K");
            fmt::print("{}\n", line);
            std::fflush(stdout);
            if (log) *log << erec.dump() << '\n';
        }
        save();
    }
    return 0;
}

}  // namespace wengert::dsl
