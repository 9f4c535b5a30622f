// Training control: schedules as loss weights, parameter groups, keep_best, early stopping,
// reduce_on_plateau, and resuming a file that changed only in comments, formatting or length.
// Every run here takes a fraction of a second on tiny data.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

#include "schedules.hpp"
#include "support.hpp"
#include "wengert/io.hpp"
#include "wengert/json.hpp"

using namespace wengert;
using namespace wengert::dsl;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

// A classifier on 24 rows (3 steps per epoch at batch 8), evaluated on the same rows; `k` is a
// metric that never changes (for the controls that wait for an improvement).
struct Net {
    TempDir tmp;
    fs::path file = tmp.path / "net.wg";
    fs::path data = tmp.path / "data.npz";
    Net() { write_dataset(data, 24, 4, 3, 5); }

    std::string text(const std::string& settings, const std::string& extra = "", const std::string& activation = "tanh") const {
        return fmt::format("def f(x: f32[B, 4], y: i64[B]) {{\n"
                           "    h = dense(6, activation = {})(x)\n"
                           "    logits = dense(3)(h)\n"
                           "    loss ce = cross_entropy(logits, y)\n"
                           "{}"
                           "    metric acc = accuracy(logits, y)\n"
                           "    metric k = 1.0\n"
                           "    return logits\n"
                           "}}\n"
                           "train f {{\n"
                           "    data      = npz_data(path = \"{}\")\n"
                           "    eval_data = npz_data(path = \"{}\")\n"
                           "    batch     = 8\n"
                           "    seed      = 2\n"
                           "{}"
                           "}}\n",
                           activation, extra, data.string(), data.string(), settings);
    }
    void write(const std::string& settings, const std::string& extra = "", const std::string& activation = "tanh") const {
        write_text(file, text(settings, extra, activation));
    }
    CliResult train(std::vector<std::string> extra = {}) const {
        std::vector<std::string> args = {"train", file.string(), "--no-progress"};
        args.insert(args.end(), extra.begin(), extra.end());
        return run_wengert(args);
    }
};

std::vector<Json> records(const fs::path& log, bool epochs) {
    std::vector<Json> out;
    for (const std::string& line : lines_of(read_text(log))) {
        Json j = Json::parse(line);
        if (j.contains("event") == epochs) out.push_back(j);
    }
    return out;
}

Json manifest(const fs::path& dir) { return Json::parse(read_text(dir / "manifest.json")); }

std::vector<double> values(const fs::path& npz, const std::string& name) {
    for (const auto& [n, t] : load_npz(npz.string())) {
        if (n == name) return t.to_doubles();
    }
    FAIL("no " << name << " in " << npz);
    return {};
}

std::string params_file(const fs::path& dir) { return (dir / manifest(dir).at("params_file").as_string()).string(); }

}  // namespace

// Note [Schedules]
TEST_CASE("schedule records give their value at a step, in steps or epochs", "[dsl][control][schedules]") {
    auto record = [](std::string name, std::map<std::string, Value> fields) {
        return Record{"schedule", std::move(name), std::move(fields), {}};
    };
    const Value by_epoch(std::string("epoch"));
    Record p = record("piecewise", {{"boundaries", Value(TupleValue{Value(2)})}, {"values", Value(TupleValue{Value(1.0), Value(0.25)})},
                                    {"by", by_epoch}});
    // 3 steps per epoch: epochs 1-2 are steps 0-5
    CHECK(schedule_value(p, {0, 3, 30}) == 1.0);
    CHECK(schedule_value(p, {5, 3, 30}) == 1.0);
    CHECK(schedule_value(p, {6, 3, 30}) == 0.25);
    Record l = record("linear_lr", {{"start", Value(1.0)}, {"end", Value(0.0)}, {"steps", Value()}, {"by", Value(std::string("step"))}});
    CHECK(schedule_value(l, {15, 3, 30}) == Approx(0.5));   // over all the run's steps
    Record e = record("exponential", {{"gamma", Value(0.5)}, {"every", Value(1)}, {"by", by_epoch}});
    CHECK(schedule_value(e, {7, 3, 30}) == 0.25);
    Record w = record("warmup", {{"steps", Value(1)}, {"then", Value()}, {"by", by_epoch}});
    CHECK(schedule_value(w, {0, 4, 40}) == 0.25);
    CHECK(schedule_value(w, {4, 4, 40}) == 1.0);
    Record bad = record("piecewise", {{"boundaries", Value(TupleValue{Value(2)})}, {"values", Value(TupleValue{Value(1.0)})},
                                      {"by", by_epoch}});
    CHECK_THROWS_WITH(schedule_value(bad, {0, 3, 30}), Catch::Contains("1 boundaries need 2 factors, got 1"));
    Record unit = record("exponential", {{"gamma", Value(0.5)}, {"every", Value(1)}, {"by", Value(std::string("epochs"))}});
    CHECK_THROWS_WITH(schedule_value(unit, {0, 3, 30}), Catch::Contains("'by' must be \"step\" or \"epoch\""));
}

TEST_CASE("a schedule weighs a loss term, and the log shows its value at every step", "[dsl][control][schedules]") {
    Net net;
    net.write("    epochs    = 2\n", "    loss act = piecewise((1,), (0.5, 0.0), by = \"epoch\") * mean(h ^ 2)\n");
    CliResult r = net.train({"--log", (net.tmp.path / "log.jsonl").string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    std::vector<Json> steps = records(net.tmp.path / "log.jsonl", false);
    REQUIRE(steps.size() == 6);
    for (std::size_t i = 0; i < steps.size(); ++i) {
        INFO("step " << i + 1);
        double weight = steps[i].at("schedules").at("act").as_number();
        double term = steps[i].at("losses").at("act").as_number();
        CHECK(weight == (i < 3 ? 0.5 : 0.0));
        if (i < 3) CHECK(term > 0);
        else CHECK(term == 0);
    }

    // reduce_on_plateau follows an eval value: it is only the lr's schedule
    net.write("    epochs    = 2\n", "    loss act = reduce_on_plateau(\"acc\") * mean(h ^ 2)\n");
    CliResult check = run_wengert({"check", net.file.string()});
    CHECK(check.exit_code == 65);
    CHECK_THAT(check.err, Catch::Contains("reduce_on_plateau follows an evaluation metric and can only be the learning rate's schedule"));
}

// Note [Parameter groups]
TEST_CASE("parameter groups give layers their own lr, decay and constraint; the log shows each group's lr", "[dsl][control][groups]") {
    Net net;
    net.write("    epochs    = 2\n    optimizer = sgd(lr = 0.1)\n"
              "    groups    = [group(\"h.*\", lr = 0.0), group(\"logits.dense.b\", lr_scale = 0.5, constraint = non_neg())]\n");
    REQUIRE(run_wengert({"run", net.file.string(), "--inputs", net.data.string(), "--seed", "2", "--save-params", (net.tmp.path / "before.npz").string()})
                .exit_code == 0);
    CliResult r = net.train({"--checkpoint", (net.tmp.path / "ck").string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const fs::path before = net.tmp.path / "before.npz", after = params_file(net.tmp.path / "ck");
    CHECK(values(after, "h.dense.w") == values(before, "h.dense.w"));      // lr 0
    CHECK(values(after, "h.dense.b") == values(before, "h.dense.b"));
    CHECK(values(after, "logits.dense.w") != values(before, "logits.dense.w"));
    for (double b : values(after, "logits.dense.b")) CHECK(b >= 0);
    std::vector<Json> steps = records(net.tmp.path / "ck" / "metrics.jsonl", false);
    REQUIRE(!steps.empty());
    CHECK(steps[0].at("lr").as_number() == 0.1);
    CHECK(steps[0].at("group_lr").at("h.*").as_number() == 0.0);
    CHECK(steps[0].at("group_lr").at("logits.dense.b").as_number() == 0.05);

    // a group over every parameter with lr_scale and weight decay is the optimizer with those settings
    net.write("    epochs    = 1\n    optimizer = sgd(lr = 0.2, momentum = 0.5)\n"
              "    groups    = group(\"*\", lr_scale = 0.5, weight_decay = 0.01)\n");
    REQUIRE(net.train({"--checkpoint", (net.tmp.path / "g").string()}).exit_code == 0);
    net.write("    epochs    = 1\n    optimizer = sgd(lr = 0.1, momentum = 0.5, weight_decay = 0.01)\n");
    REQUIRE(net.train({"--checkpoint", (net.tmp.path / "o").string()}).exit_code == 0);
    for (const char* name : {"h.dense.w", "h.dense.b", "logits.dense.w", "logits.dense.b"}) {
        INFO(name);
        CHECK(values(params_file(net.tmp.path / "g"), name) == values(params_file(net.tmp.path / "o"), name));
    }

    // mistakes are errors at the group, before training
    net.write("    optimizer = adam()\n    groups = group(\"hh.*\", lr = 0.1)\n");
    CliResult typo = net.train();
    CHECK(typo.exit_code == 65);
    CHECK_THAT(typo.err, Catch::Contains("error: train: group pattern \"hh.*\" matches no parameter of f"));
    net.write("    optimizer = adam()\n    groups = [group(\"h.*\", lr = 0.1), group(\"*.w\", lr = 0.2)]\n");
    CliResult overlap = net.train();
    CHECK(overlap.exit_code == 65);
    CHECK_THAT(overlap.err, Catch::Contains("parameter 'h.dense.w' is in group 1 (\"h.*\") and group 2 (\"*.w\")"));
    net.write("    optimizer = adam()\n    groups = group(\"h.*\", momentum = 0.9)\n");
    CliResult momentum = run_wengert({"check", net.file.string()});
    CHECK(momentum.exit_code == 65);
    CHECK_THAT(momentum.err, Catch::Contains("adam has no momentum setting"));
}

// Note [Training control]
TEST_CASE("keep_best keeps the best epoch's checkpoint beside the last, and the folder says which is which", "[dsl][control][best]") {
    Net net;
    const fs::path ck = net.tmp.path / "ck";
    net.write("    epochs    = 6\n    optimizer = adam(lr = 0.05)\n    keep_best = \"acc\"\n");
    CliResult r = net.train({"--checkpoint", ck.string()});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    // the best: the first epoch with the highest eval accuracy
    std::vector<Json> epochs = records(ck / "metrics.jsonl", true);
    REQUIRE(epochs.size() == 6);
    double best = -1;
    std::int64_t best_epoch = 0;
    for (const Json& e : epochs) {
        if (e.at("eval").at("acc").as_number() > best) {
            best = e.at("eval").at("acc").as_number();
            best_epoch = e.at("epoch").as_int();
        }
    }
    Json kept = manifest(ck / "best");
    CHECK(kept.at("control").at("role").as_string() == "best");
    CHECK(kept.at("control").at("metric").as_string() == "acc");
    CHECK(kept.at("control").at("value").as_number() == best);
    CHECK(kept.at("control").at("epoch").as_int() == best_epoch);
    CHECK(kept.at("step").as_int() == best_epoch * 3);
    Json last = manifest(ck);
    CHECK(last.at("step").as_int() == 18);
    CHECK(last.at("control").at("best").at("value").as_number() == best);
    CHECK(last.at("control").at("best").at("dir").as_string() == "best");
    CHECK_THAT(r.out, Catch::Contains(fmt::format("best checkpoint: {} (eval acc", (ck / "best").string())));
    // the best checkpoint is a whole one
    CliResult eval = run_wengert({"eval", net.file.string(), "--checkpoint", (ck / "best").string()});
    INFO(eval.err);
    CHECK(eval.exit_code == 0);
    CHECK_THAT(eval.out, Catch::Contains(fmt::format("  acc {:.6f}\n", best)));

    // --overwrite removes the best with the last
    net.write("    epochs    = 1\n    optimizer = adam(lr = 0.05)\n");
    REQUIRE(net.train({"--checkpoint", ck.string(), "--overwrite"}).exit_code == 0);
    CHECK(!fs::exists(ck / "best" / "manifest.json"));

    // a name the evaluation pass does not have, and no folder to keep it in, fail before training
    net.write("    epochs    = 2\n    keep_best = \"acx\"\n");
    CliResult typo = net.train({"--checkpoint", (net.tmp.path / "t").string()});
    CHECK(typo.exit_code == 65);
    CHECK_THAT(typo.err, Catch::Contains("keep_best: the evaluation pass has no loss term or metric 'acx'; it has loss, ce, acc, k"));
    CHECK(!fs::exists(net.tmp.path / "t" / "metrics.jsonl"));
    net.write("    epochs    = 2\n    keep_best = \"acc\"\n");
    CliResult nowhere = net.train();
    CHECK(nowhere.exit_code == 65);
    CHECK_THAT(nowhere.err, Catch::Contains("keep_best keeps a checkpoint, but this run has no checkpoint folder"));
}

TEST_CASE("early stopping ends the run after `patience` epochs without improvement; resuming it does nothing", "[dsl][control][early]") {
    Net net;
    const fs::path ck = net.tmp.path / "ck";
    net.write("    epochs    = 10\n    early_stopping = early_stopping(\"k\", patience = 2)\n");
    CliResult r = net.train({"--checkpoint", ck.string()});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    // k is 1 at every epoch: epoch 1 sets the best, epochs 2 and 3 do not improve on it
    CHECK_THAT(r.out, Catch::Contains("stopping early: eval k has not improved on 1 for 2 epochs"));
    CHECK(records(ck / "metrics.jsonl", true).size() == 3);
    CHECK(manifest(ck).at("step").as_int() == 9);
    CHECK(manifest(ck).at("control").at("early_stopping").at("stopped").as_bool());
    CliResult again = net.train({"--checkpoint", ck.string(), "--resume"});
    CHECK(again.exit_code == 0);
    CHECK_THAT(again.err, Catch::Contains("nothing to do: the run stopped early at step 9"));

    // a loss is better when smaller: the falling training loss never stops the run
    net.write("    epochs    = 4\n    optimizer = adam(lr = 0.01)\n    early_stopping = early_stopping(\"ce\", patience = 1)\n");
    CliResult falling = net.train();
    CHECK(falling.exit_code == 0);
    CHECK(falling.out.find("stopping early") == std::string::npos);

}

TEST_CASE("reduce_on_plateau cuts the lr when an eval value stalls, and a resumed run cuts it at the same steps",
          "[dsl][control][plateau]") {
    Net net;
    net.write("    epochs    = 5\n    optimizer = sgd(lr = 0.1)\n"
              "    schedule  = reduce_on_plateau(\"k\", factor = 0.5, patience = 1)\n");
    const fs::path whole = net.tmp.path / "whole", split = net.tmp.path / "split";
    CliResult r = net.train({"--checkpoint", whole.string()});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    // epoch 1 sets the best; epoch 2 is one bad epoch, epoch 3 the second: halved after it,
    // and again after epoch 5
    std::vector<Json> steps = records(whole / "metrics.jsonl", false);
    REQUIRE(steps.size() == 15);
    for (std::size_t i = 0; i < steps.size(); ++i) {
        INFO("step " << i + 1);
        CHECK(steps[i].at("lr").as_number() == (i < 9 ? 0.1 : 0.05));
    }
    CHECK_THAT(r.out, Catch::Contains("eval k has not improved for more than 1 epochs: the lr is now 0.05"));
    CHECK_THAT(r.out, Catch::Contains("eval k has not improved for more than 1 epochs: the lr is now 0.025"));

    REQUIRE(net.train({"--checkpoint", split.string(), "--epochs", "2"}).exit_code == 0);
    CliResult resumed = net.train({"--checkpoint", split.string(), "--resume"});
    INFO(resumed.err);
    REQUIRE(resumed.exit_code == 0);
    std::vector<Json> again = records(split / "metrics.jsonl", false);
    REQUIRE(again.size() == 15);
    for (std::size_t i = 0; i < steps.size(); ++i) CHECK(again[i].dump() == steps[i].dump());
}

TEST_CASE("a resumed run with groups, a scheduled loss weight and keep_best equals an uninterrupted one", "[dsl][control][resume]") {
    Net net;
    net.write("    epochs    = 4\n    optimizer = adam(lr = 0.02)\n    groups = group(\"h.*\", lr_scale = 0.1, beta1 = 0.5)\n"
              "    keep_best = \"acc\"\n",
              "    loss act = piecewise((2,), (0.1, 0.0), by = \"epoch\") * mean(h ^ 2)\n");
    const fs::path whole = net.tmp.path / "whole", split = net.tmp.path / "split";
    REQUIRE(net.train({"--checkpoint", whole.string()}).exit_code == 0);
    REQUIRE(net.train({"--checkpoint", split.string(), "--steps", "5"}).exit_code == 0);
    CliResult resumed = net.train({"--checkpoint", split.string(), "--resume"});
    INFO(resumed.err);
    REQUIRE(resumed.exit_code == 0);
    std::vector<Json> a = records(whole / "metrics.jsonl", false), b = records(split / "metrics.jsonl", false);
    REQUIRE(a.size() == 12);
    REQUIRE(b.size() == 12);
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i].dump() == b[i].dump());
    for (const char* name : {"h.dense.w", "logits.dense.w"}) {
        CHECK(values(params_file(whole), name) == values(params_file(split), name));
        CHECK(values(params_file(whole / "best"), name) == values(params_file(split / "best"), name));
    }
}

// Note [Resuming a changed file]
TEST_CASE("--resume accepts a file changed only in comments, formatting or length, and names any other change", "[dsl][control][resume]") {
    Net net;
    const fs::path whole = net.tmp.path / "whole", split = net.tmp.path / "split";
    net.write("    epochs    = 3\n");
    REQUIRE(net.train({"--checkpoint", whole.string()}).exit_code == 0);
    net.write("    epochs    = 1\n");
    REQUIRE(net.train({"--checkpoint", split.string()}).exit_code == 0);

    // a comment, other spacing, and more epochs in the file: the same run, continued
    std::string text = net.text("    epochs = 3   # longer\n");
    text.insert(0, "# a note added after the first epoch\n\n");
    write_text(net.file, text);
    CliResult resumed = net.train({"--checkpoint", split.string(), "--resume"});
    INFO(resumed.err);
    REQUIRE(resumed.exit_code == 0);
    CHECK_THAT(resumed.err, Catch::Contains("changed since the checkpoint only in comments, formatting or how long to train: resuming"));
    CHECK(values(params_file(whole), "h.dense.w") == values(params_file(split), "h.dense.w"));
    CHECK(manifest(split).at("step").as_int() == 9);

    // another activation is another model
    net.write("    epochs    = 5\n", "", "relu");
    CliResult changed = net.train({"--checkpoint", split.string(), "--resume"});
    CHECK(changed.exit_code == 74);
    CHECK_THAT(changed.err, Catch::Contains("the model changed since the checkpoint was written, beyond comments, formatting and how long "
                                            "to train: `def f` changed"));
    CHECK_THAT(changed.err, Catch::Contains("relu"));
    // and so is another optimizer setting
    net.write("    epochs    = 5\n    optimizer = adam(lr = 0.5)\n");
    CliResult optimizer = net.train({"--checkpoint", split.string(), "--resume"});
    CHECK(optimizer.exit_code == 74);
    CHECK_THAT(optimizer.err, Catch::Contains("`train f` changed"));
}

// Note [Label noise] in data.cpp: the matrix a learned noise layer is scored against.
TEST_CASE("label_noise_matrix is the flip matrix of a dataset's label noise, or of a rate and kind", "[dsl][control][noise]") {
    TempDir tmp;
    write_dataset(tmp.path / "in.npz", 4, 4, 3, 6);
    write_text(tmp.path / "m.wg",
               "T = label_noise_matrix(0.4, noise = \"pairs\")\n"
               "U = label_noise_matrix(fashion_mnist(split = \"train\", label_noise = 0.3, noise = \"uniform\"))\n"
               "def f(x: f32[B, 4], y: i64[B]) {\n"
               "    t = T\n"
               "    u = U\n"
               "    logits = dense(3)(x)\n"
               "    loss ce = cross_entropy(logits, y)\n"
               "    return logits\n"
               "}\n");
    CliResult r = run_wengert({"run", (tmp.path / "m.wg").string(), "--inputs", (tmp.path / "in.npz").string(), "--dump",
                               "t=" + (tmp.path / "t.npy").string(), "--dump", "u=" + (tmp.path / "u.npy").string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    Tensor t = load_npy((tmp.path / "t.npy").string()), u = load_npy((tmp.path / "u.npy").string());
    REQUIRE(t.shape() == Shape{10, 10});
    std::vector<double> tv = t.to_doubles(), uv = u.to_doubles();
    for (int j = 0; j < 10; ++j) {
        for (int i = 0; i < 10; ++i) {   // T[j, i] = p(noisy j | true i)
            INFO("T[" << j << ", " << i << "]");
            CHECK(tv[static_cast<std::size_t>(j * 10 + i)] == Approx(j == i ? 0.6 : j == (i + 1) % 10 ? 0.4 : 0.0));
            CHECK(uv[static_cast<std::size_t>(j * 10 + i)] == Approx(j == i ? 0.7 : 0.3 / 9));
        }
    }
    write_text(tmp.path / "bad.wg", "T = label_noise_matrix(fashion_mnist(split = \"train\"), noise = \"pairs\")\n"
                                    "def f(x: f32[B, 4]) {\n    t = T\n    return x\n}\n");
    CliResult bad = run_wengert({"check", (tmp.path / "bad.wg").string()});
    CHECK(bad.exit_code == 65);
    CHECK_THAT(bad.err, Catch::Contains("the dataset says its noise kind; give 'noise' only with a rate"));
}
