// The train block: its settings, read and checked, and the optimizer they name; and train(),
// which runs them (a Trainer, trainer.hpp, saying what it does through a Reporter, reporter.hpp).
#include "train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <optional>
#include <string_view>

#include "builtins.hpp"
#include "reporter.hpp"
#include "trainer.hpp"

namespace wengert::dsl {

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

void check_freeze_patterns(Interpreter& in, const TrainSettings& s) {
    std::vector<std::string> unmatched = std::as_const(in.params()).unmatched_freeze_patterns();
    if (unmatched.empty()) return;
    std::vector<std::string> names;
    for (const Parameter* p : std::as_const(in.params()).all()) names.push_back(p->name);
    throw EvalError(s.freeze_loc, fmt::format("train: freeze pattern \"{}\" matches no parameter of {}", unmatched.front(), s.target),
                    closest_names(unmatched.front(), names));
}

Location train_block_loc(const Interpreter& in) {
    for (const auto& d : in.main_module().decls) if (d.as<TrainBlock>() == in.train_block()) return d.loc;
    return Location{in.main_module().file, 0, 0, 0};
}

TrainSettings check_train_block(Interpreter& in) {
    TrainSettings s;
    const TrainBlock* block = in.train_block();
    if (!block) return s;
    s.target = block->target;
    for (const auto& kw : block->settings) {
        try {
            apply_setting(in, kw, s);
        } catch (const EvalError& e) {
            in.sink().report(e);
        } catch (const Error& e) {
            in.sink().error(kw.value->loc, e.what());
        }
    }
    try {
        make_optimizer(s, std::nullopt, train_block_loc(in));
        make_schedule(s.schedule.get(), 1, 1);
    } catch (const EvalError& e) {
        in.sink().report(e);
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

void train(Interpreter& in, const std::string& model_path, const std::string& model_text, const TrainSettings& settings,
           const TrainOverrides& overrides, const DataOptions& data_options) {
    Trainer trainer(in, model_path, model_text, settings, overrides, data_options);
    trainer.initialise();
    if (trainer.nothing_to_do()) return;
    trainer.check_evaluation();
    Reporter reporter(trainer.plan(), trainer.log_path(), overrides.resume, overrides.progress);
    trainer.run(reporter);
}

}  // namespace wengert::dsl
