// `wengert train`: exact resume, checkpoints that fail loudly, and the two ways of writing
// models/mlp_actreg.wg's penalty. Every run here takes a fraction of a second on tiny data.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "support.hpp"
#include "wengert/io.hpp"
#include "wengert/json.hpp"
#include "wengert/kernels.hpp"
#include "data.hpp"

using namespace wengert;
using namespace wengert::dsl;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

// A classifier with dropout, so a resumed run must also restore the random generator; it is
// evaluated on its training data.
std::string dropout_model(const fs::path& data, int hidden = 5) {
    return "def net(x: f32[B, 4], y: i64[B]) {\n"
           "    h      = dropout(dense(" + std::to_string(hidden) + ", activation = tanh)(x), 0.2)\n"
           "    logits = dense(3)(h)\n"
           "    loss ce    = cross_entropy(logits, y)\n"
           "    metric acc = accuracy(logits, y)\n"
           "    return logits\n"
           "}\n"
           "train net {\n"
           "    data      = npz_data(path = \"" + data.string() + "\")\n"
           "    eval_data = npz_data(path = \"" + data.string() + "\")\n"
           "    optimizer = adam(lr = 0.01)\n"
           "    batch     = 6\n"
           "    epochs    = 3\n"
           "    seed      = 3\n"
           "}\n";
}

struct Log {
    std::vector<std::string> steps;    // step records, as written
    std::vector<std::string> epochs;   // epoch records without their timing, partial ones left out
};

Log read_log(const fs::path& path) {
    Log log;
    for (std::string line : lines_of(read_text(path))) {
        if (line.find("\"event\":\"epoch\"") == std::string::npos) {
            log.steps.push_back(line);
            continue;
        }
        if (line.find("\"partial\":true") != std::string::npos) continue;
        std::size_t at = line.find("\"seconds\":");
        REQUIRE(at != std::string::npos);
        line.erase(at, line.find(',', at) + 1 - at);
        log.epochs.push_back(line);
    }
    return log;
}

void require_same_params(const fs::path& a, const fs::path& b) {
    NamedTensors x = load_npz(a.string()), y = load_npz(b.string());
    REQUIRE(x.size() == y.size());
    for (std::size_t i = 0; i < x.size(); ++i) {
        INFO(x[i].first);
        REQUIRE(x[i].first == y[i].first);
        Tensor u = x[i].second.contiguous(), v = y[i].second.contiguous();
        REQUIRE(u.shape() == v.shape());
        for (std::int64_t k = 0; k < u.numel(); ++k) REQUIRE(u.data<float>()[k] == v.data<float>()[k]);
    }
}

// A model folder with data and a checkpoint after one epoch (4 steps of 12).
struct Trained {
    TempDir tmp;
    fs::path model = tmp.path / "net.wg";
    fs::path data = tmp.path / "data.npz";
    Trained() {
        write_dataset(data, 20, 4, 3, 5);
        write_text(model, dropout_model(data));
    }
    CliResult train(const std::vector<std::string>& extra) {
        std::vector<std::string> args = {"train", model.string(), "--no-progress"};
        args.insert(args.end(), extra.begin(), extra.end());
        return run_wengert(args);
    }
};

}  // namespace

TEST_CASE("a resumed training run equals an uninterrupted one, step for step", "[dsl][train][cli]") {
    Trained t;
    const fs::path whole = t.tmp.path / "whole", split = t.tmp.path / "split", mid = t.tmp.path / "mid";
    CliResult full = t.train({"--checkpoint", whole.string()});
    REQUIRE(full.exit_code == 0);
    CHECK(full.out.find("epoch 3  loss ") != std::string::npos);

    // stopped at the end of epoch 1, then resumed to epoch 3
    REQUIRE(t.train({"--checkpoint", split.string(), "--epochs", "1"}).exit_code == 0);
    CliResult resumed = t.train({"--checkpoint", split.string(), "--resume"});
    REQUIRE(resumed.exit_code == 0);
    CHECK(resumed.err.rfind("resuming from " + split.string() + " at step 4 (epoch 1)\n", 0) == 0);

    // stopped in the middle of epoch 2 (6 of 12 steps), then resumed
    REQUIRE(t.train({"--checkpoint", mid.string(), "--steps", "6"}).exit_code == 0);
    REQUIRE(t.train({"--checkpoint", mid.string(), "--resume"}).exit_code == 0);

    Log a = read_log(whole / "metrics.jsonl"), b = read_log(split / "metrics.jsonl"), c = read_log(mid / "metrics.jsonl");
    REQUIRE(a.steps.size() == 12);
    CHECK(b.steps == a.steps);
    CHECK(c.steps == a.steps);
    REQUIRE(a.epochs.size() == 3);
    CHECK(b.epochs == a.epochs);
    CHECK(c.epochs == a.epochs);
    require_same_params(whole / "params-00000012.npz", split / "params-00000012.npz");
    require_same_params(whole / "params-00000012.npz", mid / "params-00000012.npz");

    // the steps differ from one another: dropout and the data order really are in play
    CHECK(a.steps[0] != a.steps[4]);

    // resuming a finished run does nothing
    CliResult again = t.train({"--checkpoint", whole.string(), "--resume"});
    CHECK(again.exit_code == 0);
    CHECK(again.err.find("nothing to do: the checkpoint is at step 12 of 12\n") != std::string::npos);
}

TEST_CASE("training gives identical numbers at 1 and 2 threads on every gemm kernel set", "[dsl][train][cli][threads]") {
    // products big enough that BLIS runs them and the engine splits them over threads (300 x
    // 40 x 250: above kThreadedGemmWork, Note [Matmul threading]), with a short k, where
    // BLIS's small/skinny path would sum a split block differently
    TempDir tmp;
    fs::path data = tmp.path / "data.npz", model = tmp.path / "wide.wg";
    write_dataset(data, 600, 40, 3, 7);
    write_text(model, "def net(x: f32[B, 40], y: i64[B]) {\n"
                      "    h      = dense(250, activation = relu)(x)\n"
                      "    logits = dense(3)(dense(40, activation = tanh)(h))\n"
                      "    loss ce = cross_entropy(logits, y)\n"
                      "    return logits\n"
                      "}\n"
                      "train net {\n"
                      "    data      = npz_data(path = \"" + data.string() + "\")\n"
                      "    optimizer = adam(lr = 0.01)\n"
                      "    batch     = 300\n"
                      "    epochs    = 2\n"
                      "    seed      = 3\n"
                      "}\n");
    for (const std::string& set : kern::gemm_kernel_sets()) {
        GemmKernelsEnv env(set);
        std::vector<std::vector<std::string>> runs;
        for (const char* threads : {"1", "2", "1"}) {
            INFO(set << " at " << threads << " threads");
            fs::path dir = tmp.path / (set + "-" + threads + "-" + std::to_string(runs.size()));
            CliResult r = run_wengert({"train", model.string(), "--no-progress", "--threads", threads, "--checkpoint", dir.string()});
            REQUIRE(r.exit_code == 0);
            runs.push_back(read_log(dir / "metrics.jsonl").steps);
            REQUIRE(runs.back().size() == 4);
        }
        INFO(set);
        CHECK(runs[1] == runs[0]);
        CHECK(runs[2] == runs[0]);
        // the parameters too, bit for bit: they show a difference before the logged losses do
        require_same_params(tmp.path / (set + "-1-0") / "params-00000004.npz", tmp.path / (set + "-2-1") / "params-00000004.npz");
        require_same_params(tmp.path / (set + "-1-0") / "params-00000004.npz", tmp.path / (set + "-1-2") / "params-00000004.npz");
    }
}

TEST_CASE("a run never overwrites or mixes with another run's checkpoint (Note [One run per folder])", "[dsl][train][cli]") {
    Trained t;
    const fs::path dir = t.tmp.path / "ck";
    REQUIRE(t.train({"--checkpoint", dir.string(), "--epochs", "1"}).exit_code == 0);
    const std::string params = read_text(dir / "params-00000004.npz"), manifest = read_text(dir / "manifest.json");
    CHECK(manifest.find("\"function\":\"net\"") != std::string::npos);
    CHECK(manifest.find("\"batch\":6") != std::string::npos);
    CHECK(manifest.find("\"run_id\":\"") != std::string::npos);

    // a second run without --resume is refused, and leaves the first run's files as they were
    CliResult again = t.train({"--checkpoint", dir.string(), "--epochs", "1", "--seed", "9"});
    CHECK(again.exit_code == 73);
    CHECK(again.err == "wengert: error: " + dir.string() + ": holds the checkpoint of a run of net at step 4; pass --resume to "
                       "continue it, --overwrite to replace it, or give another --checkpoint folder\n");
    CHECK(read_text(dir / "params-00000004.npz") == params);
    CHECK(read_text(dir / "manifest.json") == manifest);

    // while another process holds the folder, a run is refused at once
    {
        int fd = ::open((dir / ".lock").c_str(), O_RDWR);
        REQUIRE(fd >= 0);
        REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
        CliResult busy = t.train({"--checkpoint", dir.string(), "--resume"});
        CHECK(busy.exit_code == 73);
        CHECK(busy.err.rfind("wengert: error: " + dir.string() + ": another run (process ", 0) == 0);
        CHECK(busy.err.find("is training into this folder; wait for it, or give this run another --checkpoint folder\n") !=
              std::string::npos);
        ::close(fd);
    }

    // what an interrupted run left behind is removed by the next run that holds the folder
    write_text(dir / "params-00000008.npz", "half a file");
    write_text(dir / "manifest.json.tmp-1-0", "{");
    REQUIRE(t.train({"--checkpoint", dir.string(), "--resume", "--epochs", "2"}).exit_code == 0);
    CHECK(!fs::exists(dir / "manifest.json.tmp-1-0"));
    CHECK(fs::exists(dir / "params-00000008.npz"));   // now the second epoch's, written whole
    CHECK(!fs::exists(dir / "params-00000004.npz"));
    CHECK(load_npz((dir / "params-00000008.npz").string()).size() == 4);

    // --overwrite replaces the checkpoint: the new run is the one uninterrupted run of its own
    CliResult replaced = t.train({"--checkpoint", dir.string(), "--epochs", "1", "--overwrite"});
    REQUIRE(replaced.exit_code == 0);
    CHECK(!fs::exists(dir / "params-00000008.npz"));
    CHECK(fs::exists(dir / "params-00000004.npz"));
    CHECK(read_log(dir / "metrics.jsonl").steps.size() == 4);
    CHECK(t.train({"--checkpoint", dir.string(), "--resume", "--overwrite"}).exit_code == 64);
}

TEST_CASE("a resumed run or an eval uses the checkpoint's function, seed and batch, or says why not", "[dsl][train][cli]") {
    Trained t;
    // a second function, with its loss weighted differently, so that the two are told apart
    std::string text = read_text(t.model);
    text.insert(text.find("train net {"), "def net2(x: f32[B, 4], y: i64[B]) {\n"
                                          "    logits = dense(3)(dropout(dense(5, activation = tanh)(x), 0.2))\n"
                                          "    loss ce    = 3 * cross_entropy(logits, y)\n"
                                          "    metric acc = accuracy(logits, y)\n"
                                          "    return logits\n"
                                          "}\n");
    write_text(t.model, text);
    const fs::path dir = t.tmp.path / "ck";
    REQUIRE(t.train({"--checkpoint", dir.string(), "--epochs", "1", "--function", "net2"}).exit_code == 0);

    CliResult eval = run_wengert({"eval", t.model.string(), "--checkpoint", dir.string()});
    CHECK(eval.exit_code == 0);
    CHECK(eval.out.rfind("eval of net2 on ", 0) == 0);
    CliResult wrong_eval = run_wengert({"eval", t.model.string(), "--checkpoint", dir.string(), "--function", "net"});
    CHECK(wrong_eval.exit_code == 74);
    CHECK(wrong_eval.err == "wengert: error: " + dir.string() + ": the checkpoint trained function 'net2', not 'net'\n");

    CliResult wrong_resume = t.train({"--checkpoint", dir.string(), "--resume", "--function", "net"});
    CHECK(wrong_resume.exit_code == 74);
    CHECK(wrong_resume.err == "wengert: error: " + dir.string() + ": the checkpoint trained function 'net2', not 'net': "
                              "resume it without --function, or start a new checkpoint folder\n");
    CliResult seed = t.train({"--checkpoint", dir.string(), "--resume", "--seed", "5"});
    CHECK(seed.exit_code == 74);
    CHECK(seed.err == "wengert: error: " + dir.string() + ": the checkpoint's run has seed 3, this run 5: resume with the same "
                      "seed, or start a new checkpoint folder\n");
    CliResult batch = t.train({"--checkpoint", dir.string(), "--resume", "--batch", "4"});
    CHECK(batch.exit_code == 74);
    CHECK(batch.err == "wengert: error: " + dir.string() + ": the checkpoint's run has batch 6, this run 4: resume with the "
                       "same batch, or start a new checkpoint folder\n");

    // without --function, the resumed run trains net2 on, as the uninterrupted run did
    CliResult resumed = t.train({"--checkpoint", dir.string(), "--resume"});
    REQUIRE(resumed.exit_code == 0);
    CHECK(resumed.err.find("training net2 on ") != std::string::npos);
    const fs::path whole = t.tmp.path / "whole";
    REQUIRE(t.train({"--checkpoint", whole.string(), "--function", "net2"}).exit_code == 0);
    CHECK(read_log(dir / "metrics.jsonl").steps == read_log(whole / "metrics.jsonl").steps);
    require_same_params(whole / "params-00000012.npz", dir / "params-00000012.npz");
}

TEST_CASE("the metrics log after an interruption and --resume equals an uninterrupted run's", "[dsl][train][cli]") {
    Trained t;
    const fs::path whole = t.tmp.path / "whole", cut = t.tmp.path / "cut", stopped = t.tmp.path / "stopped";
    REQUIRE(t.train({"--checkpoint", whole.string()}).exit_code == 0);
    auto without_seconds = [](const fs::path& log) {
        std::vector<std::string> out;
        for (std::string line : lines_of(read_text(log))) {
            std::size_t at = line.find("\"seconds\":");
            if (at != std::string::npos) line.erase(at, line.find(',', at) + 1 - at);
            out.push_back(line);
        }
        return out;
    };
    std::vector<std::string> want = without_seconds(whole / "metrics.jsonl");
    REQUIRE(want.size() == 15);   // 12 steps, 3 epochs

    // killed after step 6, two steps past the checkpoint at step 4, mid-record
    REQUIRE(t.train({"--checkpoint", cut.string(), "--epochs", "1"}).exit_code == 0);
    std::vector<std::string> lines = lines_of(read_text(whole / "metrics.jsonl"));
    std::string log = read_text(cut / "metrics.jsonl") + lines[5] + "\n" + lines[6] + "\n" + lines[7].substr(0, 20);
    write_text(cut / "metrics.jsonl", log);
    REQUIRE(t.train({"--checkpoint", cut.string(), "--resume"}).exit_code == 0);
    CHECK(without_seconds(cut / "metrics.jsonl") == want);

    // stopped mid-epoch by --steps: its partial epoch record is not part of the whole run's log
    REQUIRE(t.train({"--checkpoint", stopped.string(), "--steps", "6"}).exit_code == 0);
    CHECK(read_text(stopped / "metrics.jsonl").find("\"partial\":true") != std::string::npos);
    REQUIRE(t.train({"--checkpoint", stopped.string(), "--resume"}).exit_code == 0);
    CHECK(without_seconds(stopped / "metrics.jsonl") == want);

    // a log that cannot be written (a full disk) is an error, not a shorter log and exit 0
    if (fs::exists("/dev/full")) {
        CliResult full = t.train({"--log", "/dev/full"});
        CHECK(full.exit_code == 74);
        CHECK(full.err.find("wengert: error: /dev/full: cannot write the metrics log: No space left on device\n") != std::string::npos);
    }
}

TEST_CASE("a non-finite loss or gradient stops training at the op that made it, and saves nothing (Note [Finite checks])",
          "[dsl][train][cli]") {
    TempDir tmp;
    const fs::path data = tmp.path / "data.npz";
    write_dataset(data, 12, 4, 3, 5);
    auto model = [&](const std::string& logits) {
        fs::path path = tmp.path / "net.wg";
        write_text(path, "def net(x: f32[B, 4], y: i64[B]) {\n"
                         "    h      = dense(3)(x)\n"
                         "    logits = " + logits + "\n"
                         "    loss ce = cross_entropy(logits, y)\n"
                         "    return logits\n"
                         "}\n"
                         "train net {\n"
                         "    data   = npz_data(path = \"" + data.string() + "\")\n"
                         "    batch  = 6\n"
                         "    epochs = 2\n"
                         "}\n");
        return path;
    };
    const std::string saved = "; the parameters were not updated and the last checkpoint (if any) is intact\n";
    const fs::path dir = tmp.path / "ck";

    // the loss stays finite while the gradient of sqrt at 0 is infinite: the parameters turned
    // NaN and training went on, writing checkpoints of NaN, with exit 0
    fs::path masked = model("h + sqrt(h - h)");
    CliResult r = run_wengert({"train", masked.string(), "--checkpoint", dir.string(), "--no-progress"});
    CHECK(r.exit_code == 65);
    CHECK(r.err.find("net.wg:3:22: error: step 1 (epoch 1, batch 1): the gradient of parameter 'h.dense.w' is not finite, "
                     "while the loss is ") != std::string::npos);
    // sqrt'(0) is inf, and inf times a zero output gradient NaN: which comes first depends on the data
    const std::regex culprit("the gradient of sqrt made a non-finite gradient \\((-?inf|nan)\\) for its input 1 from a finite "
                             "output gradient \\(in the backward pass\\)");
    CHECK(std::regex_search(r.err, std::regex(": first, " + std::string("the gradient of sqrt"))));
    CHECK(std::regex_search(r.err, culprit));
    CHECK(r.err.find("(in the backward pass)" + saved) != std::string::npos);
    CHECK(r.err.find("    logits = h + sqrt(h - h)\n") != std::string::npos);
    CHECK(!fs::exists(dir / "manifest.json"));

    // --check-finite finds it without the replay
    CliResult checked = run_wengert({"train", masked.string(), "--no-progress", "--check-finite"});
    CHECK(checked.exit_code == 65);
    CHECK(checked.err.find("net.wg:3:22: error: step 1 (epoch 1, batch 1): the gradient of sqrt made") != std::string::npos);
    CHECK(std::regex_search(checked.err, culprit));
    CHECK(checked.err.find("(in the backward pass)" + saved) != std::string::npos);

    // a forward value: log(0) is -inf, and the loss NaN
    CliResult forward = run_wengert({"train", model("h + log(h - h)").string(), "--no-progress"});
    CHECK(forward.exit_code == 65);
    CHECK(forward.err.find("net.wg:3:21: error: step 1 (epoch 1, batch 1): the loss is nan (loss term 'ce' is nan): first, log "
                           "made a non-finite value (-inf) from finite inputs" + saved) != std::string::npos);

    // a finite model trains
    CHECK(run_wengert({"train", model("h").string(), "--no-progress", "--check-finite"}).exit_code == 0);
}

TEST_CASE("NaN or infinity in the data is an error naming the dataset, field and row, before training", "[dsl][train][cli]") {
    TempDir tmp;
    const fs::path data = tmp.path / "data.npz";
    write_dataset(data, 12, 4, 3, 5);
    NamedTensors arrays = load_npz(data.string());
    Tensor x = arrays[0].second.contiguous().clone();
    x.data<float>()[7 * 4 + 2] = std::numeric_limits<float>::quiet_NaN();
    save_npz(data.string(), {{"x", x}, arrays[1]});
    fs::path path = tmp.path / "net.wg";
    write_text(path, "def net(x: f32[B, 4], y: i64[B]) {\n"
                     "    loss ce = cross_entropy(dense(3)(x), y)\n"
                     "    return x\n"
                     "}\n"
                     "train net {\n"
                     "    data = npz_data(path = \"" + data.string() + "\")\n"
                     "}\n");
    CliResult r = run_wengert({"train", path.string(), "--no-progress"});
    CHECK(r.exit_code == 74);
    CHECK(r.err.find(": row 7 of 'x' holds nan (rows count from 0)\n") != std::string::npos);
    CHECK(r.err.find("training ") == std::string::npos);
}

TEST_CASE("a row the model cannot take is named by its place in the dataset, before training where it can be (Note [Bad rows])",
          "[dsl][train][cli]") {
    TempDir tmp;
    auto labelled = [&](const std::string& name, std::int64_t n, std::int64_t features, std::int64_t bad_row, std::int64_t label) {
        write_dataset(tmp.path / name, n, features, 3, 5);
        NamedTensors arrays = load_npz((tmp.path / name).string());
        Tensor y = arrays[1].second.contiguous().clone();
        if (bad_row >= 0) y.data<std::int64_t>()[bad_row] = label;
        save_npz((tmp.path / name).string(), {arrays[0], {"y", y}});
    };
    labelled("train.npz", 12, 4, -1, 0);
    labelled("eval.npz", 10, 4, 7, 5);       // row 7: a class the model does not have
    labelled("train_bad.npz", 12, 4, 9, -1);
    labelled("eval_wide.npz", 10, 5, -1, 0);  // every row: 5 features, not 4
    auto model = [&](const std::string& data, const std::string& eval) {
        const fs::path path = tmp.path / "net.wg";
        write_text(path, "def net(x: f32[B, 4], y: i64[B]) {\n"
                         "    loss ce = cross_entropy(dense(3)(x), y)\n"
                         "    return x\n"
                         "}\n"
                         "train net {\n"
                         "    data      = npz_data(path = \"" + data + "\")\n"
                         "    eval_data = npz_data(path = \"" + eval + "\")\n"
                         "    batch     = 4\n"
                         "}\n");
        return run_wengert({"train", "net.wg", "--no-progress", "--checkpoint", "ck", "--overwrite"}, tmp.path);
    };
    // the evaluation data is run once before training: nothing trains, nothing is saved
    CliResult eval = model("train.npz", "eval.npz");
    CHECK(eval.exit_code == 65);
    CHECK(eval.err.rfind("net.wg:2:28: error: eval_data npz_data(\"eval.npz\"), row 7 (rows count from 0): cross_entropy: "
                         "label 5 at index 0 is out of range for 3 classes (logits [1, 3], target [1])\n", 0) == 0);
    CHECK(eval.err.find("training ") == std::string::npos);
    CHECK(!fs::exists(tmp.path / "ck" / "manifest.json"));

    // a bad training row is named by its row, not by its place in the shuffled batch
    CliResult train = model("train_bad.npz", "train.npz");
    CHECK(train.exit_code == 65);
    CHECK(train.err.find("net.wg:2:28: error: data npz_data(\"train_bad.npz\"), row 9 (rows count from 0): cross_entropy: "
                         "label -1 at index 0 is out of range for 3 classes (logits [1, 3], target [1])\n") != std::string::npos);

    // a column that no row fits names the dataset, not a row
    CliResult wide = model("train.npz", "eval_wide.npz");
    CHECK(wide.exit_code == 65);
    CHECK(wide.err.rfind("net.wg:1:9: error: eval_data npz_data(\"eval_wide.npz\"): net: parameter 'x' is declared f32[B, 4] but "
                         "was given f32[4, 5]\n", 0) == 0);
}

TEST_CASE("an evaluation that fails at the end of an epoch keeps the epoch's checkpoint (Note [Bad rows])", "[dsl][train][cli]") {
    // w starts at 1 and the first step takes it to -9: the evaluation's x = 1 rows pass sharpen
    // before training and fail after, while the training rows (x = 0) never do
    TempDir tmp;
    save_npz((tmp.path / "zeros.npz").string(), {{"x", Tensor::zeros(Shape{4, 4})}, {"y", Tensor::zeros(Shape{4}, DType::i64)}});
    save_npz((tmp.path / "ones.npz").string(), {{"x", Tensor::ones(Shape{4, 4})}, {"y", Tensor::zeros(Shape{4}, DType::i64)}});
    write_text(tmp.path / "m.wg", "param w: f32[] = 1.0\n"
                                  "def net(x: f32[B, 4], y: i64[B]) {\n"
                                  "    p = sharpen(x * w + 0.5, 2)\n"
                                  "    loss l = w + 0 * sum(p)\n"
                                  "    return p\n"
                                  "}\n"
                                  "train net {\n"
                                  "    data      = npz_data(path = \"zeros.npz\")\n"
                                  "    eval_data = npz_data(path = \"ones.npz\")\n"
                                  "    optimizer = sgd(lr = 10)\n"
                                  "    batch     = 2\n"
                                  "    epochs    = 2\n"
                                  "}\n");
    CliResult r = run_wengert({"train", "m.wg", "--no-progress", "--checkpoint", "ck"}, tmp.path);
    CHECK(r.exit_code == 65);
    CHECK(r.err.find("m.wg:3:16: error: eval_data npz_data(\"ones.npz\"): sharpen: p [2, 4] has a negative entry: it must hold "
                     "probabilities\n") != std::string::npos);
    CHECK(r.err.find("m.wg:7:7: note: the checkpoint of step 2 was saved before this evaluation: --resume continues from it\n") !=
          std::string::npos);
    REQUIRE(fs::exists(tmp.path / "ck" / "manifest.json"));
    CHECK(Json::parse(read_text(tmp.path / "ck" / "manifest.json")).at("step").as_int() == 2);
}

TEST_CASE("a corrupt checkpoint is an I/O error naming the file, never a crash", "[dsl][train][cli]") {
    Trained t;
    const fs::path good = t.tmp.path / "good";
    REQUIRE(t.train({"--checkpoint", good.string(), "--epochs", "1"}).exit_code == 0);
    const fs::path other_model = t.tmp.path / "other.wg";
    write_text(other_model, dropout_model(t.data, 7));
    const fs::path other = t.tmp.path / "other";
    REQUIRE(run_wengert({"train", other_model.string(), "--checkpoint", other.string(), "--epochs", "1"}).exit_code == 0);

    struct Case {
        std::string what;
        std::function<void(const fs::path&)> damage;
        std::string file;      // the file the message must name, relative to the checkpoint
        std::string message;   // what it must say about it
    };
    std::vector<Case> cases = {
        {"truncated parameters",
         [](const fs::path& dir) {
             std::string bytes = read_text(dir / "params-00000004.npz");
             write_text(dir / "params-00000004.npz", bytes.substr(0, bytes.size() / 2));
         },
         "params-00000004.npz", ""},
        {"missing parameters", [](const fs::path& dir) { fs::remove(dir / "params-00000004.npz"); }, "params-00000004.npz", ""},
        {"truncated optimizer state",
         [](const fs::path& dir) { write_text(dir / "optimizer-00000004.npz", "PK"); }, "optimizer-00000004.npz", ""},
        {"garbage manifest", [](const fs::path& dir) { write_text(dir / "manifest.json", "{\"format\": wengert"); }, "manifest.json",
         "corrupt manifest: "},
        {"empty manifest", [](const fs::path& dir) { write_text(dir / "manifest.json", ""); }, "manifest.json", "corrupt manifest: "},
        {"manifest of something else", [](const fs::path& dir) { write_text(dir / "manifest.json", "{\"format\": \"keras\"}\n"); },
         "manifest.json", "not a wengert checkpoint manifest"},
        {"manifest with a field missing",
         [](const fs::path& dir) { write_text(dir / "manifest.json", "{\"format\": \"wengert-checkpoint\", \"version\": 1}\n"); },
         "manifest.json", "corrupt manifest: json: missing key 'model'"},
        {"no manifest", [](const fs::path& dir) { fs::remove(dir / "manifest.json"); }, "manifest.json",
         "not found: this folder holds no checkpoint"},
        {"manifest from another model",
         [&](const fs::path& dir) {
             fs::remove_all(dir);
             fs::copy(other, dir);
         },
         "", "the model changed since the checkpoint was written, beyond comments, formatting and how long to train: `def net` changed"},
        {"parameters from another model",
         [&](const fs::path& dir) { fs::copy_file(other / "params-00000004.npz", dir / "params-00000004.npz", fs::copy_options::overwrite_existing); },
         "params-00000004.npz", "does not match its manifest: h.dense.w is listed as [4, 5] but the file has [4, 7]"},
        {"parameters from another model, manifest edited to match",
         [&](const fs::path& dir) {
             fs::copy_file(other / "params-00000004.npz", dir / "params-00000004.npz", fs::copy_options::overwrite_existing);
             std::string manifest = read_text(dir / "manifest.json");
             for (std::size_t at = manifest.find("[4,5]"); at != std::string::npos; at = manifest.find("[4,5]")) {
                 manifest.replace(at, 5, "[4,7]");
             }
             for (std::size_t at = manifest.find("[5,3]"); at != std::string::npos; at = manifest.find("[5,3]")) {
                 manifest.replace(at, 5, "[7,3]");
             }
             for (std::size_t at = manifest.find("[5]"); at != std::string::npos; at = manifest.find("[5]")) manifest.replace(at, 3, "[7]");
             write_text(dir / "manifest.json", manifest);
         },
         "params-00000004.npz", "parameters do not match the model:\n  wrong shape: h.dense.w (model [4, 5], file [4, 7])"},
        {"a parameter missing from the file's list",
         [](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             std::size_t at = manifest.find("{\"dtype\":\"f32\",\"name\":\"h.dense.b\"");
             REQUIRE(at != std::string::npos);
             std::size_t end = manifest.find('}', at);
             manifest.replace(at, end - at + 2, "");
             write_text(dir / "manifest.json", manifest);
         },
         "params-00000004.npz", "does not match its manifest: h.dense.b is in the file but not listed"},
        {"optimizer state of another step",
         [&](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             REQUIRE(manifest.find("\"step\":4,") != std::string::npos);
             REQUIRE(manifest.find("\"epoch\":1,") != std::string::npos);
             manifest.replace(manifest.find("\"step\":4,"), 9, "\"step\":3,");
             write_text(dir / "manifest.json", manifest.replace(manifest.find("\"epoch\":1,"), 10, "\"epoch\":0,"));
         },
         "optimizer-00000004.npz", "holds the state after 4 steps, but the manifest says step 3"},
        {"a step that is not in its epoch",
         [&](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             write_text(dir / "manifest.json", manifest.replace(manifest.find("\"epoch\":1,"), 10, "\"epoch\":2,"));
         },
         "", "the checkpoint is at step 4 of epoch 2, but this data gives 4 steps per epoch"},
        {"no optimizer file named",
         [](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             std::size_t at = manifest.find("\"optimizer_file\":\"optimizer-00000004.npz\",");
             REQUIRE(at != std::string::npos);
             write_text(dir / "manifest.json", manifest.replace(at, std::string("\"optimizer_file\":\"optimizer-00000004.npz\",").size(), ""));
         },
         "manifest.json", "corrupt manifest: the run used optimizer 'adam' but no \"optimizer_file\" is named"},
        // found by fuzzing: each of these crashed or exited 65 without naming the file
        {"a negative step",
         [](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             REQUIRE(manifest.find("\"step\":4,") != std::string::npos);
             write_text(dir / "manifest.json", manifest.replace(manifest.find("\"step\":4,"), 9, "\"step\":-5,"));
         },
         "manifest.json", "corrupt manifest: \"step\" is -5, which is not a count"},
        {"a negative seed (cast to an integer, undefined, before)",
         [](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             REQUIRE(manifest.find("\"seed\":3,") != std::string::npos);
             write_text(dir / "manifest.json", manifest.replace(manifest.find("\"seed\":3,"), 9, "\"seed\":-1.5,"));
         },
         "manifest.json", "corrupt manifest: \"seed\" is -1.5, which is not a seed"},
        {"a manifest nested past the parser's limit",
         [](const fs::path& dir) { write_text(dir / "manifest.json", "{\"format\": " + std::string(100000, '[')); }, "manifest.json",
         "corrupt manifest: json: line 1, column 267: values nested more than 256 deep"},
        {"optimizer state that names no parameter",
         [](const fs::path& dir) {
             fs::copy_file(dir / "params-00000004.npz", dir / "optimizer-00000004.npz", fs::copy_options::overwrite_existing);
         },
         "optimizer-00000004.npz", "adam: unknown state entry 'h.dense.w'"},
        {"optimizer state from another model",
         [&](const fs::path& dir) {
             fs::copy_file(other / "optimizer-00000004.npz", dir / "optimizer-00000004.npz", fs::copy_options::overwrite_existing);
         },
         "optimizer-00000004.npz", "adam: state 'adam.m.h.dense.w' is f32 [4, 7] but the parameter is f32 [4, 5]"},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        const fs::path dir = t.tmp.path / "damaged";
        fs::remove_all(dir);
        fs::copy(good, dir);
        c.damage(dir);
        std::string named = c.file.empty() ? dir.string() : (dir / c.file).string();
        for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
                 {"train", t.model.string(), "--checkpoint", dir.string(), "--resume"},
                 {"eval", t.model.string(), "--checkpoint", dir.string()}}) {
            INFO(args[0]);
            if (args[0] == "eval" && c.file.rfind("optimizer", 0) == 0) continue;   // eval reads no optimizer state
            if (args[0] == "eval" && c.file.empty()) continue;   // eval checks neither the model text nor the epoch
            CliResult r = run_wengert(args);
            CHECK(r.exit_code == 74);
            // state checked at the first step comes after the lines announcing the run
            std::string err = r.err;
            for (const std::string announced : {"resuming from ", "training "}) {
                if (err.rfind(announced, 0) == 0) err.erase(0, err.find('\n') + 1);
            }
            CHECK(err.rfind("wengert: error: " + named + ": " + c.message, 0) == 0);
            CHECK(r.out.empty());
        }
    }
    // eval needs no matching model text, only matching parameters
    CliResult mismatch = run_wengert({"eval", t.model.string(), "--checkpoint", other.string()});
    CHECK(mismatch.exit_code == 74);
    CHECK(mismatch.err.find("parameters do not match the model:\n  wrong shape: h.dense.w (model [4, 5], file [4, 7])") !=
          std::string::npos);
}

TEST_CASE("an interrupted save leaves the previous checkpoint valid", "[dsl][train][cli]") {
    Trained t;
    const fs::path whole = t.tmp.path / "whole", dir = t.tmp.path / "ck";
    REQUIRE(t.train({"--checkpoint", whole.string()}).exit_code == 0);
    REQUIRE(t.train({"--checkpoint", dir.string(), "--epochs", "1"}).exit_code == 0);
    const std::string manifest_before = read_text(dir / "manifest.json");

    // what a crash while saving step 8 leaves behind: the new parameter file written (here: cut
    // short), the optimizer's and the manifest's temporary files, never renamed
    std::string params = read_text(dir / "params-00000004.npz");
    write_text(dir / "params-00000008.npz", params.substr(0, params.size() / 3));
    write_text(dir / "optimizer-00000008.npz.tmp-4242-0", "PK\x03\x04 half an archive");
    write_text(dir / "manifest.json.tmp-4242-1", "{\"format\": \"wengert-checkpoint\", \"step\": 8, \"params_f");
    CHECK(read_text(dir / "manifest.json") == manifest_before);

    CliResult eval = run_wengert({"eval", t.model.string(), "--checkpoint", dir.string()});
    CHECK(eval.exit_code == 0);
    CHECK(eval.out.find("checkpoint step 4)") != std::string::npos);

    CliResult resumed = t.train({"--checkpoint", dir.string(), "--resume"});
    REQUIRE(resumed.exit_code == 0);
    CHECK(read_log(dir / "metrics.jsonl").steps == read_log(whole / "metrics.jsonl").steps);
    require_same_params(whole / "params-00000012.npz", dir / "params-00000012.npz");
    // the finished checkpoint replaced the earlier ones
    CHECK(!fs::exists(dir / "params-00000004.npz"));
    CHECK(!fs::exists(dir / "params-00000008.npz"));
    CHECK(read_text(dir / "manifest.json").find("\"params_file\":\"params-00000012.npz\"") != std::string::npos);
}

// A model file's two ways to write one penalty: `keras` with a layer's activity regularizer
// (logged as `penalty`), `explicit` with a loss term (logged as `term`) on the named value. Both
// start from the same parameters (the functions name their layers alike) and, trained in f64
// on `data` (npz with x and y) for 2 epochs of batch 8, give the same losses step for step.
void same_losses_step_for_step(const fs::path& model, const std::string& keras, const std::string& explicit_fn,
                               const std::string& penalty, const std::string& term, const fs::path& data, const fs::path& inputs,
                               const fs::path& tmp) {
    std::string text = read_text(model);
    std::size_t train_block = text.find("\ntrain ");
    REQUIRE(train_block != std::string::npos);
    std::string defs = text.substr(0, train_block + 1);
    for (const std::string& fn : {keras, explicit_fn}) {
        CliResult r = run_wengert({"run", model.string(), "--inputs", inputs.string(), "--function", fn, "--save-params",
                                   (tmp / (fn + ".npz")).string()});
        REQUIRE(r.exit_code == 0);
    }
    require_same_params(tmp / (keras + ".npz"), tmp / (explicit_fn + ".npz"));

    std::vector<std::vector<Json>> records;
    for (const std::string& fn : {keras, explicit_fn}) {
        fs::path copy = tmp / (fn + ".wg");
        write_text(copy, defs + "train " + fn + " {\n    data = npz_data(path = \"" + data.string() +
                             "\")\n    optimizer = adam(lr = 1e-3)\n    batch = 8\n    epochs = 2\n    seed = 1\n}\n");
        fs::path log = tmp / (fn + ".jsonl");
        CliResult r = run_wengert({"train", copy.string(), "--dtype", "f64", "--log", log.string(), "--no-progress"});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        std::vector<Json> steps;
        for (const std::string& line : lines_of(read_text(log))) {
            Json rec = Json::parse(line);
            if (!rec.contains("event")) steps.push_back(rec);
        }
        records.push_back(steps);
    }
    REQUIRE(records[0].size() == 6);
    REQUIRE(records[1].size() == 6);
    for (std::size_t i = 0; i < records[0].size(); ++i) {
        INFO("step " << i + 1);
        const Json &keras_record = records[0][i], &explicit_record = records[1][i];
        double value = keras_record.at("losses").at(penalty).as_number();
        CHECK(value > 0);
        CHECK(explicit_record.at("losses").at(term).as_number() == Approx(value).epsilon(1e-12));
        CHECK(explicit_record.at("losses").at("ce").as_number() == Approx(keras_record.at("losses").at("ce").as_number()).epsilon(1e-12));
        CHECK(explicit_record.at("loss").as_number() == Approx(keras_record.at("loss").as_number()).epsilon(1e-12));
        CHECK(explicit_record.at("metrics").at("acc").as_number() == keras_record.at("metrics").at("acc").as_number());
    }
    // training moved: the losses are not constant
    CHECK(records[0][0].at("loss").as_number() != records[0][5].at("loss").as_number());
}

// models/mlp_actreg.wg trains `mlp` (dense(..., activity = l2(1e-4))) and says `mlp_explicit`
// (loss act2 = 1e-4 * sum(h2 ^ 2) / batch) gives the same losses step for step.
TEST_CASE("the activity penalty and the explicit loss on h2 give the same losses step for step", "[dsl][train][cli][models]") {
    TempDir tmp;
    write_dataset(tmp.path / "data.npz", 24, 784, 10, 9, DType::f64);
    write_dataset(tmp.path / "in.npz", 4, 784, 10, 10);
    same_losses_step_for_step(fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg", "mlp", "mlp_explicit", "h2.dense.activity_regularizer",
                              "act2", tmp.path / "data.npz", tmp.path / "in.npz", tmp.path);
}

// models/convnet.wg says the same of its second conv layer: `convnet_actreg` (conv2d(...,
// activity = l2(1e-4))) and `convnet_explicit` (loss act2_penalty = 1e-4 * sum(h2 ^ 2) / batch).
TEST_CASE("the convnet's activity penalty on its second conv layer equals the explicit loss step for step", "[dsl][train][cli][models][conv]") {
    TempDir tmp;
    auto images = [&](const fs::path& path, std::int64_t n, std::uint64_t seed, DType dtype) {
        write_dataset(path, n, 28 * 28, 10, seed, dtype);
        NamedTensors arrays = load_npz(path.string());
        REQUIRE(arrays.size() == 2);
        save_npz(path.string(), {{"x", arrays[0].second.reshape(Shape{n, 28, 28, 1})}, {"y", arrays[1].second}});
    };
    images(tmp.path / "data.npz", 24, 9, DType::f64);
    images(tmp.path / "in.npz", 4, 10, DType::f32);
    same_losses_step_for_step(fs::path(WENGERT_MODELS_DIR) / "convnet.wg", "convnet_actreg", "convnet_explicit",
                              "h2.conv2d.activity_regularizer", "act2_penalty", tmp.path / "data.npz", tmp.path / "in.npz", tmp.path);
}

TEST_CASE("a model with Fashion-MNIST trains one step when the dataset is installed", "[dsl][train][cli][models][fashion]") {
    if (!fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") &&
        !fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte")) {
        WARN("Fashion-MNIST is not installed; skipped");
        return;
    }
    TempDir tmp;
    CliResult r = run_wengert({"train", (fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg").string(), "--steps", "1", "--no-progress",
                               "--log", (tmp.path / "log.jsonl").string()});
    CHECK(r.exit_code == 0);
    CHECK(lines_of(read_text(tmp.path / "log.jsonl")).size() >= 1);
}

namespace {

// A Fashion-MNIST folder of n blank images, labels i mod 10, both splits, as raw IDX files.
void write_fake_fashion_mnist(const fs::path& dir, std::int64_t n) {
    fs::create_directories(dir);
    auto big_endian = [](std::string& out, std::uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
    };
    for (const std::string prefix : {"train", "t10k"}) {
        std::string images, labels;
        big_endian(images, 0x803);
        for (std::uint32_t d : {static_cast<std::uint32_t>(n), 28u, 28u}) big_endian(images, d);
        images.append(static_cast<std::size_t>(n * 784), '\0');
        big_endian(labels, 0x801);
        big_endian(labels, static_cast<std::uint32_t>(n));
        for (std::int64_t i = 0; i < n; ++i) labels.push_back(static_cast<char>(i % 10));
        write_text(dir / (prefix + "-images-idx3-ubyte"), images);
        write_text(dir / (prefix + "-labels-idx1-ubyte"), labels);
    }
}

Dataset noisy_fashion_mnist(const fs::path& dir, const std::string& split, Value rate, Value kind, std::int64_t seed) {
    Record r;
    r.kind = "dataset";
    r.name = "fashion_mnist";
    r.fields = {{"split", Value(split)}, {"layout", Value(std::string("flat"))}, {"dir", Value(dir.string())},
                {"label_noise", rate},   {"noise", kind},                        {"noise_seed", Value(seed)}};
    return load_dataset(r, DataOptions{});
}

}  // namespace

TEST_CASE("fashion_mnist refuses float pixels and labels that are not classes, instead of casting them", "[dsl][data]") {
    TempDir tmp;
    auto big_endian = [](std::string& out, std::uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
    };
    write_fake_fashion_mnist(tmp.path, 3);
    // float images (IDX type 0x0D) holding a NaN
    std::string images;
    big_endian(images, 0xD03);
    for (std::uint32_t d : {3u, 28u, 28u}) big_endian(images, d);
    for (int i = 0; i < 3 * 784; ++i) big_endian(images, i == 5 ? 0x7fc00000u : 0u);
    write_text(tmp.path / "train-images-idx3-ubyte", images);
    CHECK_THROWS_WITH(noisy_fashion_mnist(tmp.path, "train", Value(0.0), Value(std::string("pairs")), 1),
                      (tmp.path / "train-images-idx3-ubyte").string() + ": holds f32 pixels; Fashion-MNIST's images are u8 (IDX type 0x08)");
    // a label 12 is no class
    write_fake_fashion_mnist(tmp.path, 3);
    std::string labels;
    big_endian(labels, 0x801);
    big_endian(labels, 3);
    labels += std::string("\x01\x0c\x02", 3);
    write_text(tmp.path / "train-labels-idx1-ubyte", labels);
    CHECK_THROWS_WITH(noisy_fashion_mnist(tmp.path, "train", Value(0.0), Value(std::string("pairs")), 1),
                      (tmp.path / "train-labels-idx1-ubyte").string() + ": row 1 holds label 12, not a class 0 to 9");
}

TEST_CASE("fashion_mnist(label_noise = ...) flips that share of the training labels, and only those (Note [Label noise])",
          "[dsl][data]") {
    TempDir tmp;
    const std::int64_t n = 4000;
    write_fake_fashion_mnist(tmp.path, n);
    for (const std::string kind : {"pairs", "uniform"}) {
        INFO(kind);
        Dataset d = noisy_fashion_mnist(tmp.path, "train", Value(0.3), Value(kind), 7);
        const std::int64_t* y = d.columns[1].data<std::int64_t>();
        std::int64_t flipped = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            if (y[i] == i % 10) continue;
            ++flipped;
            if (kind == "pairs") CHECK(y[i] == (i + 1) % 10);
            CHECK(y[i] >= 0);
            CHECK(y[i] < 10);
        }
        // binomial(4000, 0.3): standard deviation 29
        CHECK(flipped > 1050);
        CHECK(flipped < 1350);
        CHECK_THAT(d.description, Catch::Contains(std::to_string(flipped) + " of 4000 labels flipped"));
        // the same seed, the same labels; another seed, others
        Dataset again = noisy_fashion_mnist(tmp.path, "train", Value(0.3), Value(kind), 7);
        Dataset other = noisy_fashion_mnist(tmp.path, "train", Value(0.3), Value(kind), 8);
        std::int64_t same = 0, differ = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            same += again.columns[1].data<std::int64_t>()[i] == y[i];
            differ += other.columns[1].data<std::int64_t>()[i] != y[i];
        }
        CHECK(same == n);
        CHECK(differ > 0);
    }
    // the evaluation split stays clean
    Record r;
    r.kind = "dataset";
    r.name = "fashion_mnist";
    r.fields = {{"split", Value(std::string("train"))}, {"layout", Value(std::string("flat"))}, {"dir", Value(tmp.path.string())},
                {"label_noise", Value(0.5)}, {"noise", Value(std::string("pairs"))}, {"noise_seed", Value(std::int64_t{1})}};
    std::optional<Dataset> test = companion_eval_dataset(r, DataOptions{});
    REQUIRE(test);
    for (std::int64_t i = 0; i < n; ++i) REQUIRE(test->columns[1].data<std::int64_t>()[i] == i % 10);
    // and the settings are checked
    CHECK_THROWS_WITH(noisy_fashion_mnist(tmp.path, "train", Value(1.0), Value(std::string("pairs")), 1),
                      Catch::Contains("label_noise must be in [0, 1), got 1"));
    CHECK_THROWS_WITH(noisy_fashion_mnist(tmp.path, "train", Value(0.1), Value(std::string("swap")), 1),
                      Catch::Contains("noise must be \"pairs\" or \"uniform\""));
    CHECK_THROWS_WITH(noisy_fashion_mnist(tmp.path, "test", Value(0.1), Value(std::string("pairs")), 1),
                      Catch::Contains("corrupts the training split only"));
}

TEST_CASE("models/noisy_labels.wg checks: Q is one 10 x 10 parameter on the simplex", "[dsl][check][models]") {
    CliResult r = run_wengert({"check", (fs::path(WENGERT_MODELS_DIR) / "noisy_labels.wg").string()});
    REQUIRE(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK_THAT(r.out, Catch::Contains("p_noisy"));
    CHECK_THAT(r.out, Catch::Contains("Q [10, 10]"));
}

TEST_CASE("every model in models/ runs in f64: check, two training steps on tiny data, and gradcheck", "[dsl][train][cli][models][f64]") {
    TempDir tmp;
    write_fake_fashion_mnist(tmp.path / "fashion", 24);
    std::vector<fs::path> models = wg_files_in(WENGERT_MODELS_DIR);
    REQUIRE(!models.empty());
    for (const fs::path& path : models) {
        INFO(path.filename().string());
        const std::string text = read_text(path);
        CliResult check = run_wengert({"check", path.string(), "--dtype", "f64"});
        INFO(check.err);
        CHECK(check.exit_code == 0);
        if (text.find("\ntrain ") != std::string::npos) {
            CliResult train = run_wengert({"train", path.string(), "--dtype", "f64", "--steps", "2", "--batch", "4", "--no-progress",
                                           "--data", (tmp.path / "fashion").string()});
            INFO(train.err);
            CHECK(train.exit_code == 0);
        }
        if (text.find("loss ") == std::string::npos) continue;   // nothing to differentiate (attention_qkv.wg)
        CliResult grads = run_wengert({"gradcheck", path.string(), "--max-elements", "2"});
        INFO(grads.out << grads.err);
        CHECK(grads.exit_code == 0);
        CHECK(grads.out.find("MISMATCH") == std::string::npos);
    }
}

// models/embedding_loss.wg: sharpen(p, 100) trains in f32 where p^100 / sum p^100 is 0 / 0 at the
// first step, and the run stops there naming the division.
TEST_CASE("the embedding loss at n = 100: sharpen stays finite, the naive power is NaN at step 1", "[dsl][train][cli][models][onehot]") {
    TempDir tmp;
    write_fake_fashion_mnist(tmp.path / "fashion", 24);
    const std::string model = (fs::path(WENGERT_MODELS_DIR) / "embedding_loss.wg").string();
    CliResult stable = run_wengert({"train", model, "--function", "sharpened_100", "--steps", "3", "--batch", "8", "--no-progress",
                                    "--data", (tmp.path / "fashion").string(), "--log", (tmp.path / "stable.jsonl").string()});
    INFO(stable.err);
    CHECK(stable.exit_code == 0);
    int steps = 0;
    for (const std::string& line : lines_of(read_text(tmp.path / "stable.jsonl"))) {
        Json rec = Json::parse(line);
        if (rec.contains("event")) continue;
        CHECK(std::isfinite(rec.at("loss").as_number()));
        ++steps;
    }
    CHECK(steps == 3);
    CliResult naive = run_wengert({"train", model, "--function", "naive_100", "--steps", "3", "--batch", "8", "--no-progress",
                                   "--data", (tmp.path / "fashion").string()});
    CHECK(naive.exit_code == 65);
    CHECK_THAT(naive.err, Catch::Contains("step 1 (epoch 1, batch 1): the loss is nan (loss term 'embedding' is nan): first, div made a "
                                          "non-finite value (nan) from finite inputs"));
}

TEST_CASE("gradcheck names a surrogate gradient per parameter instead of a mismatch (Note [Surrogate gradients])",
          "[dsl][cli][models][onehot]") {
    const std::string model = (fs::path(WENGERT_MODELS_DIR) / "discrete_code.wg").string();
    for (const std::string function : {"coded", "straight"}) {
        INFO(function);
        CliResult r = run_wengert({"gradcheck", model, "--function", function, "--max-elements", "4"});
        INFO(r.out << r.err);
        CHECK(r.exit_code == 0);
        // the encoder's gradient passes through the straight-through estimator, the decoder's is exact
        int surrogate = 0;
        for (const std::string& line : lines_of(r.out)) {
            if (line.find("surrogate gradient (straight_through), by design") == std::string::npos) continue;
            CHECK(line.rfind("logits.", 0) == 0);
            ++surrogate;
        }
        CHECK(surrogate > 0);
        CHECK_THAT(r.out, !Catch::Contains("MISMATCH"));
        CHECK_THAT(r.out, Catch::Contains(fmt::format("all exact gradients agree with finite differences; {} parameter{} with a "
                                                      "surrogate gradient differ{} from them by design",
                                                      surrogate, surrogate == 1 ? "" : "s", surrogate == 1 ? "s" : "")));
    }
    CliResult exact = run_wengert({"gradcheck", model, "--function", "sharpened", "--max-elements", "4"});
    CHECK(exact.exit_code == 0);
    CHECK_THAT(exact.out, Catch::Contains("all gradients agree with finite differences"));
}

// Frozen parameters: trainable = false on a layer and a param, and freeze = [...] by name in the
// train block. They keep their initial values through training, the others move, `check` says
// which, and a pattern that matches nothing is an error at the setting.
TEST_CASE("frozen layers and params keep their initial values; check counts them", "[dsl][train][cli][freeze]") {
    TempDir tmp;
    write_dataset(tmp.path / "data.npz", 24, 4, 3, 5);
    write_dataset(tmp.path / "in.npz", 4, 4, 3, 6);
    auto model = [&](const std::string& freeze) {
        return "param scale: f32[3] = 1.0, trainable = false\n"
               "def f(x: f32[B, 4], y: i64[B]) {\n"
               "    h1 = dense(8, activation = relu, trainable = false)(x)\n"
               "    h2 = dense(8, activation = relu)(h1)\n"
               "    n = layer_norm(trainable = false)(h2)\n"
               "    logits = dense(3)(n) * scale\n"
               "    loss ce = cross_entropy(logits, y)\n"
               "    return logits\n"
               "}\n"
               "train f {\n    data = npz_data(path = \"" + (tmp.path / "data.npz").string() +
               "\")\n    optimizer = adam(lr = 1e-2)\n    batch = 8\n    epochs = 1\n" + freeze + "}\n";
    };
    fs::path file = tmp.path / "net.wg";
    write_text(file, model("    freeze = [\"h2.dense.*\"]\n"));

    CliResult check = run_wengert({"check", file.string()});
    INFO(check.err);
    REQUIRE(check.exit_code == 0);
    CHECK_THAT(check.out, Catch::Contains("  h1.dense                                   40  w [4, 8], b [8]  (frozen)\n"));
    CHECK_THAT(check.out, Catch::Contains("  h2.dense                                   72  w [8, 8], b [8]  (frozen)\n"));
    CHECK_THAT(check.out, Catch::Contains("  n.layer_norm                               16  gamma [8], beta [8]  (frozen)\n"));
    CHECK_THAT(check.out, Catch::Contains("  logits.dense                               27  w [8, 3], b [3]\n"));
    CHECK_THAT(check.out, Catch::Contains("  scale                                       3  scale [3]  (frozen)\n"));
    CHECK_THAT(check.out, Catch::Contains("  trainable                                  27\n"));
    CHECK_THAT(check.out, Catch::Contains("  frozen                                    131\n"));

    REQUIRE(run_wengert({"run", file.string(), "--inputs", (tmp.path / "in.npz").string(), "--save-params", (tmp.path / "before.npz").string()})
                .exit_code == 0);
    CliResult train = run_wengert({"train", file.string(), "--checkpoint", (tmp.path / "ck").string(), "--no-progress"});
    INFO(train.err);
    REQUIRE(train.exit_code == 0);
    NamedTensors before = load_npz((tmp.path / "before.npz").string()), after = load_npz((tmp.path / "ck" / "params-00000003.npz").string());
    REQUIRE(before.size() == after.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
        INFO(before[i].first);
        REQUIRE(before[i].first == after[i].first);
        bool same = before[i].second.to_doubles() == after[i].second.to_doubles();
        CHECK(same == (before[i].first.rfind("logits.", 0) != 0));   // only the last dense layer trains
    }
    // the optimizer keeps no state for what does not train
    NamedTensors state = load_npz((tmp.path / "ck" / "optimizer-00000003.npz").string());
    for (const auto& [name, _] : state) {
        INFO(name);
        CHECK((name == "adam.step" || name.find(".logits.dense.") != std::string::npos));
    }

    write_text(file, model("    freeze = [\"h3.*\"]\n"));
    CliResult typo = run_wengert({"check", file.string()});
    CHECK(typo.exit_code == 65);
    CHECK_THAT(typo.err, Catch::Contains("error: train: freeze pattern \"h3.*\" matches no parameter of f"));
    CliResult typo_train = run_wengert({"train", file.string(), "--no-progress"});
    CHECK(typo_train.exit_code == 65);
    CHECK_THAT(typo_train.err, Catch::Contains("error: train: freeze pattern \"h3.*\" matches no parameter of f"));
}

// --init: a warm start from saved parameters with a fresh optimizer. Whole, every parameter must
// match; --init-partial loads what matches and lists the rest.
TEST_CASE("train --init starts from saved parameters; --init-partial says what it loaded", "[dsl][train][cli][init]") {
    TempDir tmp;
    write_dataset(tmp.path / "data.npz", 24, 4, 3, 5);
    auto model = [&](int hidden) {
        return fmt::format("def f(x: f32[B, 4], y: i64[B]) {{\n    h = dense({}, activation = relu)(x)\n    logits = dense(3)(h)\n"
                           "    loss ce = cross_entropy(logits, y)\n    return logits\n}}\n"
                           "train f {{\n    data = npz_data(path = \"{}\")\n    optimizer = adam(lr = 1e-2)\n    batch = 8\n    epochs = 1\n}}\n",
                           hidden, (tmp.path / "data.npz").string());
    };
    fs::path first = tmp.path / "first.wg", second = tmp.path / "second.wg";
    write_text(first, model(8));
    REQUIRE(run_wengert({"train", first.string(), "--checkpoint", (tmp.path / "a").string(), "--no-progress"}).exit_code == 0);

    // with lr 0 a step leaves the parameters as they started: the warm start's checkpoint holds
    // the first run's parameters exactly
    CliResult warm = run_wengert({"train", first.string(), "--steps", "1", "--lr", "0", "--no-progress", "--checkpoint",
                                  (tmp.path / "b").string(), "--init", (tmp.path / "a").string()});
    INFO(warm.err);
    REQUIRE(warm.exit_code == 0);
    CHECK_THAT(warm.out, Catch::Contains("initialised all 4 parameters from " + (tmp.path / "a").string()));
    require_same_params(tmp.path / "a" / "params-00000003.npz", tmp.path / "b" / "params-00000001.npz");
    CliResult fresh = run_wengert({"train", first.string(), "--steps", "1", "--lr", "0", "--no-progress", "--checkpoint", (tmp.path / "c").string()});
    REQUIRE(fresh.exit_code == 0);
    CHECK(load_npz((tmp.path / "c" / "params-00000001.npz").string())[0].second.to_doubles() !=
          load_npz((tmp.path / "a" / "params-00000003.npz").string())[0].second.to_doubles());

    // another hidden size: the whole load is refused, the partial one takes the matching bias
    write_text(second, model(6));
    CliResult whole = run_wengert({"train", second.string(), "--steps", "1", "--no-progress", "--init", (tmp.path / "a").string()});
    CHECK(whole.exit_code == 74);
    CHECK_THAT(whole.err, Catch::Contains("wrong shape: h.dense.w (model [4, 6], file [4, 8])"));
    CliResult partial = run_wengert({"train", second.string(), "--steps", "1", "--no-progress", "--init", (tmp.path / "a").string(), "--init-partial"});
    INFO(partial.err);
    CHECK(partial.exit_code == 0);
    CHECK_THAT(partial.out, Catch::Contains("initialised 1 of 4 parameters from " + (tmp.path / "a").string() + "\n"
                                            "  loaded: logits.dense.b\n"
                                            "  skipped from the file: h.dense.w (model [4, 6], file [4, 8]), h.dense.b (model [6], file [8]), "
                                            "logits.dense.w (model [6, 3], file [8, 3])\n"));
    CHECK(run_wengert({"train", first.string(), "--init-partial"}).exit_code == 64);
    CHECK(run_wengert({"train", first.string(), "--init", (tmp.path / "a").string(), "--resume", "--checkpoint", (tmp.path / "a").string()})
              .exit_code == 64);
}

TEST_CASE("a train block without an optimizer trains as one that says adam()", "[dsl][train][cli]") {
    // the default is the engine's AdamOptions, adam() the language's record: the same numbers
    TempDir tmp;
    const fs::path data = tmp.path / "data.npz";
    write_dataset(data, 20, 4, 3, 5);
    const std::string said = dropout_model(data), line = "    optimizer = adam(lr = 0.01)\n";
    REQUIRE(said.find(line) != std::string::npos);
    std::string unsaid = said, plain = said;
    unsaid.erase(unsaid.find(line), line.size());
    plain.replace(plain.find(line), line.size(), "    optimizer = adam()\n");
    write_text(tmp.path / "unsaid.wg", unsaid);
    write_text(tmp.path / "adam.wg", plain);
    for (const std::vector<std::string>& lr : {std::vector<std::string>{}, std::vector<std::string>{"--lr", "0.02"}}) {
        for (const char* name : {"unsaid", "adam"}) {
            std::vector<std::string> args = {"train", (tmp.path / (std::string(name) + ".wg")).string(), "--no-progress", "--checkpoint",
                                             (tmp.path / (std::string(name) + (lr.empty() ? "" : "-lr"))).string()};
            args.insert(args.end(), lr.begin(), lr.end());
            CliResult r = run_wengert(args);
            INFO(r.err);
            REQUIRE(r.exit_code == 0);
        }
        const std::string suffix = lr.empty() ? "" : "-lr";
        CHECK(read_log(tmp.path / ("unsaid" + suffix) / "metrics.jsonl").steps == read_log(tmp.path / ("adam" + suffix) / "metrics.jsonl").steps);
        require_same_params(tmp.path / ("unsaid" + suffix) / "params-00000012.npz", tmp.path / ("adam" + suffix) / "params-00000012.npz");
    }
}
