// `wengert plot`: a metrics log (train's DIR/metrics.jsonl) as curves, one panel per loss term
// and metric. The log's step records ({"step", "loss", "losses": {...}, "metrics": {...}}) give
// the per-step train curve; its epoch records ({"event": "epoch", "step", "train": {...},
// "eval": {...}}) the epoch means, train and eval.
#include <fstream>
#include <map>

#include "../picture.hpp"
#include "cli.hpp"
#include "wengert/json.hpp"

namespace wengert::dsl {

namespace {

struct Curves {
    std::vector<double> step_x, step_y, train_x, train_y, eval_x, eval_y;
};

void add_all(std::map<std::string, Curves>& curves, std::vector<std::string>& order, const Json& record, double step,
             std::vector<double> Curves::*xs, std::vector<double> Curves::*ys) {
    for (const auto& [name, value] : record.as_object()) {
        if (!value.is_number()) continue;
        if (!curves.count(name)) order.push_back(name);
        (curves[name].*xs).push_back(step);
        (curves[name].*ys).push_back(value.as_number());
    }
}

}  // namespace

int cmd_plot(const Cli& cli) {
    if (!cli.has("out")) throw UsageError("plot: --out curves.png is required");
    std::ifstream in(cli.file);
    if (!in) throw IOError(cli.file, "cannot read the metrics log");
    std::map<std::string, Curves> curves;
    std::vector<std::string> order;   // names as they first appear: loss, then each term and metric
    std::string line;
    for (std::int64_t number = 1; std::getline(in, line); ++number) {
        if (line.empty()) continue;
        Json record;
        try {
            record = Json::parse(line);
        } catch (const Error& e) {
            throw IOError(cli.file, fmt::format("line {}: {}", number, e.what()));
        }
        if (!record.is_object() || !record.contains("step") || !record["step"].is_number()) {
            throw IOError(cli.file, fmt::format("line {}: a record without a step; is this a metrics log that train wrote?", number));
        }
        const double step = record["step"].as_number();
        if (record.contains("event")) {
            if (record["event"].is_string() && record["event"].as_string() == "epoch") {
                if (record.contains("train") && record["train"].is_object()) add_all(curves, order, record["train"], step, &Curves::train_x, &Curves::train_y);
                if (record.contains("eval") && record["eval"].is_object()) add_all(curves, order, record["eval"], step, &Curves::eval_x, &Curves::eval_y);
            }
            continue;
        }
        Json top;
        if (record.contains("loss")) top["loss"] = record["loss"];
        add_all(curves, order, top, step, &Curves::step_x, &Curves::step_y);
        for (const char* group : {"losses", "metrics"}) {
            if (record.contains(group) && record[group].is_object()) add_all(curves, order, record[group], step, &Curves::step_x, &Curves::step_y);
        }
    }
    if (order.empty()) throw IOError(cli.file, "no loss or metric to plot: the log has no step or epoch records");
    std::vector<picture::Panel> panels;
    for (const std::string& name : order) {
        const Curves& c = curves[name];
        picture::Panel p{name, "step", {}};
        if (!c.step_x.empty()) p.series.push_back({"train (step)", c.step_x, c.step_y, false, 0.62, 0.76, 0.90});
        if (!c.train_x.empty()) p.series.push_back({"train (epoch)", c.train_x, c.train_y, true, 0.12, 0.35, 0.70});
        if (!c.eval_x.empty()) p.series.push_back({"eval (epoch)", c.eval_x, c.eval_y, true, 0.90, 0.42, 0.05});
        panels.push_back(std::move(p));
    }
    picture::write_panels(cli.get("out"), panels);
    return 0;
}

}  // namespace wengert::dsl
