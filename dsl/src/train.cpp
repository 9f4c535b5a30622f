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
#include <limits>
#include <numeric>
#include <optional>
#include <string_view>

#include "builtins.hpp"
#include "checkpoint.hpp"
#include "comm.hpp"
#include "grad_reducer.hpp"
#include "progress.hpp"
#include "wengert/dsl/ast_printer.hpp"
#include "wengert/io.hpp"
#include "wengert/json.hpp"
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

namespace {

const std::vector<std::string> kSettings = {"data", "eval_data", "optimizer", "schedule", "epochs", "steps", "batch",
                                            "seed", "clip_norm", "checkpoint", "checkpoint_every", "log", "freeze",
                                            "groups", "keep_best", "early_stopping"};

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

// "1.2 MB", "304 kB", "96 B".
std::string format_bytes(std::int64_t bytes) {
    if (bytes >= 1000000) return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6);
    if (bytes >= 1000) return fmt::format("{:.0f} kB", static_cast<double>(bytes) / 1e3);
    return fmt::format("{} B", bytes);
}

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

// A name pattern ("h1.*") or a tuple or list of them (freeze, group(params = ...)); `what` names
// the setting in the error.
std::vector<std::string> name_patterns(const Value& v, Location loc, const char* what) {
    auto bad = [&] {
        return EvalError(loc, fmt::format("{} must be a name pattern such as \"h1.*\" or a list of them, got {}", what, describe(v)));
    };
    std::vector<std::string> out;
    if (v.is<std::string>()) {
        out.push_back(v.get<std::string>());
    } else if (v.is<std::shared_ptr<TupleValue>>()) {
        for (const auto& e : *v.get<std::shared_ptr<TupleValue>>()) {
            if (!e.is<std::string>()) throw bad();
            out.push_back(e.get<std::string>());
        }
    } else {
        throw bad();
    }
    return out;
}

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
        s.freeze = name_patterns(v, kw.value->loc, "train: 'freeze'");
        s.freeze_loc = kw.value->loc;
    } else if (kw.name == "groups") {
        // a group(...) or a tuple or list of them
        s.groups.clear();
        auto add = [&](const Value& e) {
            if (!e.is<std::shared_ptr<Record>>() || e.get<std::shared_ptr<Record>>()->kind != "param_group") {
                throw EvalError(kw.value->loc, fmt::format("train: 'groups' must be group(...) or a list of them, got {}", describe(e)));
            }
            s.groups.push_back(e.get<std::shared_ptr<Record>>());
        };
        if (v.is<std::shared_ptr<TupleValue>>()) {
            for (const auto& e : *v.get<std::shared_ptr<TupleValue>>()) add(e);
        } else {
            add(v);
        }
    } else if (kw.name == "keep_best") {
        s.keep_best = monitor_from_value(v, kw.value->loc, "keep_best");
    } else if (kw.name == "early_stopping") {
        TrainSettings::EarlyStopping e;
        if (v.is<std::shared_ptr<Record>>() && v.get<std::shared_ptr<Record>>()->kind == "early_stopping") {
            const Record& r = *v.get<std::shared_ptr<Record>>();
            auto monitor = std::make_shared<Record>(Record{"monitor", "monitor",
                                                           {{"metric", r.fields.at("metric")}, {"mode", r.fields.at("mode")},
                                                            {"min_delta", r.fields.at("min_delta")}}, r.loc});
            e.monitor = monitor_from_value(Value(monitor), kw.value->loc, "early_stopping");
            const Value& patience = r.fields.at("patience");
            if (!patience.is<std::int64_t>() || patience.get<std::int64_t>() < 1) {
                throw EvalError(kw.value->loc, fmt::format("early_stopping: 'patience' must be a positive integer, got {}", describe(patience)));
            }
            e.patience = patience.get<std::int64_t>();
        } else {
            e.monitor = monitor_from_value(v, kw.value->loc, "early_stopping");
        }
        s.early_stopping = e;
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

// Note [Resuming a changed file]
// A checkpoint keeps the model's text hash and its structure: every declaration of the main
// file as an S-expression (ast_printer.hpp), one per line, the train block without the
// settings that say only how long and where to train (epochs, steps, checkpoint,
// checkpoint_every, log). --resume on a file whose text hash differs goes on when the
// structure is the same (comments, blank lines, spacing, and those settings changed), says so,
// and otherwise refuses, naming the first declaration that differs. What else must match
// (function, seed, batch, dtype, optimizer, parameters) is checked on its own, by name.
const std::vector<std::string> kRunLengthSettings = {"epochs", "steps", "checkpoint", "checkpoint_every", "log"};

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

namespace {

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
        make_optimizer(s, std::nullopt, train_block_loc(in));
        make_schedule(s.schedule.get(), 1, 1);
    } catch (const EvalError& e) {
        in.sink().error(e.loc, e.what());
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

namespace {

std::unique_ptr<Optimizer> optimizer_of(const Record& r, std::optional<double> lr) {
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

// An optional number of a group record: absent when none.
std::optional<double> group_number(const Record& r, const char* k) {
    const Value& v = r.fields.at(k);
    if (v.is_none()) return std::nullopt;
    if (!v.is_number() || !std::isfinite(v.number())) throw EvalError(r.loc, fmt::format("group: '{}' must be a number, got {}", k, describe(v)));
    return v.number();
}

ParamGroup group_of_record(const Record& r) {
    ParamGroup g;
    g.patterns = name_patterns(r.fields.at("params"), r.loc, "group: 'params'");
    if (g.patterns.empty()) throw EvalError(r.loc, "group: 'params' names no pattern");
    g.lr = group_number(r, "lr");
    g.lr_scale = group_number(r, "lr_scale");
    g.weight_decay = group_number(r, "weight_decay");
    g.momentum = group_number(r, "momentum");
    g.beta1 = group_number(r, "beta1");
    g.beta2 = group_number(r, "beta2");
    const Value& c = r.fields.at("constraint");
    if (!c.is_none()) g.constraints.push_back(constraint_from_value(c, r.loc));
    return g;
}

// A train block without an optimizer trains with adam(): the engine's defaults (AdamOptions).
std::unique_ptr<Optimizer> default_optimizer(std::optional<double> lr) {
    AdamOptions o;
    if (lr) o.lr = *lr;
    return std::make_unique<Adam>(o);
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const TrainSettings& s, std::optional<double> lr, Location fallback) {
    std::unique_ptr<Optimizer> opt;
    try {
        opt = s.optimizer ? optimizer_of(*s.optimizer, lr) : default_optimizer(lr);
    } catch (const EvalError&) {
        throw;
    } catch (const Error& e) {   // a value the engine rejects (lr < 0, beta1 >= 1)
        throw EvalError(s.optimizer ? s.optimizer->loc : fallback, e.what());
    }
    for (const auto& r : s.groups) {
        ParamGroup g = group_of_record(*r);
        try {
            opt->add_group(std::move(g));
        } catch (const Error& e) {
            throw EvalError(r->loc, e.what());
        }
    }
    return opt;
}

void check_group_patterns(Interpreter& in, const TrainSettings& s) {
    std::vector<std::string> names;
    for (const Parameter* p : std::as_const(in.params()).all()) names.push_back(p->name);
    std::vector<ParamGroup> groups;
    for (const auto& r : s.groups) groups.push_back(group_of_record(*r));
    for (std::size_t g = 0; g < groups.size(); ++g) {
        for (const auto& pattern : groups[g].patterns) {
            if (std::none_of(names.begin(), names.end(), [&](const std::string& n) { return matches_pattern(n, pattern); })) {
                throw EvalError(s.groups[g]->loc, fmt::format("train: group pattern \"{}\" matches no parameter of {}", pattern, s.target),
                                closest_names(pattern, names));
            }
        }
    }
    for (const auto& name : names) {
        int first = -1;
        for (std::size_t g = 0; g < groups.size(); ++g) {
            bool hit = std::any_of(groups[g].patterns.begin(), groups[g].patterns.end(),
                                   [&](const std::string& p) { return matches_pattern(name, p); });
            if (!hit) continue;
            if (first >= 0) {
                throw EvalError(s.groups[g]->loc, fmt::format("train: parameter '{}' is in group {} (\"{}\") and group {} (\"{}\"); "
                                                              "a parameter belongs to one group",
                                                              name, first + 1, groups[static_cast<std::size_t>(first)].label(), g + 1,
                                                              groups[g].label()));
            }
            first = static_cast<int>(g);
        }
    }
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

void create_params(Interpreter& in, const std::string& target, const std::vector<Tensor>& inputs, Mode mode) {
    Tape tape;
    NoGrad no_grad;
    in.run(target, inputs, mode);
}

void create_params(Interpreter& in, const std::string& target, const Dataset& data, std::int64_t batch) {
    std::vector<std::int64_t> rows(static_cast<std::size_t>(std::min(batch, data.size())));
    std::iota(rows.begin(), rows.end(), 0);
    create_params(in, target, gather_rows(data, rows), Mode::eval);
}

EvalSummary evaluate(Interpreter& in, const std::string& target, const Dataset& data, std::int64_t batch) {
    EvalSummary summary;
    Running run;
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

int train(Interpreter& in, const std::string& model_path, const std::string& model_text, const TrainSettings& settings,
          const TrainOverrides& overrides, const DataOptions& data_options) {
    using Clock = std::chrono::steady_clock;
    TrainSettings s = settings;   // a resumed run trains the checkpoint's function
    // Note [Data-parallel training]: rank 0 alone writes the log and checkpoints
    Communicator& comm = communicator();
    const bool distributed = comm.size() > 1, lead = comm.rank() == 0;
    if (distributed && s.batch < comm.size()) {
        throw EvalError(train_block_loc(in), fmt::format("train: batch {} is smaller than the {} processes that share each batch",
                                                         s.batch, comm.size()));
    }
    // Note [One run per folder]: the lock first, so that a second run is refused at once
    std::optional<FolderLock> lock;
    if (!s.checkpoint.empty() && lead) {
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

    std::unique_ptr<Optimizer> opt = make_optimizer(s, overrides.lr, train_block_loc(in));
    // Note [Schedules]: reduce_on_plateau scales every group's lr by its factor so far
    std::shared_ptr<Plateau> plateau;
    if (s.schedule && s.schedule->name == "reduce_on_plateau") {
        plateau = std::make_shared<Plateau>(*s.schedule);
        opt->set_schedule([plateau](double base_lr, std::int64_t) { return base_lr * plateau->scale(); });
    } else {
        opt->set_schedule(make_schedule(s.schedule.get(), total, per_epoch));
    }
    // what watches the evaluation pass needs one, and keep_best a folder to keep it in
    auto needs_eval = [&](const Monitor& m, const char* setting) {
        if (!eval_data) {
            throw EvalError(m.loc, fmt::format("{} watches the evaluation pass's '{}', but this run has no evaluation data: add "
                                               "`eval_data = ...` to the train block",
                                               setting, m.name));
        }
    };
    if (plateau) needs_eval(plateau->monitor(), "reduce_on_plateau");
    if (s.early_stopping) needs_eval(s.early_stopping->monitor, "early_stopping");
    if (s.keep_best) {
        needs_eval(*s.keep_best, "keep_best");
        if (s.checkpoint.empty()) {
            throw EvalError(s.keep_best->loc, "keep_best keeps a checkpoint, but this run has no checkpoint folder: add `checkpoint = "
                                              "\"DIR\"` or pass --checkpoint DIR");
        }
    }
    // the best values so far (Note [Training control])
    std::optional<double> best_value, stop_best;
    std::int64_t best_epoch = 0, stop_bad_epochs = 0;
    bool stopped_early = false;
    ParamStore& params = in.params();
    std::string hash = text_hash(model_text);
    const std::string structure = model_structure(in);
    std::int64_t start_step = 0;
    std::string optimizer_path;   // where the optimizer's state came from, on a resumed run
    Running running;
    manual_seed(s.seed);

    params.freeze(s.freeze);
    if (distributed || !s.freeze.empty() || !s.groups.empty() || overrides.init) {
        create_params(in, s.target, data, s.batch);
        if (!s.freeze.empty()) check_freeze_patterns(in, s);
        if (!s.groups.empty()) check_group_patterns(in, s);
        if (overrides.init && lead) warm_start(params, *overrides.init, overrides.init_partial);   // then broadcast
        manual_seed(s.seed);
    }

    // a checkpoint's training control state (Note [Training control])
    auto apply_control = [&](const Json& c, const std::string& where) {
        try {
            if (plateau && c.contains("plateau")) plateau->load_state(c.at("plateau"));
            if (s.keep_best && c.contains("best") && !c.at("best").at("value").is_null()) {
                best_value = c.at("best").at("value").as_number();
                best_epoch = c.at("best").at("epoch").as_int();
            }
            if (s.early_stopping && c.contains("early_stopping")) {
                const Json& e = c.at("early_stopping");
                if (!e.at("best").is_null()) stop_best = e.at("best").as_number();
                stop_bad_epochs = e.at("bad_epochs").as_int();
                stopped_early = e.at("stopped").as_bool();
            }
        } catch (const Error& e) {
            throw IOError(where, fmt::format("corrupt manifest: \"control\": {}", e.what()));
        }
    };
    Json resumed_control;
    std::string run_id = new_run_id();
    if (overrides.resume && lead) {
        if (s.checkpoint.empty()) throw IOError(model_path, "--resume needs a checkpoint folder (--checkpoint DIR or `checkpoint = ...`)");
        LoadedCheckpoint ck = load_checkpoint(s.checkpoint);
        if (ck.info.model_hash != hash) {   // Note [Resuming a changed file]
            if (ck.info.model_structure.empty()) {
                throw IOError(s.checkpoint, fmt::format("the checkpoint was made from a different model text ({} hash {}, this "
                                                        "model {}); start a new checkpoint folder", ck.info.model, ck.info.model_hash, hash));
            }
            if (ck.info.model_structure != structure) {
                throw IOError(s.checkpoint, fmt::format("the model changed since the checkpoint was written, beyond comments, "
                                                        "formatting and how long to train: {}; start a new checkpoint folder",
                                                        first_difference(ck.info.model_structure, structure)));
            }
            fmt::print(stderr, "{} changed since the checkpoint only in comments, formatting or how long to train: resuming\n",
                       model_path);
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
        create_params(in, s.target, data, s.batch);
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
        resumed_control = ck.info.control;
        apply_control(ck.info.control, (fs::path(s.checkpoint) / "manifest.json").string());
        fmt::print(stderr, "resuming from {} at step {} (epoch {})\n", s.checkpoint, start_step, ck.info.epoch);
    }
    if (distributed) {
        // Note [Data-parallel training]: rank 0's run state, parameters and optimizer state
        // (its initialisation, warm start or checkpoint) on every process
        Json state;
        if (lead) {
            state["target"] = s.target;
            state["start_step"] = start_step;
            state["rng_seed"] = fmt::format("{}", default_generator().seed());
            state["rng_offset"] = fmt::format("{}", default_generator().offset());
            for (const auto& [name, sum] : running.sums) state["epoch_sums"][name] = sum;
            state["epoch_examples"] = running.examples;
            state["control"] = resumed_control;
            state["run_id"] = run_id;
        }
        std::string text = lead ? state.dump() : std::string();
        comm.broadcast(text);
        if (!lead) {
            state = Json::parse(text);
            if (state.at("target").as_string() != s.target) {
                s.target = state.at("target").as_string();
                create_params(in, s.target, data, s.batch);
            }
            start_step = state.at("start_step").as_int();
            default_generator().set_state(std::stoull(state.at("rng_seed").as_string()), std::stoull(state.at("rng_offset").as_string()));
            running = Running{};
            if (state.contains("epoch_sums")) {
                for (const auto& [name, sum] : state.at("epoch_sums").as_object()) running.sums.emplace_back(name, sum.as_number());
            }
            running.examples = state.at("epoch_examples").as_int();
            if (!state.at("control").is_null()) apply_control(state.at("control"), "rank 0's checkpoint");
            run_id = state.at("run_id").as_string();
        }
        NamedTensors values;
        for (const Parameter* p : std::as_const(params).all()) values.emplace_back(p->name, p->value);
        broadcast_tensors(comm, values);
        if (!lead) assign_params(params, values, "rank 0's parameters");
        NamedTensors opt_state = lead ? opt->state() : NamedTensors{};
        broadcast_tensors(comm, opt_state);
        if (!lead) opt->load_state(opt_state);
    }
    if (stopped_early) {
        fmt::print(stderr, "nothing to do: the run stopped early at step {} (eval {} had not improved for {} epochs)\n", start_step,
                   s.early_stopping->monitor.name, s.early_stopping->patience);
        return 0;
    }
    if (start_step >= total) {
        fmt::print(stderr, "nothing to do: the checkpoint is at step {} of {}\n", start_step, total);
        return 0;
    }

    if (eval_data) {
        // Note [Bad rows]: a row of the evaluation data the model cannot take is found now,
        // not at the end of the first epoch. The random state is put back, so that the run
        // draws what it would have drawn without this pass.
        const std::uint64_t rng_seed = default_generator().seed(), rng_offset = default_generator().offset();
        in.set_progress(TrainingProgress{start_step, per_epoch, total});
        EvalSummary first = evaluate(in, s.target, *eval_data, s.batch);
        default_generator().set_state(rng_seed, rng_offset);
        // and the names the training control watches are the pass's
        std::vector<std::string> losses, metrics;
        for (const auto& [name, _] : first.losses) losses.push_back(name);
        for (const auto& [name, _] : first.metrics) metrics.push_back(name);
        if (plateau) resolve_monitor(plateau->monitor(), losses, metrics, "reduce_on_plateau");
        if (s.keep_best) resolve_monitor(*s.keep_best, losses, metrics, "keep_best");
        if (s.early_stopping) resolve_monitor(s.early_stopping->monitor, losses, metrics, "early_stopping");
    }
    std::unique_ptr<std::ofstream> log;
    if (!s.log.empty() && lead) {
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
    fmt::print(stderr, "training {} on {} ({} examples, batch {}, {} steps per epoch, {} steps)\n", s.target, data.description, n,
               s.batch, per_epoch, total);

    // the training control's state, for checkpoints (Note [Training control])
    std::vector<std::string> notices;   // said after an epoch's line
    auto control_state = [&] {
        Json c;
        if (plateau) c["plateau"] = plateau->state();
        if (s.keep_best) {
            c["best"]["metric"] = s.keep_best->name;
            c["best"]["value"] = best_value ? Json(*best_value) : Json();
            c["best"]["epoch"] = best_epoch;
            c["best"]["dir"] = "best";
        }
        if (s.early_stopping) {
            c["early_stopping"]["metric"] = s.early_stopping->monitor.name;
            c["early_stopping"]["best"] = stop_best ? Json(*stop_best) : Json();
            c["early_stopping"]["bad_epochs"] = stop_bad_epochs;
            c["early_stopping"]["stopped"] = stopped_early;
        }
        return c;
    };

    std::vector<std::int64_t> order;
    std::int64_t order_epoch = -1;
    GradReducer reducer(comm);
    std::int64_t reduced_steps = 0;
    std::pair<std::vector<std::pair<std::string, double>>, std::vector<std::pair<std::string, double>>> term_names;
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
        // Note [Data-parallel training]: this process's contiguous share of the global batch
        const auto [share_first, share_rows] = share_of(count, comm.rank(), comm.size());
        std::span<const std::int64_t> rows(order.data() + first + share_first, static_cast<std::size_t>(share_rows));
        std::vector<Tensor> batch = share_rows > 0 ? gather_rows(data, rows) : std::vector<Tensor>{};
        std::optional<BatchShard> shard;   // Note [Per-example streams]
        if (distributed) shard.emplace(count, share_first, share_rows);

        const std::string where = fmt::format("step {} (epoch {}, batch {})", step + 1, epoch + 1, pos + 1);
        const std::uint64_t rng_seed = default_generator().seed(), rng_offset = default_generator().offset();
        // Note [Finite checks]: with --check-finite every op of every step is checked
        std::optional<FiniteChecks> checks;
        if (overrides.check_finite) checks.emplace();
        Tape tape;
        RunResult r;
        in.set_progress(TrainingProgress{step, per_epoch, total});
        if (share_rows > 0) {
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
        }
        // this process's values; under data-parallel training summed below, each weighted by its share
        const double share = static_cast<double>(share_rows) / static_cast<double>(count);
        std::vector<std::pair<std::string, double>> losses, metrics;
        if (share_rows > 0) {
            for (const auto& [name, v] : r.losses) losses.emplace_back(name, v.item());
            for (const auto& [name, v] : r.metrics) metrics.emplace_back(name, v.item());
            term_names = {losses, metrics};
        } else {   // no rows this step: zeros under the last step's names
            losses = term_names.first;
            metrics = term_names.second;
        }
        double objective = share_rows > 0 ? r.objective.item() : 0.0;
        if (distributed) reducer.begin(params);
        // what is not finite, if anything: the loss (naming its terms) or a parameter's gradient
        std::string bad;
        if (share_rows == 0) {
        } else if (!std::isfinite(objective)) {
            std::vector<std::string> terms;
            for (const auto& [name, v] : losses) {
                if (!std::isfinite(v)) terms.push_back(fmt::format("'{}' is {}", name, non_finite_text(v)));
            }
            bad = fmt::format("the loss is {}{}", non_finite_text(objective),
                              terms.empty() ? "" : fmt::format(" (loss term {})", fmt::join(terms, ", ")));
        } else {
            try {
                if (distributed) {
                    // weighted by this process's share; each parameter's gradient is summed as
                    // soon as backward finishes it (Note [Gradient buckets])
                    tape.backward(r.objective, Tensor::full(Shape{}, share, r.objective.value().dtype()),
                                  [&](Parameter& p) { reducer.ready(p); });
                } else {
                    tape.backward(r.objective);
                }
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
        if (distributed) {
            // the global batch's gradients, then its losses and metrics: the weighted sums
            std::vector<double> sums;
            reducer.finish(sums);   // one flag per parameter: whether this process had a gradient
            std::vector<double> values = {objective * share};
            for (const auto& [_, v] : losses) values.push_back(v * share);
            for (const auto& [_, v] : metrics) values.push_back(v * share);
            values.insert(values.end(), sums.begin(), sums.end());
            comm.allreduce_sum(values);
            std::size_t k = 0;
            objective = values[k++];
            for (auto& [_, v] : losses) v = values[k++];
            for (auto& [_, v] : metrics) v = values[k++];
            reducer.settle(values.data() + k);
            ++reduced_steps;
        }
        shard.reset();
        double lr = opt->current_lr();
        std::vector<double> group_lrs;
        for (std::size_t g = 0; g < opt->groups().size(); ++g) group_lrs.push_back(opt->current_lr(static_cast<int>(g)));
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
        if (distributed && count < comm.size()) {
            sync_generator(comm);   // a process without rows drew nothing (Note [Per-example streams])
        }

        running.examples += count;
        Json rec;
        rec["step"] = step + 1;
        rec["epoch"] = epoch + 1;
        rec["lr"] = lr;
        for (std::size_t g = 0; g < group_lrs.size(); ++g) rec["group_lr"][opt->groups()[g].label()] = group_lrs[g];
        for (const auto& [name, x] : r.schedules) {
            if (!rec.contains("schedules") || !rec.at("schedules").contains(name)) rec["schedules"][name] = x;
        }
        rec["loss"] = objective;
        running.add("loss", objective, count);
        for (const auto& [name, x] : losses) {
            rec["losses"][name] = x;
            running.add(name, x, count);
        }
        for (const auto& [name, x] : metrics) {
            rec["metrics"][name] = x;
            running.add(name, x, count);
        }
        if (log) *log << rec.dump() << '\n';

        double elapsed = std::chrono::duration<double>(Clock::now() - run_start).count();
        double per_step = elapsed / static_cast<double>(steps_this_run);
        if (tty) {
            // Note [A bar that fits]: the loss terms, then the ETA, the metrics and the speed go as the width requires
            std::vector<ProgressField> fields{{fmt::format("epoch {}/{}  step {}/{}", epoch + 1, (total + per_epoch - 1) / per_epoch, pos + 1, per_epoch), 0}};
            for (const auto& [name, _] : losses) fields.push_back({fmt::format("{} {:.4f}", name, running.mean(name)), fields.size() == 1 ? 1 : 3});
            for (const auto& [name, _] : metrics) fields.push_back({fmt::format("{} {:.4f}", name, running.mean(name)), 4});
            double ex_s = static_cast<double>(running.examples) / std::max(1e-9, std::chrono::duration<double>(Clock::now() - epoch_start).count());
            fields.push_back({fmt::format("{:.0f} ex/s", ex_s), 5});
            fields.push_back({fmt::format("ETA {}", format_duration(per_step * static_cast<double>(total - step - 1))), 2});
            fmt::print(stderr, "\r\033[K{}", fit_progress(fields, terminal_width(STDERR_FILENO)));
        }

        bool end_of_epoch = pos == per_epoch - 1 || step == total - 1;
        bool checkpoint_now = lead && !s.checkpoint.empty() && (s.checkpoint_every > 0 ? ((step + 1) % s.checkpoint_every == 0 || step == total - 1)
                                                                                : end_of_epoch);
        // the log reaches the checkpoint's step before the checkpoint does
        auto make_info = [&] {
            CheckpointInfo info;
            info.run_id = run_id;
            info.function = s.target;
            info.batch = s.batch;
            info.model = model_path;
            info.model_hash = hash;
            info.step = step + 1;
            info.epoch = (step + 1) / per_epoch;
            info.steps_per_epoch = per_epoch;
            info.total_steps = total;
            info.seed = s.seed;
            info.dtype = dtype_name(in.options().dtype);
            info.rng_seed = default_generator().seed();
            info.rng_offset = default_generator().offset();
            info.optimizer = opt->name();
            if (pos != per_epoch - 1) {   // mid-epoch: the resumed run continues these means
                info.epoch_sums = running.sums;
                info.epoch_examples = running.examples;
            }
            info.model_structure = structure;
            info.control = control_state();
            return info;
        };
        auto save = [&] {
            if (log) flush_log(*log, s.log);
            if (!checkpoint_now) return;
            save_checkpoint(s.checkpoint, make_info(), params, opt.get());
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
            for (const auto& [name, _] : losses) {
                line += fmt::format("  {} {:.4f}", name, running.mean(name));
                erec["train"][name] = running.mean(name);
            }
            for (const auto& [name, _] : metrics) {
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
                // Note [Training control]: at the end of whole epochs
                auto value_of = [&](const Monitor& m) {
                    if (m.name == "loss") return e.objective;
                    for (const auto& [name, v] : e.losses) if (name == m.name) return v;
                    for (const auto& [name, v] : e.metrics) if (name == m.name) return v;
                    return std::numeric_limits<double>::quiet_NaN();
                };
                if (!partial && plateau && plateau->step(value_of(plateau->monitor()), opt->base_lr())) {
                    notices.push_back(fmt::format("eval {} has not improved for more than {} epochs: the lr is now {:g}",
                                                  plateau->monitor().name, plateau->patience(),
                                                  opt->current_lr()));
                    erec["lr_reduced_to"] = opt->current_lr();
                }
                bool improved = false;
                if (!partial && s.keep_best && improves(*s.keep_best, value_of(*s.keep_best), best_value)) {
                    best_value = value_of(*s.keep_best);
                    best_epoch = epoch + 1;
                    improved = true;
                    erec["best"] = true;
                    line += "  (best)";
                }
                if (improved && lead) {
                    // the best first, then the last that records it (Note [Training control])
                    CheckpointInfo info = make_info();
                    info.control = Json();
                    info.control["role"] = "best";
                    info.control["metric"] = s.keep_best->name;
                    info.control["value"] = *best_value;
                    info.control["epoch"] = best_epoch;
                    save_checkpoint(best_checkpoint_dir(s.checkpoint), info, params, opt.get());
                }
                if (!partial && s.early_stopping) {
                    const Monitor& m = s.early_stopping->monitor;
                    if (improves(m, value_of(m), stop_best)) {
                        stop_best = value_of(m);
                        stop_bad_epochs = 0;
                    } else if (++stop_bad_epochs >= s.early_stopping->patience && step != total - 1) {
                        stopped_early = true;
                        checkpoint_now = lead && !s.checkpoint.empty();
                        notices.push_back(fmt::format("stopping early: eval {} has not improved on {:.6g} for {} epochs", m.name,
                                                      stop_best ? *stop_best : std::numeric_limits<double>::quiet_NaN(), stop_bad_epochs));
                        erec["stopped_early"] = true;
                    }
                }
            }
            line += fmt::format("  ({:.1f} s, {:.0f} ex/s)", secs, static_cast<double>(running.examples) / std::max(secs, 1e-9));
            if (tty) fmt::print(stderr, "\r\033[K");
            fmt::print("{}\n", line);
            for (const auto& n : notices) fmt::print("  {}\n", n);
            notices.clear();
            std::fflush(stdout);
            if (log) *log << erec.dump() << '\n';
        }
        save();
        if (stopped_early) break;
    }
    if (distributed && reduced_steps > 0) {
        fmt::print("data-parallel over {}: {} of gradients summed per step in {} bucket{}, {:.2f} ms per step waiting for sums\n",
                   comm.describe(), format_bytes(reducer.bytes_per_step()), reducer.buckets(), reducer.buckets() == 1 ? "" : "s",
                   1e3 * comm.wait_seconds / static_cast<double>(reduced_steps));
    }
    if (s.keep_best && best_value) {
        fmt::print("best checkpoint: {} (eval {} {:.6g} at epoch {}); the last is {}\n", best_checkpoint_dir(s.checkpoint), s.keep_best->name,
                   *best_value, best_epoch, s.checkpoint);
    }
    return 0;
}

}  // namespace wengert::dsl
