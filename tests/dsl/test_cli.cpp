// The `wengert` command's contract: exit codes (64 usage, 65 model error, 74 I/O), help for
// every command, the graph as DOT, and gradcheck.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <cstdlib>

#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "comm.hpp"
#include "support.hpp"
#include "wengert/kernels.hpp"

using namespace wengert;
using namespace wengert::dsl;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

const std::string small_model = (fs::path(WENGERT_DSL_TEST_DIR) / "models" / "small.wg").string();
const std::string mlp_model = (fs::path(WENGERT_MODELS_DIR) / "mlp_actreg.wg").string();

std::string usage_hint(const std::string& command) {
    return command.empty() ? "(run `wengert --help` for usage)\n" : "(run `wengert " + command + " --help` for usage)\n";
}

}  // namespace

TEST_CASE("usage errors exit 64 with a one-line message and where to find help", "[dsl][cli]") {
    struct Case {
        std::vector<std::string> args;
        std::string message;
        std::string command;
    };
    std::vector<Case> cases = {
        {{}, "no command given", ""},
        {{"frobnicate", small_model}, "unknown command 'frobnicate'", ""},
        {{"chek", small_model}, "unknown command 'chek'; did you mean 'check'?", ""},
        {{"check"}, "check: no model file given", "check"},
        {{"train"}, "train: no model file given", "train"},
        {{"check", small_model, "--functon", "net"}, "check: unknown option --functon; did you mean --function?", "check"},
        {{"train", small_model, "--epoch", "3"}, "train: unknown option --epoch; did you mean --epochs?", "train"},
        {{"run", small_model, "--resume"}, "run: unknown option --resume", "run"},
        {{"check", small_model, "other.wg"}, "check: unexpected argument 'other.wg'", "check"},
        {{"check", small_model, "--threads"}, "--threads needs a value", "check"},
        {{"check", small_model, "--threads", "two"}, "--threads expects an integer, got 'two'", "check"},
        {{"check", small_model, "--threads", "0"}, "--threads must be at least 1", "check"},
        {{"check", small_model, "--threads", "3000000000"}, "--threads must be at most 4096", "check"},
        {{"check", small_model, "--dtype", "i64"}, "--dtype must be f32 or f64", "check"},
        {{"train", small_model, "--epochs", "0"}, "--epochs, --steps and --batch must be positive", "train"},
        {{"train", small_model, "--lr", "-1"}, "--lr must be a non-negative number, got -1", "train"},
        {{"train", small_model, "--lr", "nan"}, "--lr must be a non-negative number, got nan", "train"},
        {{"gradcheck", small_model, "--max-elements", "-1"}, "--max-elements must be at least 1, got -1", "gradcheck"},
        {{"gradcheck", small_model, "--eps", "0"}, "--eps must be a positive number, got 0", "gradcheck"},
        {{"gradcheck", small_model, "--eps", "nan"}, "--eps must be a positive number, got nan", "gradcheck"},
        {{"run", small_model}, "run: --inputs in.npz is required", "run"},
        {{"eval", small_model}, "eval: --checkpoint DIR is required", "eval"},
        {{"graph", mlp_model, "--function", "mpl"}, "the model has no function 'mpl'", "graph"},
    };
    for (const Case& c : cases) {
        INFO(c.message);
        CliResult r = run_wengert(c.args);
        CHECK(r.exit_code == 64);
        CHECK(r.out.empty());
        CHECK(r.err == "wengert: " + c.message + "\n" + usage_hint(c.command));
    }
}

TEST_CASE("--help prints each command's usage and exits 0", "[dsl][cli]") {
    for (const std::string command : {"train", "eval", "check", "run", "gradcheck", "graph"}) {
        INFO(command);
        for (const std::vector<std::string>& args : {std::vector<std::string>{command, "--help"}, {command, small_model, "-h"}}) {
            CliResult r = run_wengert(args);
            CHECK(r.exit_code == 0);
            CHECK(r.err.empty());
            CHECK(r.out.rfind("usage: wengert " + command + " FILE", 0) == 0);
        }
    }
    for (const std::string help : {"--help", "-h", "help"}) {
        CliResult r = run_wengert({help});
        CHECK(r.exit_code == 0);
        CHECK(r.out.rfind("wengert: train and run models written in the .wg language\n\nusage: wengert <command> FILE", 0) == 0);
        for (const std::string command : {"train", "eval", "check", "run", "gradcheck", "graph"}) {
            CHECK(r.out.find("\n  " + command + " FILE") != std::string::npos);
        }
        CHECK(r.out.find("exit codes: 0 ok, 64 usage, 65 error in the model or training, 70 internal error, 73 checkpoint\n"
                         "folder in use, 74 I/O error") != std::string::npos);
    }
}

TEST_CASE("help NAME prints what a builtin, the standard library's or a model's definition takes and does", "[dsl][cli]") {
    SECTION("an op: its kinds and defaults from the registry, under the language's name") {
        CliResult r = run_wengert({"help", "conv2d_op"});
        CHECK(r.exit_code == 0);
        CHECK(r.err.empty());
        CHECK(r.out.rfind("conv2d_op(x: tensor, w: tensor, b: tensor or none = none, stride: integer or tuple = 1, ", 0) == 0);
        CHECK(r.out.find("\n    activation(conv(x, w) + b) over NHWC images") != std::string::npos);
        CHECK(r.out.ends_with("a builtin (docs/dsl.md)\n"));
    }
    SECTION("a layer constructor and a record: the kinds they say") {
        CliResult dense = run_wengert({"help", "dense"});
        CHECK(dense.out.rfind("dense(n_units: integer, activation: op or layer = none, use_bias = true, ", 0) == 0);
        CHECK(dense.out.find("\n    y = x @ w + b over the last axis\n") != std::string::npos);
        CliResult step = run_wengert({"help", "step_lr"});
        CHECK(step.out == "step_lr(step_size, gamma = 0.1, by: \"step\" or \"epoch\" = \"step\")\n"
                          "    base * gamma^floor(step / step_size)\na builtin (docs/dsl.md)\n");
    }
    SECTION("the standard library: its comment is its doc, and where it is written") {
        CliResult r = run_wengert({"help", "attention_qkv"});
        CHECK(r.exit_code == 0);
        CHECK(r.out.rfind("attention_qkv(d_feature, n_heads = 1, dropout = 0, penalty = none)\n"
                          "    Trax's AttentionQKV: (q, k, v, mask) -> (y, mask).", 0) == 0);
        CHECK(r.out.find("prelude.wg:") != std::string::npos);
    }
    SECTION("a model's def: its annotations are its kinds") {
        TempDir tmp;
        write_text(tmp.path / "help_def.wg", "# Adds one to x.\n# Twice as fast as adding two.\ndef bump(x: f32[B, 3], k = 2) {\n    return x + 1\n}\n");
        const std::string model = (tmp.path / "help_def.wg").string();
        CliResult r = run_wengert({"help", "bump", model});
        CHECK(r.exit_code == 0);
        CHECK(r.out == "bump(x: f32[B, 3], k = 2)\n    Adds one to x.\n    Twice as fast as adding two.\ndefined at " + model + ":3\n");
    }
    SECTION("a command's help, and the list of every name") {
        CHECK(run_wengert({"help", "train"}).out.rfind("usage: wengert train FILE", 0) == 0);
        CliResult names = run_wengert({"help", "names"});
        // a name is listed when it stands between spaces or ends a wrapped line
        const auto lists = [&](const std::string& name) {
            return names.out.find(" " + name + " ") != std::string::npos || names.out.find(" " + name + "\n") != std::string::npos;
        };
        CHECK(names.exit_code == 0);
        CHECK(names.out.rfind("builtins (docs/dsl.md):\n", 0) == 0);
        CHECK(lists("conv2d_op"));
        CHECK(names.out.find("standard library (dsl/std/prelude.wg):\n") != std::string::npos);
        CHECK(lists("attention_qkv"));
        CHECK(!lists("conv2d_o"));
    }
    SECTION("an unknown name is a usage error with the closest one") {
        CliResult r = run_wengert({"help", "sfotmax"});
        CHECK(r.exit_code == 64);
        CHECK(r.out.empty());
        CHECK(r.err == "wengert: help: no command, builtin or standard-library definition is called 'sfotmax' "
                       "(did you mean 'softmax'?); `wengert help names` lists them\n" + usage_hint(""));
    }
}

TEST_CASE("--version names the gemm kernels, and WENGERT_GEMM_KERNELS forces a set the CPU can run", "[dsl][cli]") {
    CliResult r = run_wengert({"--version"});
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.rfind("wengert 0.", 0) == 0);
    CHECK(r.out.find("gemm kernels: " + std::string(kern::gemm_kernels()) + " (") != std::string::npos);
    CHECK(r.out.find("chosen by the CPU's features") != std::string::npos);
    for (const std::string& set : kern::gemm_kernel_sets()) {
        INFO(set);
        GemmKernelsEnv env(set);
        CliResult forced = run_wengert({"--version"});
        CHECK(forced.exit_code == 0);
        std::string name = set == "blis" ? kern::blis_kernels() : set;
        CHECK(forced.out.find("gemm kernels: " + name + " (") != std::string::npos);
        CHECK(forced.out.find("chosen by WENGERT_GEMM_KERNELS=" + set) != std::string::npos);
        // and a model runs on it
        CliResult check = run_wengert({"check", small_model});
        CHECK(check.exit_code == 0);
    }
    GemmKernelsEnv bad("zen9");
    CliResult refused = run_wengert({"check", small_model});
    CHECK(refused.exit_code == 64);
    CHECK(refused.err == "wengert: error: WENGERT_GEMM_KERNELS=zen9: gemm kernels 'zen9' are not one of auto, blis, skx, "
                         "haswell, generic\n");
}

TEST_CASE("a model with errors exits 65 from every command that loads it", "[dsl][cli]") {
    TempDir tmp;
    write_text(tmp.path / "bad.wg", "def f(x: f32[B, 4]) {\n    return rellu(x)\n}\n");
    write_dataset(tmp.path / "in.npz", 3, 4, 3, 1);
    const std::string bad = (tmp.path / "bad.wg").string();
    const std::string expected =
        bad + ":2:12: error: unknown name 'rellu'\n"
              "    return rellu(x)\n"
              "           ^~~~~\n"
              "help: did you mean 'relu'?\n"
              "1 error generated.\n";
    for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
             {"check", bad}, {"train", bad}, {"graph", bad}, {"gradcheck", bad},
             {"run", bad, "--inputs", (tmp.path / "in.npz").string()}, {"eval", bad, "--checkpoint", tmp.path.string()}}) {
        INFO(args[0]);
        CliResult r = run_wengert(args);
        CHECK(r.exit_code == 65);
        CHECK(r.err == expected);
    }

    // an error found while running (here: the input's shape) is a model error too
    write_dataset(tmp.path / "wide.npz", 3, 5, 3, 1);
    CliResult r = run_wengert({"run", small_model, "--inputs", (tmp.path / "wide.npz").string()});
    CHECK(r.exit_code == 65);
    CHECK(r.err == small_model + ":6:9: error: net: parameter 'x' is declared f32[B, 4] but was given f32[3, 5]\n"
                                 "def net(x: f32[B, 4], y: i64[B]) {\n"
                                 "        ^\n"
                                 "1 error generated.\n");
}

TEST_CASE("train reports a bad train setting at its place in the model, as check does", "[dsl][cli]") {
    TempDir tmp;
    write_dataset(tmp.path / "d.npz", 6, 4, 3, 1);
    auto model = [&](const std::string& settings) {
        write_text(tmp.path / "m.wg", "def f(x: f32[B, 4], y: i64[B]) {\n    loss ce = cross_entropy(dense(3)(x), y)\n    return x\n}\n"
                                      "train f {\n    data = npz_data(\"" + (tmp.path / "d.npz").string() + "\")\n" + settings + "}\n");
        return (tmp.path / "m.wg").string();
    };

    // a value only the engine's optimizer checks (was: "wengert: error: sgd: lr must not be negative, got -1")
    const std::string negative_lr = model("    optimizer = sgd(lr = -1)\n");
    CliResult check = run_wengert({"check", negative_lr});
    CliResult train = run_wengert({"train", negative_lr, "--no-progress"});
    CHECK(train.exit_code == 65);
    CHECK(train.out.empty());
    CHECK(train.err == negative_lr + ":7:20: error: sgd: lr must not be negative, got -1\n"
                                     "    optimizer = sgd(lr = -1)\n"
                                     "                   ^\n"
                                     "1 error generated.\n");
    CHECK(check.err == train.err);

    // epochs times steps per epoch past 2^63 (was: a signed overflow)
    const std::string endless = model("    epochs = 9223372036854775807\n    batch = 4\n");
    CliResult overflow = run_wengert({"train", endless, "--no-progress"});
    CHECK(overflow.exit_code == 65);
    CHECK(overflow.err.rfind(endless + ":5:7: error: train: 9223372036854775807 epochs of 2 steps is more than 2^63 steps\n", 0) == 0);
}

TEST_CASE("missing files exit 74 and name the file", "[dsl][cli]") {
    TempDir tmp;
    const std::string missing_model = (tmp.path / "nothere.wg").string();
    for (const std::string command : {"check", "train", "graph", "gradcheck"}) {
        CliResult r = run_wengert({command, missing_model});
        CHECK(r.exit_code == 74);
        CHECK(r.err == "wengert: error: " + missing_model + ": no such model file\n");
    }
    CliResult folder = run_wengert({"check", tmp.path.string()});
    CHECK(folder.exit_code == 74);
    CHECK(folder.err == "wengert: error: " + tmp.path.string() + ": is a folder, not a model file\n");

    // the data a train block names
    const std::string data = (tmp.path / "missing.npz").string();
    write_text(tmp.path / "m.wg", "def f(x: f32[B, 4], y: i64[B]) {\n    loss ce = cross_entropy(dense(3)(x), y)\n    return x\n}\n"
                                  "train f {\n    data = npz_data(path = \"" + data + "\")\n}\n");
    CliResult no_data = run_wengert({"train", (tmp.path / "m.wg").string()});
    CHECK(no_data.exit_code == 74);
    CHECK(no_data.err.rfind("wengert: error: " + data + ": ", 0) == 0);

    // Fashion-MNIST in a folder that does not hold it
    CliResult no_mnist = run_wengert({"train", mlp_model, "--data", (tmp.path / "empty").string()});
    CHECK(no_mnist.exit_code == 74);
    CHECK(no_mnist.err == "wengert: error: " + (tmp.path / "empty" / "train-images-idx3-ubyte.gz").string() +
                              ": not found; install the Debian package dataset-fashion-mnist, or point --data or WENGERT_DATA at "
                              "a folder holding the four Fashion-MNIST IDX files\n");

    // run's inputs and parameters
    CliResult no_inputs = run_wengert({"run", small_model, "--inputs", (tmp.path / "in.npz").string()});
    CHECK(no_inputs.exit_code == 74);
    CHECK(no_inputs.err.find((tmp.path / "in.npz").string()) != std::string::npos);
    write_dataset(tmp.path / "in.npz", 3, 4, 3, 1);
    CliResult no_params = run_wengert({"run", small_model, "--inputs", (tmp.path / "in.npz").string(), "--params",
                                       (tmp.path / "p.npz").string()});
    CHECK(no_params.exit_code == 74);
    CHECK(no_params.err.find((tmp.path / "p.npz").string()) != std::string::npos);

    // a checkpoint folder that does not exist
    CliResult no_checkpoint = run_wengert({"eval", mlp_model, "--checkpoint", (tmp.path / "ck").string()});
    CHECK(no_checkpoint.exit_code == 74);
}

TEST_CASE("paths the system rejects are I/O errors, not internal ones", "[dsl][cli]") {
    // found by fuzzing: each exited 70 with "internal error: filesystem error: ..."
    TempDir tmp;
    const std::string too_long = std::string(300, 'a') + ".wg";
    const std::string long_model = (tmp.path / too_long).string();
    CliResult model = run_wengert({"check", long_model});
    CHECK(model.exit_code == 74);
    CHECK(model.err == "wengert: error: " + long_model + ": File name too long\n");

    write_text(tmp.path / "imports.wg", "import \"" + too_long + "\"\nimport " + std::string(300, 'b') + "\n");
    CliResult imports = run_wengert({"check", "imports.wg"}, tmp.path);
    CHECK(imports.exit_code == 65);
    CHECK(imports.err.rfind("imports.wg:1:8: error: cannot import '" + too_long + "': File name too long\n", 0) == 0);
    CHECK(imports.err.find("imports.wg:2:8: error: no standard library module '" + std::string(300, 'b') + "'") != std::string::npos);

    // a log or checkpoint folder that cannot be made: here, beneath a file
    write_dataset(tmp.path / "d.npz", 6, 4, 3, 1);
    write_text(tmp.path / "m.wg", "def f(x: f32[B, 4], y: i64[B]) {\n    loss ce = cross_entropy(dense(3)(x), y)\n    return x\n}\n"
                                  "train f {\n    data = npz_data(\"" + (tmp.path / "d.npz").string() + "\")\n}\n");
    const fs::path beneath_file = tmp.path / "d.npz" / "ck";
    for (const std::string option : {"--log", "--checkpoint"}) {
        INFO(option);
        const std::string target = option == "--log" ? (beneath_file / "log.jsonl").string() : beneath_file.string();
        CliResult r = run_wengert({"train", (tmp.path / "m.wg").string(), option, target, "--no-progress"});
        CHECK(r.exit_code == 74);
        CHECK(r.err.rfind("wengert: error: " + target + ": cannot create the " +
                              (option == "--log" ? "metrics log's folder" : "checkpoint folder") + ": Not a directory\n", 0) == 0);
    }
}

TEST_CASE("reading a model or an import is bounded: a device is refused at once", "[dsl][cli]") {
    CliResult device = run_wengert({"check", "/dev/zero"});
    CHECK(device.exit_code == 74);
    CHECK(device.err.find("/dev/zero: is not a regular file, so not a model file") != std::string::npos);
    TempDir tmp;
    write_text(tmp.path / "m.wg", "import \"/dev/zero\"\n");
    CliResult imported = run_wengert({"check", "m.wg"}, tmp.path);
    CHECK(imported.exit_code == 65);
    CHECK(imported.err.find("m.wg:1:8: error: cannot import '/dev/zero': is not a regular file, so not a model file") !=
          std::string::npos);
}

TEST_CASE("definitions that refer to themselves are an error naming the cycle, never a stack overflow", "[dsl][cli]") {
    TempDir tmp;
    struct Case {
        std::string text, message;
    };
    auto model = [](const std::string& top, const std::string& use) {
        return top + "def f(x: f32[B, 2]) {\n    return x * " + use + "\n}\n";
    };
    std::vector<Case> cases = {
        {model("a = a + 1\n", "a"), "m.wg:1:5: error: 'a' refers to itself: a -> a\na = a + 1\n    ^\nm.wg:1:1: note: 'a' is "
                                     "defined here"},
        {model("a = b * 2\nb = a + 1\n", "a"), "m.wg:2:5: error: 'a' refers to itself: a -> b -> a"},
        {model("param w: f32[2] = w * 2\n", "w"), "m.wg:1:19: error: 'w' refers to itself: w -> w"},
        {model("param w: f32[2] = c\nc = w + 1\n", "w"), "m.wg:2:5: error: 'w' refers to itself: w -> c -> w"},
        {model("layer g(n) = serial(g(n))\n", "1") + "def h(x: f32[B, 2]) {\n    return g(2)(x)\n}\n", "calls nest more than 64 deep"},
    };
    for (const Case& c : cases) {
        INFO(c.text);
        write_text(tmp.path / "m.wg", c.text);
        for (const char* command : {"check", "graph"}) {
            INFO(command);
            std::vector<std::string> args = {command, "m.wg"};
            if (c.text.find("def h") != std::string::npos) args = {command, "m.wg", "--function", "h"};
            CliResult r = run_wengert(args, tmp.path);
            CHECK(r.exit_code == 65);
            CHECK(r.err.find(c.message) != std::string::npos);
        }
    }
    // an import chain of thousands of files stops at a located error
    for (int i = 0; i < 150; ++i) write_text(tmp.path / fmt::format("i{}.wg", i), fmt::format("import \"i{}.wg\"\n", i + 1));
    write_text(tmp.path / "i150.wg", "");
    CliResult chain = run_wengert({"check", "i0.wg"}, tmp.path);
    CHECK(chain.exit_code == 65);
    CHECK(chain.err.find("i99.wg:1:8: error: imports nest more than 100 deep") != std::string::npos);
}

TEST_CASE("wengert graph prints DOT: one node per tape entry, an edge per input, shapes with B", "[dsl][cli][graph]") {
    CliResult r = run_wengert({"graph", small_model});
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.rfind("digraph \"net\" {\n", 0) == 0);
    CHECK(r.out.size() >= 2);
    CHECK(r.out.substr(r.out.size() - 2) == "}\n");

    const std::regex node(R"re(^  n(\d+) \[label="([^"]*)"(, style=.*)?\];$)re");
    const std::regex edge(R"(^  n(\d+) -> n(\d+);$)");
    std::map<int, std::string> ops;          // node -> its op (the label's line before the shape)
    std::map<int, int> incoming;
    for (const std::string& line : lines_of(r.out)) {
        std::smatch m;
        if (std::regex_match(line, m, node)) {
            int id = std::stoi(m[1]);
            CHECK(ops.count(id) == 0);
            std::string label = m[2];
            std::vector<std::string> parts;
            for (std::size_t at = 0;;) {
                std::size_t next = label.find("\\n", at);
                parts.push_back(label.substr(at, next == std::string::npos ? std::string::npos : next - at));
                if (next == std::string::npos) break;
                at = next + 2;
            }
            REQUIRE(parts.size() >= 2);
            ops[id] = parts[parts.size() - 2];
            CHECK(std::regex_match(parts.back(), std::regex(R"(\[[B0-9, ]*\] (f32|f64|i64|u8))")));
        } else if (std::regex_match(line, m, edge)) {
            int from = std::stoi(m[1]), to = std::stoi(m[2]);
            CHECK(ops.count(from) == 1);   // defined before use: the tape is in order
            CHECK(ops.count(to) == 1);
            CHECK(from < to);
            ++incoming[to];
        }
    }
    REQUIRE(!ops.empty());
    const std::map<std::string, int> arity = {{"input", 0},     {"matmul", 2}, {"tanh", 1},          {"softmax", 1},
                                              {"h.dense.w", 0}, {"mix", 0},    {"logits.dense.b", 0}};
    std::set<std::string> seen;
    for (const auto& [id, op] : ops) {
        seen.insert(op);
        if (auto it = arity.find(op); it != arity.end()) {
            INFO("n" << id << " " << op);
            CHECK(incoming[id] == it->second);
        }
    }
    for (const std::string op : {"input", "matmul", "add", "tanh", "h.dense.w", "mix"}) CHECK(seen.count(op) == 1);
    CHECK(seen.count("eye") == 0);   // mix's initializer is not part of the model's graph
    CHECK(r.out.find("label=\"h\\ntanh\\n[B, 5] f32\"") != std::string::npos);
    CHECK(r.out.find("label=\"mix\\n[3, 3] f32\", style=filled") != std::string::npos);
}

TEST_CASE("wengert gradcheck agrees with finite differences on the small model", "[dsl][cli]") {
    CliResult r = run_wengert({"gradcheck", small_model, "--max-elements", "8"});
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    for (const std::string name : {"h.dense.w", "h.dense.b", "logits.dense.w", "logits.dense.b", "mix"}) {
        CHECK(r.out.find("\n" + name + " ") != std::string::npos);
    }
    CHECK(r.out.find("MISMATCH") == std::string::npos);
    CHECK(r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1) == "all gradients agree with finite differences\n");
}

TEST_CASE("out of memory exits 74 saying what was being allocated, never 70 (Note [Resources are I/O errors])", "[dsl][cli]") {
    TempDir tmp;
    // 2e8 elements is below the language's limit (Note [Element limit]), 800 MB above what the
    // command may have here
    write_text(tmp.path / "m.wg", "def f(x: f32[B, 2]) {\n    z = zeros((200000000,))\n    loss l = sum(z)\n    return x\n}\n");
#if !defined(__SANITIZE_ADDRESS__)   // AddressSanitizer's shadow memory needs more address space than any limit here
    for (const std::string command : {"check", "graph"}) {
        INFO(command);
        CliResult r = run_wengert_in_memory(500 * 1024, {command, "m.wg"}, tmp.path);
        CHECK(r.exit_code == 74);
        CHECK(r.err == "wengert: error: out of memory: cannot allocate 800000000 bytes for a f32 tensor of shape [200000000]\n");
    }
#endif
    // files that are folders: each named, exit 74 (an import: a located model error)
    fs::create_directory(tmp.path / "folder");
    write_dataset(tmp.path / "d.npz", 6, 2, 3, 1);
    CliResult inputs = run_wengert({"run", "m.wg", "--inputs", "folder"}, tmp.path);
    CHECK(inputs.exit_code == 74);
    CHECK(inputs.err == "wengert: error: folder: cannot read: Is a directory\n");
    write_text(tmp.path / "t.wg", "def f(x: f32[B, 2], y: i64[B]) {\n    loss ce = cross_entropy(dense(3)(x), y)\n    return x\n}\n"
                                  "train f {\n    data = npz_data(\"folder\")\n}\n");
    CliResult data = run_wengert({"train", "t.wg", "--no-progress"}, tmp.path);
    CHECK(data.exit_code == 74);
    CHECK(data.err == "wengert: error: folder: cannot read: Is a directory\n");
    CliResult params = run_wengert({"run", "t.wg", "--inputs", "d.npz", "--params", "folder"}, tmp.path);
    CHECK(params.exit_code == 74);
    CHECK(params.err == "wengert: error: folder: cannot read: Is a directory\n");
    write_text(tmp.path / "i.wg", "import \"folder\"\n");
    CliResult imported = run_wengert({"check", "i.wg"}, tmp.path);
    CHECK(imported.exit_code == 65);
    CHECK(imported.err.rfind("i.wg:1:8: error: cannot import 'folder': cannot be read\n", 0) == 0);
}

TEST_CASE("check's memory does not grow with the number of distinct sizes a model writes (Note [Storage cache])", "[dsl][cli]") {
    // 1000 defs, each checked on an input of its own size (37 x 10i floats, 1.5 KB to 1.5 MB):
    // the storage cache kept blocks of sizes that never came back, and malloc's heap kept the
    // rest resident, 740 MB in all. Now the check runs in 300 MB of address space.
    TempDir tmp;
    std::string text;
    for (int i = 1; i <= 1000; ++i) text += fmt::format("def f{}(x: f32[B, {}]) {{\n    loss l = sum(x)\n    return x\n}}\n", i, 10 * i);
    write_text(tmp.path / "m.wg", text);
#if defined(__SANITIZE_ADDRESS__)
    CliResult r = run_wengert({"check", "m.wg"}, tmp.path);   // its shadow memory needs more address space than any limit here
#else
    CliResult r = run_wengert_in_memory(300 * 1024, {"check", "m.wg"}, tmp.path);
#endif
    CHECK(r.exit_code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.find("f1000\n") != std::string::npos);
}

// Note [Data-parallel training]: a wengert without MPI refuses to be one of mpirun's processes
// (N copies would each train alone into the same folder) instead of pretending.
TEST_CASE("--version says whether MPI is built in; without it, a launch by mpirun is refused", "[dsl][cli][mpi]") {
    if (built_with_mpi()) {
        CHECK_THAT(run_wengert({"--version"}).out, Catch::Contains("data-parallel training: Open MPI"));
        return;
    }
    CHECK_THAT(run_wengert({"--version"}).out, Catch::Contains("data-parallel training: not built"));
    ::setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    CliResult r = run_wengert({"--version"});
    ::unsetenv("OMPI_COMM_WORLD_SIZE");
    CHECK(r.exit_code == 64);
    CHECK_THAT(r.err, Catch::Contains("launched by mpirun (OMPI_COMM_WORLD_SIZE is set), but this wengert was built without MPI"));
}
