// `wengert train`: exact resume, checkpoints that fail loudly, and the two ways of writing
// models/mlp_actreg.wg's penalty. Every run here takes a fraction of a second on tiny data.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support.hpp"
#include "wengert/io.hpp"
#include "wengert/json.hpp"
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
         "", "the checkpoint was made from a different model text"},
        {"parameters from another model",
         [&](const fs::path& dir) { fs::copy_file(other / "params-00000004.npz", dir / "params-00000004.npz", fs::copy_options::overwrite_existing); },
         "params-00000004.npz", "parameters do not match the model:\n  wrong shape: h.dense.w (model [4, 5], file [4, 7])"},
        // found by fuzzing: each of these crashed or exited 65 without naming the file
        {"a negative step",
         [](const fs::path& dir) {
             std::string manifest = read_text(dir / "manifest.json");
             REQUIRE(manifest.find("\"step\":4,") != std::string::npos);
             write_text(dir / "manifest.json", manifest.replace(manifest.find("\"step\":4,"), 9, "\"step\":-5,"));
         },
         "manifest.json", "corrupt manifest: \"step\" is -5, which is not a count"},
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
            if (args[0] == "eval" && c.what == "manifest from another model") continue;   // eval matches parameters, below
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

// models/mlp_actreg.wg trains `mlp` (dense(..., activity = l2(1e-4))) and says `mlp_explicit`
// (loss act2 = 1e-4 * sum(h2 ^ 2) / batch) gives the same losses step for step.
TEST_CASE("the activity penalty and the explicit loss on h2 give the same losses step for step", "[dsl][train][cli][models]") {
    TempDir tmp;
    const fs::path model = fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg";
    std::string text = read_text(model);
    std::size_t train_block = text.find("\ntrain mlp {");
    REQUIRE(train_block != std::string::npos);
    std::string defs = text.substr(0, train_block + 1);
    write_dataset(tmp.path / "data.npz", 24, 784, 10, 9, DType::f64);

    // the two functions name their layers alike, so one seed gives both the same parameters
    write_dataset(tmp.path / "in.npz", 4, 784, 10, 10);
    for (const std::string fn : {"mlp", "mlp_explicit"}) {
        CliResult r = run_wengert({"run", model.string(), "--inputs", (tmp.path / "in.npz").string(), "--function", fn, "--save-params",
                                   (tmp.path / (fn + ".npz")).string()});
        REQUIRE(r.exit_code == 0);
    }
    require_same_params(tmp.path / "mlp.npz", tmp.path / "mlp_explicit.npz");

    std::vector<std::vector<Json>> records;
    for (const std::string fn : {"mlp", "mlp_explicit"}) {
        fs::path copy = tmp.path / (fn + ".wg");
        write_text(copy, defs + "train " + fn + " {\n    data = npz_data(path = \"" + (tmp.path / "data.npz").string() +
                             "\")\n    optimizer = adam(lr = 1e-3)\n    batch = 8\n    epochs = 2\n    seed = 1\n}\n");
        fs::path log = tmp.path / (fn + ".jsonl");
        CliResult r = run_wengert({"train", copy.string(), "--dtype", "f64", "--log", log.string(), "--no-progress"});
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
        const Json &keras = records[0][i], &explicit_term = records[1][i];
        double penalty = keras.at("losses").at("h2.dense.activity_regularizer").as_number();
        CHECK(penalty > 0);
        CHECK(explicit_term.at("losses").at("act2").as_number() == Approx(penalty).epsilon(1e-12));
        CHECK(explicit_term.at("losses").at("ce").as_number() == Approx(keras.at("losses").at("ce").as_number()).epsilon(1e-12));
        CHECK(explicit_term.at("loss").as_number() == Approx(keras.at("loss").as_number()).epsilon(1e-12));
        CHECK(explicit_term.at("metrics").at("acc").as_number() == keras.at("metrics").at("acc").as_number());
    }
    // training moved: the losses are not constant
    CHECK(records[0][0].at("loss").as_number() != records[0][5].at("loss").as_number());
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
