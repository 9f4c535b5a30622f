// `wengert predict`: a checkpoint's model on inputs without labels, batch by batch, in predict
// mode; the outputs (and values asked for with --dump) joined along the first axis.
#include <fmt/ranges.h>

#include <algorithm>
#include <set>

#include "../checkpoint.hpp"
#include "cli.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

namespace {

// The arrays of `path` as the arguments of `def`, by name; an argument the file does not hold
// is absent (an undefined tensor: Note [Absent inputs] in interpreter_impl.hpp).
std::vector<Tensor> named_inputs(const FunctionDef& def, const std::string& path) {
    NamedTensors arrays = load_npz(path);
    std::vector<std::string> names;
    for (const auto& p : def.params) names.push_back(p.name);
    for (const auto& [name, _] : arrays) {
        if (std::find(names.begin(), names.end(), name) == names.end()) {
            auto near = closest_names(name, names);
            throw IOError(path, fmt::format("the file holds '{}', which is no argument of {} ({}){}", name, def.name, fmt::join(names, ", "),
                                            near.empty() ? "" : fmt::format("; did you mean '{}'?", near.front())));
        }
    }
    std::vector<Tensor> inputs;
    std::int64_t rows = -1;
    std::string first;
    for (const auto& p : def.params) {
        auto it = std::find_if(arrays.begin(), arrays.end(), [&](const auto& a) { return a.first == p.name; });
        inputs.push_back(it == arrays.end() ? Tensor() : it->second);
        if (it == arrays.end()) continue;
        if (it->second.ndim() == 0) throw IOError(path, fmt::format("'{}' is a scalar; predict needs one row per example", p.name));
        if (rows < 0) {
            rows = it->second.shape()[0];
            first = p.name;
        } else if (it->second.shape()[0] != rows) {
            throw IOError(path, fmt::format("'{}' has {} rows but '{}' has {}: every input needs one row per example", p.name,
                                            it->second.shape()[0], first, rows));
        }
    }
    if (rows < 0) throw IOError(path, fmt::format("the file holds none of {}'s arguments ({})", def.name, fmt::join(names, ", ")));
    return inputs;
}

// Per-batch values joined along the first axis when each has the batch's rows there; a value
// without one row per example (the same in every batch) is kept from the first batch.
struct Collected {
    std::vector<Tensor> parts;
    bool per_row = true;
    void add(const Tensor& value, std::int64_t rows) {
        if (value.ndim() == 0 || value.shape()[0] != rows) per_row = false;
        if (parts.empty() || per_row) parts.push_back(value.contiguous());
    }
    Tensor joined() const { return per_row ? join_rows(parts) : parts.front(); }
};

}  // namespace

int cmd_predict(const Cli& cli) {
    for (const char* k : {"checkpoint", "inputs", "out"}) {
        if (!cli.has(k)) throw UsageError(fmt::format("predict: --{} is required", k));
    }
    const std::int64_t batch = cli.integer("batch").value_or(256);
    if (batch < 1) throw UsageError(fmt::format("--batch must be positive, got {}", batch));
    return with_model(cli, interpreter_options(cli), [&](Interpreter& in, ParamStore& params, DiagnosticSink&) {
        LoadedCheckpoint ck = load_checkpoint(cli.get("checkpoint"));
        std::string fname = cli.has("function") ? target_function(in, cli) : !ck.info.function.empty() ? ck.info.function : target_function(in, cli);
        const FunctionDef* def = in.find_function(fname);
        if (!def) {
            throw IOError(cli.get("checkpoint"), fmt::format("the checkpoint trained function '{}', which this model does not define", fname));
        }
        const std::vector<std::string> names = output_names(*def);
        if (names.empty()) throw UsageError(fmt::format("predict: {} returns nothing to write", fname));
        std::vector<Tensor> inputs = named_inputs(*def, cli.get("inputs"));
        const std::int64_t n = std::find_if(inputs.begin(), inputs.end(), [](const Tensor& t) { return t.defined(); })->shape()[0];
        const std::vector<std::string> dumps = cli.has("dump") ? cli.options.at("dump") : std::vector<std::string>{};
        std::set<std::string> wanted;
        for (const auto& spec : dumps) wanted.insert(dump_spec(spec).first);

        create_params(in, fname, rows_of(inputs, 0, std::min(batch, n)), Mode::predict);
        params_from_checkpoint(params, ck.params, ck.params_path);
        in.set_progress(checkpoint_progress(ck.info));
        in.want_values(wanted);
        manual_seed(in.options().seed);

        std::vector<Collected> outputs(names.size()), dumped(dumps.size());
        for (std::int64_t start = 0; start < n; start += batch) {
            const std::int64_t stop = std::min(n, start + batch);
            Tape tape;
            NoGrad no_grad;
            RunResult r = in.run(fname, rows_of(inputs, start, stop), Mode::predict);
            for (std::size_t i = 0; i < r.outputs.size() && i < names.size(); ++i) {
                if (!r.outputs[i].is<Var>()) {
                    throw UsageError(fmt::format("predict: {} returns {} as '{}', not a tensor", fname, describe(r.outputs[i]), names[i]));
                }
                outputs[i].add(r.outputs[i].get<Var>().value(), stop - start);
            }
            for (std::size_t i = 0; i < dumps.size(); ++i) dumped[i].add(named_tensor(in, dump_spec(dumps[i]).first).value(), stop - start);
        }
        NamedTensors out;
        for (std::size_t i = 0; i < names.size(); ++i) out.emplace_back(names[i], outputs[i].joined());
        save_npz(cli.get("out"), out);
        for (std::size_t i = 0; i < dumps.size(); ++i) save_npy(dump_spec(dumps[i]).second, dumped[i].joined());
        std::vector<std::string> written;
        for (const auto& [name, t] : out) written.push_back(fmt::format("{} {}", name, t.shape().str()));
        fmt::print(stderr, "predict: {} on {} rows of {} in batches of {}: {} -> {}\n", fname, n, cli.get("inputs"), batch,
                   fmt::join(written, ", "), cli.get("out"));
        return 0;
    });
}

}  // namespace wengert::dsl
