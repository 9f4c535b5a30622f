// Schedule records as engine schedules and as numbers (Note [Schedules]); reduce_on_plateau.
#include "schedules.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "builtins.hpp"

namespace wengert::dsl {

namespace {

std::int64_t positive_field(const Record& r, const char* k, bool allow_zero = false) {
    const Value& v = r.fields.at(k);
    if (!v.is<std::int64_t>() || v.get<std::int64_t>() < (allow_zero ? 0 : 1)) {
        throw EvalError(r.loc, fmt::format("{}: '{}' must be a {} integer, got {}", r.name, k, allow_zero ? "non-negative" : "positive",
                                           describe(v)));
    }
    return v.get<std::int64_t>();
}

double number_field(const Record& r, const char* k) {
    const Value& v = r.fields.at(k);
    if (!v.is_number() || !std::isfinite(v.number())) {
        throw EvalError(r.loc, fmt::format("{}: '{}' must be a number, got {}", r.name, k, describe(v)));
    }
    return v.number();
}

// Steps per unit of a record's counts: `by = "step"` (1) or "epoch".
std::int64_t unit(const Record& r, std::int64_t per_epoch) {
    auto it = r.fields.find("by");
    if (it == r.fields.end()) return 1;
    const Value& v = it->second;
    if (v.is<std::string>() && v.get<std::string>() == "step") return 1;
    if (v.is<std::string>() && v.get<std::string>() == "epoch") return std::max<std::int64_t>(1, per_epoch);
    throw EvalError(r.loc, fmt::format("{}: 'by' must be \"step\" or \"epoch\", got {}", r.name, describe(v)));
}

std::vector<Value> list_field(const Record& r, const char* k) {
    const Value& v = r.fields.at(k);
    if (v.is<std::shared_ptr<TupleValue>>()) return *v.get<std::shared_ptr<TupleValue>>();
    if (v.is_number()) {
        std::vector<Value> one;   // not {v}: GCC 12 warns (wrongly) of an uninitialised variant in the list
        one.push_back(v);
        return one;
    }
    throw EvalError(r.loc, fmt::format("{}: '{}' must be a list of numbers, got {}", r.name, k, describe(v)));
}

std::int64_t scaled(std::int64_t count, std::int64_t unit, const Record& r) {
    std::int64_t out = 0;
    if (__builtin_mul_overflow(count, unit, &out)) throw EvalError(r.loc, fmt::format("{}: {} epochs is more than 2^63 steps", r.name, count));
    return out;
}

// A `mode` field: "min" (smaller is better), "max", or "auto" (none: settled by resolve_monitor).
std::optional<bool> minimize_of(const Value& mode, Location loc, const char* what) {
    const std::string text = mode.is<std::string>() ? mode.get<std::string>() : "";
    if (text == "min") return true;
    if (text == "max") return false;
    if (text == "auto") return std::nullopt;
    throw EvalError(loc, fmt::format("{}: 'mode' must be \"min\", \"max\" or \"auto\", got {}", what, describe(mode)));
}

}  // namespace

bool is_schedule(const Value& v) { return v.is<std::shared_ptr<Record>>() && v.get<std::shared_ptr<Record>>()->kind == "schedule"; }

Schedule make_schedule(const Record* r, std::int64_t total_steps, std::int64_t per_epoch) {
    if (!r || r->name == "constant_lr") return constant_lr();
    total_steps = std::max<std::int64_t>(1, total_steps);
    const std::int64_t u = unit(*r, per_epoch);
    try {
        if (r->name == "step_lr") return step_lr(scaled(positive_field(*r, "step_size"), u, *r), number_field(*r, "gamma"));
        if (r->name == "exponential") return exponential_lr(number_field(*r, "gamma"), scaled(positive_field(*r, "every"), u, *r));
        if (r->name == "cosine_lr") {
            std::int64_t t_max = r->fields.at("t_max").is_none() ? total_steps : scaled(positive_field(*r, "t_max"), u, *r);
            return cosine_lr(t_max, number_field(*r, "min_lr"));
        }
        if (r->name == "linear_lr") {
            std::int64_t steps = r->fields.at("steps").is_none() ? total_steps : scaled(positive_field(*r, "steps"), u, *r);
            return linear_lr(number_field(*r, "start"), number_field(*r, "end"), steps);
        }
        if (r->name == "piecewise") {
            std::vector<std::int64_t> boundaries;
            for (const Value& b : list_field(*r, "boundaries")) {
                if (!b.is<std::int64_t>()) throw EvalError(r->loc, fmt::format("piecewise: boundaries must be integers, got {}", describe(b)));
                boundaries.push_back(scaled(b.get<std::int64_t>(), u, *r));
            }
            std::vector<double> values;
            for (const Value& v : list_field(*r, "values")) {
                if (!v.is_number() || !std::isfinite(v.number())) throw EvalError(r->loc, fmt::format("piecewise: values must be numbers, got {}", describe(v)));
                values.push_back(v.number());
            }
            return piecewise_lr(std::move(boundaries), std::move(values));
        }
        if (r->name == "reduce_on_plateau") {
            Plateau check(*r);   // the fields; the factor itself is applied by the training loop
            return constant_lr();
        }
        // warmup(steps, then)
        const Value& then = r->fields.at("then");
        const Record* next = nullptr;
        if (!then.is_none()) {
            if (!is_schedule(then)) throw EvalError(r->loc, fmt::format("warmup: 'then' must be a schedule, got {}", describe(then)));
            next = then.get<std::shared_ptr<Record>>().get();
            if (next->name == "reduce_on_plateau") {
                throw EvalError(next->loc, "warmup: 'then' cannot be reduce_on_plateau; give reduce_on_plateau as the schedule and it "
                                           "scales whatever the lr is");
            }
        }
        std::int64_t steps = scaled(positive_field(*r, "steps"), u, *r);
        return linear_warmup(steps, make_schedule(next, std::max<std::int64_t>(1, total_steps - steps), per_epoch));
    } catch (const ShapeError& e) {   // the engine's own checks (boundaries out of order, ...)
        throw EvalError(r->loc, e.what());
    }
}

double schedule_value(const Record& r, const TrainingProgress& p) {
    if (r.name == "reduce_on_plateau") {
        throw EvalError(r.loc, "reduce_on_plateau follows an evaluation metric and can only be the learning rate's schedule "
                               "(`schedule = reduce_on_plateau(...)` in the train block), not a number in an expression");
    }
    return make_schedule(&r, p.total_steps, p.steps_per_epoch)(1.0, p.step);
}

bool improves(const Monitor& m, double value, std::optional<double> best) {
    if (!std::isfinite(value)) return false;
    if (!best) return true;
    return m.minimize.value_or(true) ? value < *best - m.min_delta : value > *best + m.min_delta;
}

Monitor monitor_from_value(const Value& v, Location loc, const char* setting) {
    Monitor m;
    m.loc = loc;
    const Record* r = v.is<std::shared_ptr<Record>>() ? v.get<std::shared_ptr<Record>>().get() : nullptr;
    if (v.is<std::string>()) {
        m.name = v.get<std::string>();
    } else if (r && r->kind == "monitor") {
        const Value& name = r->fields.at("metric");
        if (!name.is<std::string>()) throw EvalError(loc, fmt::format("monitor: 'metric' must be a name, got {}", describe(name)));
        m.name = name.get<std::string>();
        m.minimize = minimize_of(r->fields.at("mode"), loc, "monitor");
        const Value& delta = r->fields.at("min_delta");
        if (!delta.is_number() || !(delta.number() >= 0)) {
            throw EvalError(loc, fmt::format("monitor: 'min_delta' must be a non-negative number, got {}", describe(delta)));
        }
        m.min_delta = delta.number();
    } else {
        throw EvalError(loc, fmt::format("{}: expected the name of an evaluation loss or metric (\"acc\") or monitor(\"acc\", "
                                         "mode = \"max\"), got {}",
                                         setting, describe(v)));
    }
    if (m.name.empty()) throw EvalError(loc, fmt::format("{}: the metric's name is empty", setting));
    return m;
}

void resolve_monitor(Monitor& m, const std::vector<std::string>& losses, const std::vector<std::string>& metrics, const char* setting) {
    bool is_loss = m.name == "loss" || std::find(losses.begin(), losses.end(), m.name) != losses.end();
    bool is_metric = std::find(metrics.begin(), metrics.end(), m.name) != metrics.end();
    if (!is_loss && !is_metric) {
        std::vector<std::string> names = {"loss"};
        names.insert(names.end(), losses.begin(), losses.end());
        names.insert(names.end(), metrics.begin(), metrics.end());
        throw EvalError(m.loc, fmt::format("{}: the evaluation pass has no loss term or metric '{}'; it has {}", setting, m.name,
                                           fmt::join(names, ", ")),
                        closest_names(m.name, names));
    }
    if (!m.minimize) m.minimize = is_loss;   // "auto": losses fall, metrics rise
}

Plateau::Plateau(const Record& r) {
    monitor_ = monitor_from_value(r.fields.at("metric"), r.loc, "reduce_on_plateau");
    factor_ = number_field(r, "factor");
    if (!(factor_ > 0 && factor_ < 1)) throw EvalError(r.loc, fmt::format("reduce_on_plateau: 'factor' must be in (0, 1), got {}", factor_));
    patience_ = positive_field(r, "patience", true);
    threshold_ = number_field(r, "threshold");
    if (threshold_ < 0) throw EvalError(r.loc, fmt::format("reduce_on_plateau: 'threshold' must not be negative, got {}", threshold_));
    min_lr_ = number_field(r, "min_lr");
    if (min_lr_ < 0) throw EvalError(r.loc, fmt::format("reduce_on_plateau: 'min_lr' must not be negative, got {}", min_lr_));
    monitor_.minimize = minimize_of(r.fields.at("mode"), r.loc, "reduce_on_plateau");
}

bool Plateau::step(double value, double base_lr) {
    // PyTorch: better when value < best * (1 - threshold) (min), value > best * (1 + threshold) (max)
    bool better = false;
    if (std::isfinite(value)) {
        if (!best_) better = true;
        else if (monitor_.minimize.value_or(true)) better = value < *best_ * (1 - threshold_);
        else better = value > *best_ * (1 + threshold_);
    }
    if (better) {
        best_ = value;
        bad_epochs_ = 0;
        return false;
    }
    if (++bad_epochs_ <= patience_) return false;
    bad_epochs_ = 0;
    double lr = base_lr * scale_;
    double next = std::max(lr * factor_, min_lr_);
    if (lr - next <= 1e-8) return false;   // PyTorch's eps: a change this small is not made
    scale_ = base_lr > 0 ? next / base_lr : scale_;
    return true;
}

Json Plateau::state() const {
    Json j;
    j["best"] = best_ ? Json(*best_) : Json();
    j["bad_epochs"] = bad_epochs_;
    j["scale"] = scale_;
    return j;
}

void Plateau::load_state(const Json& j) {
    best_ = j.at("best").is_null() ? std::nullopt : std::optional<double>(j.at("best").as_number());
    bad_epochs_ = j.at("bad_epochs").as_int();
    scale_ = j.at("scale").as_number();
}

}  // namespace wengert::dsl
