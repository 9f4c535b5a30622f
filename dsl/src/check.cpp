#include "check.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <utility>

#include "train.hpp"
#include "wengert/gradcheck.hpp"
#include "wengert/kernels.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

namespace {

void collect_integers(const Expr& e, std::set<std::int64_t>& out) {
    if (const auto* n = e.as<IntegerLiteral>()) out.insert(n->value);
    for_each_child(e, [&](const Expr& child) { collect_integers(child, out); });
}

std::set<std::int64_t> model_integers(const Interpreter& in) {
    std::set<std::int64_t> out;
    for (const Module* m : in.modules()) {
        for (const auto& decl : m->decls) {
            if (const auto* f = decl.as<FunctionDef>()) {
                for (const auto& p : f->params) {
                    if (p.default_value) collect_integers(*p.default_value, out);
                    if (p.type) for (const auto& d : p.type->dims) if (const auto* n = std::get_if<std::int64_t>(&d.size)) out.insert(*n);
                }
                for (const auto& st : f->body) {
                    if (const auto* a = st.as<Assign>()) collect_integers(*a->value, out);
                    else if (const auto* l = st.as<LossTerm>()) collect_integers(*l->value, out);
                    else if (const auto* mt = st.as<MetricTerm>()) collect_integers(*mt->value, out);
                    else if (const auto* r = st.as<Return>()) for (const auto& v : r->values) collect_integers(*v, out);
                }
            } else if (const auto* l = decl.as<LayerDef>()) {
                collect_integers(*l->body, out);
                for (const auto& p : l->params) if (p.default_value) collect_integers(*p.default_value, out);
            } else if (const auto* c = decl.as<Constant>()) {
                collect_integers(*c->value, out);
            } else if (const auto* pd = decl.as<ParamDecl>()) {
                collect_integers(*pd->init, out);
                for (const auto& d : pd->type.dims) if (const auto* n = std::get_if<std::int64_t>(&d.size)) out.insert(*n);
            }
        }
    }
    return out;
}

// Symbolic sizes of a function's annotations, B first, each mapped to a prime the model
// does not mention, so that a literal size equal to B by chance is still caught.
// Note [Bounded symbolic sizes]: the primes are taken from [37, kMaxSymbolicSize]. A file
// that writes every prime below it (100k distinct integer literals) would otherwise push B
// to the first prime beyond them, and every input `check` makes grows with it: a model of
// f32[B, L, D] inputs took gigabytes. When the window is used up, its primes are reused in
// order: the check still runs with small sizes, only a literal equal to one of them is not
// told apart from the symbol.
constexpr std::int64_t kMaxSymbolicSize = 1021;

bool is_prime(std::int64_t n) {
    for (std::int64_t k = 2; k * k <= n; ++k) if (n % k == 0) return false;
    return true;
}

// A stand-in must divide no literal of the model (Note [Sizes as expressions]).
bool divides_no_literal(std::int64_t n, const std::set<std::int64_t>& used) {
    return std::none_of(used.begin(), used.end(), [n](std::int64_t u) { return u != 0 && u % n == 0; });
}

// `used`: model_integers(in), worked out once for all the defs a check runs (per def, a file
// of 20k defs walked its whole text 20k times).
std::vector<std::pair<std::string, std::int64_t>> symbolic_sizes(const std::set<std::int64_t>& used, const FunctionDef& def) {
    std::vector<std::string> names{"B"};
    for (const auto& p : def.params) {
        if (!p.type) continue;
        for (const auto& d : p.type->dims) {
            if (const auto* s = std::get_if<std::string>(&d.size)) {
                if (std::find(names.begin(), names.end(), *s) == names.end()) names.push_back(*s);
            }
        }
    }
    // Note [Sizes as expressions]: a stand-in divides no literal of the model
    std::vector<std::int64_t> unused, all;
    for (std::int64_t n = 37; n <= kMaxSymbolicSize; ++n) {
        if (!is_prime(n)) continue;
        all.push_back(n);
        if (divides_no_literal(n, used)) unused.push_back(n);
    }
    std::vector<std::pair<std::string, std::int64_t>> out;
    for (std::size_t i = 0; i < names.size(); ++i) {
        std::int64_t size = i < unused.size() ? unused[i] : all[(i - unused.size()) % all.size()];
        out.emplace_back(names[i], size);
    }
    return out;
}

// Note [Sizes as expressions]
// The check runs with each symbolic size a prime stand-in (B = 37, ...), so a size computed
// from them is a multiple: reshape(x, (-1, 64)) on f32[B, 16, 64] gives 37 * 16 = 592 rows. A
// number of the output is written as the product of the symbols whose stand-ins divide it, and
// what is left: 592 as B*16, 37 * 41 as B*T, 37 * 37 * 2 as B^2*2. The stand-ins are primes no
// literal of the model is a multiple of (symbolic_sizes), so a size the model writes is never
// mistaken for one; a size made by adding sizes (a concatenation of 784 and 400 features is
// 1184 = 37 * 32) can still be, which no single run can tell apart.
std::string symbolic_number(std::int64_t n, const std::vector<std::pair<std::string, std::int64_t>>& sizes) {
    if (n <= 0) return std::to_string(n);
    std::vector<std::string> factors;
    for (const auto& [name, value] : sizes) {
        int power = 0;
        while (n % value == 0) {
            n /= value;
            ++power;
        }
        if (power > 0) factors.push_back(power == 1 ? name : fmt::format("{}^{}", name, power));
    }
    if (factors.empty()) return std::to_string(n);
    if (n != 1) factors.push_back(std::to_string(n));
    return fmt::format("{}", fmt::join(factors, "*"));
}

std::string symbolic_text(const std::string& text, const std::vector<std::pair<std::string, std::int64_t>>& sizes) {
    static const std::regex number("\\b[0-9]+\\b");
    std::string out;
    auto begin = std::sregex_iterator(text.begin(), text.end(), number);
    std::size_t at = 0;
    for (auto it = begin; it != std::sregex_iterator(); ++it) {
        const std::smatch& m = *it;
        out.append(text, at, static_cast<std::size_t>(m.position()) - at);
        const std::string digits = m.str();
        // a number too long for int64 is left as it is
        out += digits.size() > 18 ? digits : symbolic_number(std::stoll(digits), sizes);
        at = static_cast<std::size_t>(m.position() + m.length());
    }
    out.append(text, at, std::string::npos);
    return out;
}

std::vector<Tensor> inputs_for(Interpreter& in, const FunctionDef& def,
                               const std::map<std::string, std::int64_t>& sizes, std::uint64_t seed, bool random) {
    std::vector<Tensor> out;
    Generator gen(seed);
    for (const auto& p : def.params) {
        if (!p.type) {
            throw EvalError(p.loc, fmt::format("{}: parameter '{}' has no type annotation such as f32[B, 784], so it "
                                               "cannot be checked without data", def.name, p.name));
        }
        Shape shape;
        for (const auto& d : p.type->dims) {
            if (const auto* n = std::get_if<std::int64_t>(&d.size)) shape.push_back(*n);
            else shape.push_back(sizes.at(std::get<std::string>(d.size)));
        }
        ElementLimit limit(kMaxElements, fmt::format("{}: input '{}'", def.name, p.name), "an input made from an annotation may have");
        try {
            ElementLimit::check(shape);
        } catch (const ShapeError& e) {
            throw EvalError(p.type->loc, e.what());
        }
        DType dtype = parse_dtype(p.type->dtype, "annotation");
        if (is_floating(dtype)) {
            Tensor t = Tensor::zeros(shape, in.options().dtype);
            if (random) gen.fill_uniform(t, 0.0, 1.0);
            out.push_back(t);
        } else if (dtype == DType::u8) {
            out.push_back(Tensor::ones(shape, DType::u8));
        } else {
            out.push_back(Tensor::zeros(shape, DType::i64));
        }
    }
    return out;
}

const FunctionDef& require_function(const Interpreter& in, const std::string& name) {
    const FunctionDef* def = in.find_function(name);
    if (!def) throw EvalError(Location{}, fmt::format("the model has no function '{}'", name));
    return *def;
}

std::string group_thousands(std::int64_t n) {
    std::string s = std::to_string(n), out;
    int count = 0;
    for (auto it = s.rbegin(); it != s.rend(); ++it) {
        if (count && count % 3 == 0) out.insert(out.begin(), ',');
        out.insert(out.begin(), *it);
        ++count;
    }
    return out;
}

// Note [Parameters without a gradient]
// A parameter the objective does not reach through differentiable ops never trains: the
// classic case is a category picked with argmax and then looked up (docs/onehot.md), which
// leaves everything before the argmax untrained without any error. The check runs backward
// from the objective and warns, at the def, for each layer whose parameters it never reached.
void warn_unreached(Interpreter& in, const std::string& name, const RunResult& result, Tape& tape) {
    if (!result.objective.defined() || !result.objective.requires_grad()) return;
    tape.backward(result.objective);
    std::vector<std::string> layers;
    for (const Parameter* p : std::as_const(in.params()).all()) {
        if (!p->trainable || p->grad.defined()) continue;
        auto dot = p->name.rfind('.');
        std::string layer = dot == std::string::npos ? p->name : p->name.substr(0, dot);
        if (layers.empty() || layers.back() != layer) layers.push_back(layer);
    }
    if (layers.empty()) return;
    Location at;
    for (const auto& d : in.main_module().decls) {
        if (const auto* f = d.as<FunctionDef>(); f && f->name == name) at = d.loc;
    }
    in.sink().report(Diagnostic{Severity::warning, at,
                                fmt::format("{}: no gradient from the loss reaches {} {}, so {} will not train (argmax, "
                                            "comparisons and integer casts pass none; to pick a category and keep one: "
                                            "straight_through, gumbel_softmax, sharpen)",
                                            name, layers.size() == 1 ? "layer" : "layers", fmt::join(layers, ", "),
                                            layers.size() == 1 ? "it" : "they"),
                                {}, {}});
}

}  // namespace

namespace {

// The functions `wengert check` runs: the one asked for, else the train block's, else every
// function whose parameters are all annotated.
std::vector<std::string> check_targets(Interpreter& in, const std::optional<std::string>& function) {
    std::vector<std::string> targets;
    if (function) targets.push_back(*function);
    else if (const TrainBlock* tb = in.train_block()) targets.push_back(tb->target);
    else {
        for (const auto& d : in.main_module().decls) {
            const auto* f = d.as<FunctionDef>();
            if (f && std::all_of(f->params.begin(), f->params.end(), [](const Param& p) { return p.type.has_value(); })) {
                targets.push_back(f->name);
            }
        }
    }
    return targets;
}

// Runs one function on inputs made from its annotations, reporting what fails, and returns
// its table of named values with symbolic sizes.
// One check run of a function with the stand-ins `sizes`: what it reports goes to the sink;
// true when it reported nothing. `ran` is false when its inputs could not be made.
bool check_run(Interpreter& in, const FunctionDef& def, const std::vector<std::pair<std::string, std::int64_t>>& sizes,
               RunResult& result, bool& ran) {
    std::map<std::string, std::int64_t> size_map(sizes.begin(), sizes.end());
    auto filter = [sizes](const std::string& s) { return symbolic_text(s, sizes); };
    const Location at = def.params.empty() ? Location{} : def.params[0].loc;
    const std::size_t errors_before = in.sink().error_count();
    ran = false;
    std::vector<Tensor> inputs;
    try {
        inputs = inputs_for(in, def, size_map, in.options().seed, false);
    } catch (const EvalError& e) {
        in.sink().report(e, filter);
        return false;
    } catch (const Error& e) {
        in.sink().error(at, filter(e.what()));
        return false;
    }
    in.set_message_filter(filter);
    in.set_check_mode(true);
    for (Parameter* p : in.params().all()) p->grad = Tensor();
    ran = true;
    try {
        result = in.run(def.name, inputs, Mode::train);
    } catch (const EvalError& e) {
        in.sink().report(e, filter);
    } catch (const Error& e) {
        in.sink().error(at, filter(e.what()));
    }
    in.set_check_mode(false);
    in.set_message_filter(nullptr);
    return in.sink().error_count() == errors_before;
}

// Note [Bounded sequence lengths]
// A symbolic size besides B (a sequence length T) may be bounded by the model: a
// positional_embedding(16, d) takes at most 16 positions, and T's stand-in (37 or more) is
// beyond it. When a run with the usual stand-ins fails and the function has such sizes, the
// check runs it again with them the smaller primes that divide no literal of the model (31,
// 29, ... 3), largest first, and keeps the first run that reports nothing; when none does,
// the errors of the run that got furthest stand (a mistake after the positional embedding is
// then reported, not hidden behind the bound). B keeps its stand-in, so sizes still print as
// expressions.
std::vector<std::vector<std::pair<std::string, std::int64_t>>> smaller_stand_ins(
    const std::vector<std::pair<std::string, std::int64_t>>& sizes, const std::set<std::int64_t>& used) {
    std::vector<std::int64_t> primes;
    for (std::int64_t n = 31; n >= 3; --n) if (is_prime(n) && divides_no_literal(n, used)) primes.push_back(n);
    std::vector<std::vector<std::pair<std::string, std::int64_t>>> out;
    const std::size_t others = sizes.size() - 1;   // every size but B
    for (std::size_t first = 0; others > 0 && first + others <= primes.size(); ++first) {
        auto trial = sizes;
        for (std::size_t i = 0; i < others; ++i) trial[i + 1].second = primes[first + i];
        out.push_back(std::move(trial));
    }
    return out;
}

// Runs one function on inputs made from its annotations, reporting what fails, and returns
// its table of named values with symbolic sizes.
std::string check_function(Interpreter& in, const std::string& name, const std::set<std::int64_t>& used, const TrainBlock* train) {
    const FunctionDef& def = require_function(in, name);
    auto sizes = symbolic_sizes(used, def);
    const std::size_t errors_before = in.sink().error_count();
    auto tape = std::make_unique<Tape>();   // recording, so that warn_unreached can follow the objective back
    RunResult result;
    bool ran = false;
    bool clean = check_run(in, def, sizes, result, ran);
    // Note [Bounded sequence lengths]: tried again with smaller stand-ins; when no trial is
    // clean, the run that got furthest (computed the most named values; the first on a tie)
    // runs once more, so that its errors and values are what the check shows
    if (!clean) {
        auto best = sizes;
        std::size_t furthest = in.named_values().size();
        auto rerun = [&](const std::vector<std::pair<std::string, std::int64_t>>& trial) {
            in.sink().discard_from(errors_before);
            tape.reset();   // the one before is current no more
            tape = std::make_unique<Tape>();
            result = RunResult{};
            clean = check_run(in, def, trial, result, ran);
            sizes = trial;
        };
        for (const auto& trial : smaller_stand_ins(sizes, used)) {
            rerun(trial);
            if (clean) break;
            if (in.named_values().size() > furthest) {
                furthest = in.named_values().size();
                best = trial;
            }
        }
        if (!clean && sizes != best) rerun(best);
    }
    std::string table;
    if (!ran) return table;   // nothing ran, so there are no values to list
    if (clean) warn_unreached(in, name, result, *tape);
    if (train && train->target == name && result.losses.empty() && clean) {
        for (const auto& d : in.main_module().decls) {
            if (d.as<TrainBlock>() == train) {
                in.sink().error(d.loc, fmt::format("train: '{}' defines no loss to train: add a `loss name = ...` statement", name));
            }
        }
    }
    std::vector<std::array<std::string, 3>> rows;
    for (const auto& nv : in.named_values()) {
        std::string shape = "-", dtype = kind_name(nv.value);
        if (nv.value.is<Var>()) {
            shape = symbolic_text(nv.value.get<Var>().shape().str(), sizes);
            dtype = dtype_name(nv.value.get<Var>().dtype());
        } else if (nv.value.is<LayerPtr>()) {
            dtype = fmt::format("layer {}", nv.value.get<LayerPtr>()->kind());
        }
        rows.push_back({nv.path, shape, dtype});
    }
    for (const auto& [loss, v] : result.losses) rows.push_back({"loss " + loss, "[]", dtype_name(v.dtype())});
    for (const auto& [metric, v] : result.metrics) rows.push_back({"metric " + metric, "[]", dtype_name(v.dtype())});
    std::size_t width = 32, shape_width = 20;
    for (const auto& r : rows) {
        width = std::max(width, r[0].size());
        shape_width = std::max(shape_width, r[1].size());
    }
    table += fmt::format("{}\n  {:<{}} {:<{}} {}\n", name, "value", width, "shape", shape_width, "dtype");
    for (const auto& r : rows) table += fmt::format("  {:<{}} {:<{}} {}\n", r[0], width, r[1], shape_width, r[2]);
    return table;
}

// The parameters grouped by layer, with counts and shapes (Keras's summary), counted into `rep`.
std::string params_table(Interpreter& in, CheckReport& rep) {
    std::string params_table;
    // parameters grouped by layer: the name up to its last dot
    std::vector<std::pair<std::string, std::vector<const Parameter*>>> layers;
    for (const Parameter* p : std::as_const(in.params()).all()) {
        auto dot = p->name.rfind('.');
        std::string layer = dot == std::string::npos ? p->name : p->name.substr(0, dot);
        if (layers.empty() || layers.back().first != layer) layers.push_back({layer, {}});
        layers.back().second.push_back(p);
    }
    std::size_t width = 32;
    for (const auto& [layer, _] : layers) width = std::max(width, layer.size());
    params_table += fmt::format("parameters\n  {:<{}} {:>12}  {}\n", "layer", width, "count", "shapes");
    std::int64_t frozen_total = 0;
    for (const auto& [layer, ps] : layers) {
        std::int64_t count = 0, frozen = 0;
        std::string shapes;
        for (const Parameter* p : ps) {
            count += p->value.numel();
            if (!p->trainable) frozen += p->value.numel();
            auto dot = p->name.rfind('.');
            shapes += fmt::format("{}{} {}", shapes.empty() ? "" : ", ", dot == std::string::npos ? p->name : p->name.substr(dot + 1),
                                  p->value.shape().str());
        }
        rep.total_params += count;
        frozen_total += frozen;
        // Keras's summary: which weights do not train
        std::string note = frozen == 0 ? "" : frozen == count ? "  (frozen)" : fmt::format("  ({} frozen)", group_thousands(frozen));
        params_table += fmt::format("  {:<{}} {:>12}  {}{}\n", layer, width, group_thousands(count), shapes, note);
    }
    params_table += fmt::format("  {:<{}} {:>12}\n", "total", width, group_thousands(rep.total_params));
    if (frozen_total > 0) {
        params_table += fmt::format("  {:<{}} {:>12}\n", "trainable", width, group_thousands(rep.total_params - frozen_total));
        params_table += fmt::format("  {:<{}} {:>12}\n", "frozen", width, group_thousands(frozen_total));
    }
    return params_table;
}

}  // namespace

CheckReport check_model(Interpreter& in, std::optional<std::string> function) {
    std::vector<std::string> targets = check_targets(in, function);
    CheckReport rep;
    const TrainBlock* train = in.train_block();
    const std::set<std::int64_t> used = model_integers(in);
    std::string values_table;
    for (const auto& name : targets) values_table += check_function(in, name, used, train);
    TrainSettings settings = check_train_block(in);
    in.params().freeze(settings.freeze);
    // the patterns name the train target's parameters: only a check that ran it has them all
    if (train && std::find(targets.begin(), targets.end(), train->target) != targets.end()) {
        try {
            check_freeze_patterns(in, settings);
        } catch (const EvalError& e) {
            in.sink().report(e);
        }
    }
    rep.table = values_table + "\n" + params_table(in, rep);
    return rep;
}

std::vector<Tensor> example_inputs(Interpreter& in, const std::string& function, std::int64_t batch, std::uint64_t seed) {
    const FunctionDef& def = require_function(in, function);
    std::map<std::string, std::int64_t> sizes;
    for (const auto& p : def.params) {
        if (!p.type) continue;
        for (const auto& d : p.type->dims) if (const auto* s = std::get_if<std::string>(&d.size)) sizes[*s] = 3;
    }
    sizes["B"] = batch;
    return inputs_for(in, def, sizes, seed, true);
}

namespace {

// Note [Surrogate gradients]
// Some models differ from finite differences on purpose. straight_through, and
// gumbel_softmax(hard = true) which records one, differentiate their forward as if it were the
// identity: the forward is piecewise constant, and the gradient is the estimator's. detach
// stops a gradient, and `detach(q) + c * (q - detach(q))` rescales one (models/noisy_labels.wg
// trains Q at a hundredth of its gradient). A parameter whose gradient passes through such an
// op disagrees with finite differences with nothing wrong, so gradcheck names the op for that
// parameter instead of reporting a mismatch. A parameter counts when such an op that the
// objective depends on depends on it; one walk of the tape backwards from the objective finds
// them. detach records no input (it passes no gradient), but its value is its input's tensor:
// the input is the latest earlier node holding that storage.
constexpr const char* kSurrogateOps[] = {"straight_through", "detach"};

// The storage of every parameter (as graph_dot names them) whose gradient passes through a
// surrogate op, with that op's name.
std::map<const void*, std::string> surrogate_params(Tape& tape, const Var& objective) {
    const auto n = static_cast<std::size_t>(objective.id()) + 1;
    std::vector<bool> reaches(n, false);
    std::vector<const char*> behind(n, nullptr);   // the surrogate op a node's gradient passes through
    std::map<const void*, std::vector<std::int32_t>> holders;   // storage -> the nodes holding it, in order
    for (std::int32_t id = 0; id < static_cast<std::int32_t>(n); ++id) holders[Var(&tape, id).value().storage().get()].push_back(id);
    reaches[n - 1] = true;
    std::map<const void*, std::string> found;
    for (auto id = static_cast<std::int32_t>(n) - 1; id >= 0; --id) {
        const auto at = static_cast<std::size_t>(id);
        if (!reaches[at]) continue;
        Var v(&tape, id);
        const std::string op = tape.op_name(v);
        for (const char* surrogate : kSurrogateOps) {
            if (op == surrogate) behind[at] = surrogate;
        }
        if (behind[at] && op == "param") found.emplace(v.value().storage().get(), behind[at]);
        std::vector<std::int32_t> sources(tape.inputs_of(v).begin(), tape.inputs_of(v).end());
        if (op == "detach") {
            const auto& same = holders[v.value().storage().get()];
            auto before = std::lower_bound(same.begin(), same.end(), id);
            if (before != same.begin()) sources.push_back(*std::prev(before));
        }
        for (auto src : sources) {
            reaches[static_cast<std::size_t>(src)] = true;
            if (behind[at] && !behind[static_cast<std::size_t>(src)]) behind[static_cast<std::size_t>(src)] = behind[at];
        }
    }
    return found;
}

}  // namespace

GradcheckReport gradcheck_model(Interpreter& in, const std::string& function, const std::vector<Tensor>& inputs,
                                std::int64_t max_elements, double eps) {
    std::uint64_t seed = in.options().seed;
    auto objective = [&]() {
        manual_seed(seed);
        Tape tape;
        NoGrad no_grad;
        RunResult r = in.run(function, inputs, Mode::train);
        if (!r.objective.defined()) throw EvalError(Location{}, fmt::format("{} has no loss terms to check", function));
        return r.objective.item();
    };
    std::map<const void*, std::string> surrogates;
    {
        manual_seed(seed);
        Tape tape;
        RunResult r = in.run(function, inputs, Mode::train);
        if (!r.objective.defined()) throw EvalError(Location{}, fmt::format("{} has no loss terms to check", function));
        surrogates = surrogate_params(tape, r.objective);
        in.params().zero_grad();
        tape.backward(r.objective);
    }
    GradcheckReport rep;
    rep.table = fmt::format("{:<36} {:>9} {:>12} {:>12} {:>14} {:>14}  {}\n", "parameter", "checked", "max abs err", "max rel err",
                            "tape", "numeric", "worst element");
    const GradCheckOptions tolerance{.eps = eps, .atol = 1e-5, .rtol = 1e-4};
    for (Parameter* p : in.params().all()) {
        if (!p->trainable) continue;
        Tensor grad = p->grad.defined() ? p->grad : Tensor::zeros(p->value.shape(), DType::f64);
        const TensorGradCheck c = check_gradient(p->value, grad, objective, tolerance, max_elements);
        std::string where;
        std::int64_t rem = c.worst_index;
        std::vector<std::int64_t> index(static_cast<std::size_t>(p->value.ndim()));
        for (int a = p->value.ndim() - 1; a >= 0; --a) {
            index[static_cast<std::size_t>(a)] = rem % p->value.shape()[a];
            rem /= p->value.shape()[a];
        }
        for (std::size_t a = 0; a < index.size(); ++a) where += fmt::format("{}{}", a ? ", " : "", index[a]);
        // Note [Surrogate gradients]: a surrogate's gradient differs by design, not a mismatch
        auto surrogate = surrogates.find(p->value.storage().get());
        std::string verdict;
        if (!c.ok && surrogate != surrogates.end()) {
            verdict = fmt::format("  surrogate gradient ({}), by design", surrogate->second);
            ++rep.surrogate;
        } else if (!c.ok) {
            verdict = "  MISMATCH";
            rep.ok = false;
        }
        rep.table += fmt::format("{:<36} {:>9} {:>12.3e} {:>12.3e} {:>14.8g} {:>14.8g}  [{}]{}\n", p->name, c.checked, c.max_abs_error,
                                 c.rel_error, c.analytic, c.numeric, where, verdict);
    }
    if (!rep.ok) rep.table += "some gradients disagree with finite differences\n";
    else if (rep.surrogate == 0) rep.table += "all gradients agree with finite differences\n";
    else {
        rep.table += fmt::format("all exact gradients agree with finite differences; {} parameter{} with a surrogate gradient "
                                 "differ{} from them by design\n",
                                 rep.surrogate, rep.surrogate == 1 ? "" : "s", rep.surrogate == 1 ? "s" : "");
    }
    return rep;
}

std::string graph_dot(Interpreter& in, const std::string& function) {
    const FunctionDef& def = require_function(in, function);
    auto sizes = symbolic_sizes(model_integers(in), def);
    std::map<std::string, std::int64_t> size_map(sizes.begin(), sizes.end());
    Tape tape;
    NoGrad no_grad;
    in.run(function, inputs_for(in, def, size_map, in.options().seed, false), Mode::eval);
    std::map<std::int32_t, std::string> names;
    for (const auto& nv : in.named_values()) {
        if (nv.value.is<Var>() && nv.value.get<Var>().tape() == &tape) names[nv.value.get<Var>().id()] = nv.path;
    }
    std::map<const void*, std::string> param_names;
    for (const Parameter* p : std::as_const(in.params()).all()) param_names[p->value.storage().get()] = p->name;
    std::string out = fmt::format("digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n", function);
    for (std::size_t id = 0; id < tape.size(); ++id) {
        Var v(&tape, static_cast<std::int32_t>(id));
        std::string op = tape.op_name(v);
        std::string label = op;
        if (op == std::string("param")) {
            auto it = param_names.find(v.value().storage().get());
            if (it != param_names.end()) label = it->second;
        }
        if (auto it = names.find(static_cast<std::int32_t>(id)); it != names.end()) label = fmt::format("{}\\n{}", it->second, op);
        std::string shape = symbolic_text(v.shape().str(), sizes);
        const char* style = op == std::string("param") ? ", style=filled, fillcolor=\"#e8f0ff\"" : (op == std::string("input") ? ", style=dashed" : "");
        out += fmt::format("  n{} [label=\"{}\\n{} {}\"{}];\n", id, label, shape, dtype_name(v.dtype()), style);
        for (auto src : tape.inputs_of(v)) out += fmt::format("  n{} -> n{};\n", src, id);
    }
    out += "}\n";
    return out;
}

}  // namespace wengert::dsl
