// Seeing what a model does (issue 12): predict on inputs without labels (equal to run), the
// attention weights read out by name (rows summing to 1, equal to a reference computed here),
// and the PNG files of sample, show and plot, read back with libpng and checked for size and
// pixels.
#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <png.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support.hpp"
#include "wengert/io.hpp"
#include "wengert/random.hpp"

using namespace wengert;
using namespace wengert::dsl::testing;
namespace fs = std::filesystem;

namespace {

// A PNG read back with libpng's simplified API, as 8-bit RGB.
struct Png {
    std::uint32_t width = 0, height = 0;
    std::vector<std::uint8_t> rgb;
    std::uint8_t at(std::uint32_t x, std::uint32_t y, int channel) const { return rgb[(y * width + x) * 3 + static_cast<std::uint32_t>(channel)]; }
};

Png read_png(const fs::path& path) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    REQUIRE(png_image_begin_read_from_file(&image, path.string().c_str()) != 0);
    image.format = PNG_FORMAT_RGB;
    Png png;
    png.width = image.width;
    png.height = image.height;
    png.rgb.resize(PNG_IMAGE_SIZE(image));
    REQUIRE(png_image_finish_read(&image, nullptr, png.rgb.data(), 0, nullptr) != 0);
    return png;
}

double max_difference(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    auto x = a.to_doubles(), y = b.to_doubles();
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
    return worst;
}

// A classifier with dropout whose loss and metric read the labels only inside another def.
std::string classifier(const fs::path& data) {
    return fmt::format(R"(
def net(x: f32[B, 4], y: i64[B]) {{
    h      = dense(8, activation = relu)(x)
    logits = dense(3)(dropout(p = 0.5)(h))
    return score(logits, y)
}}

def score(logits, y) {{
    loss ce    = cross_entropy(logits, y)
    metric acc = accuracy(logits, y)
    return logits
}}

def shifted(x: f32[B, 4], y: i64[B]) {{
    h = dense(8, activation = relu)(x)
    return cast(y) + sum(h)
}}

train net {{
    data      = npz_data("{}")
    optimizer = adam(lr = 1e-2)
    steps     = 6
    batch     = 8
}}
)", data.string());
}

// A small VAE on 4 x 4 images, with the sampler declaration models/vae.wg has.
std::string small_vae(const fs::path& train, const fs::path& eval) {
    return fmt::format(R"(
encoder = dense(8, activation = relu)
to_mu   = dense(2)
decoder = dense(16, activation = sigmoid)

def encode(x: f32[B, 16]) {{
    return to_mu(encoder(x))
}}

def decode(z: f32[B, 2]) {{
    return decoder(z)
}}

sampling = sampler(decode = decode, encode = encode, image = (4, 4), range = (0, 1))

def vae(x: f32[B, 16]) {{
    mu = encode(x)
    z  = mu + 0.1 * normal(mu.shape)
    loss bce = bce(decode(z), x, reduction = "sum") / batch
    loss kl  = 0.5 * sum(mu ^ 2) / batch
    return z
}}

train vae {{
    data      = npz_data("{}")
    eval_data = npz_data("{}")
    optimizer = adam(lr = 1e-2)
    epochs    = 2
    batch     = 8
}}
)", train.string(), eval.string());
}

void write_images(const fs::path& path, std::int64_t n, std::uint64_t seed) {
    Generator gen(seed);
    Tensor x = Tensor::zeros(Shape{n, 16}, DType::f32);
    gen.fill_uniform(x, 0.0, 1.0);
    save_npz(path.string(), {{"x", x}});
}

fs::path only_file(const fs::path& dir, const std::string& prefix) {
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().filename().string().rfind(prefix, 0) == 0) return e.path();
    }
    FAIL("no " << prefix << " file in " << dir);
    return {};
}

}  // namespace

TEST_CASE("predict on inputs without labels equals run on the same inputs, batch by batch", "[dsl][cli][predict]") {
    TempDir tmp;
    const fs::path data = tmp.path / "data.npz", model = tmp.path / "net.wg", ck = tmp.path / "ck";
    write_dataset(data, 20, 4, 3, 5);
    write_text(model, classifier(data));
    REQUIRE(run_wengert({"train", model.string(), "--checkpoint", ck.string(), "--no-progress"}).exit_code == 0);

    NamedTensors arrays = load_npz(data.string());
    save_npz((tmp.path / "x.npz").string(), {arrays[0]});   // the images alone, no labels
    CliResult p = run_wengert({"predict", model.string(), "--checkpoint", ck.string(), "--inputs", (tmp.path / "x.npz").string(),
                               "--out", (tmp.path / "y.npz").string(), "--batch", "7", "--dump", "h=" + (tmp.path / "h.npy").string()});
    INFO(p.err);
    REQUIRE(p.exit_code == 0);
    CHECK(p.err == fmt::format("predict: net on 20 rows of {} in batches of 7: output [20, 3] -> {}\n", (tmp.path / "x.npz").string(),
                               (tmp.path / "y.npz").string()));

    // run: all 20 rows at once, with the labels, the checkpoint's parameters, no dropout
    CliResult r = run_wengert({"run", model.string(), "--inputs", data.string(), "--params", only_file(ck, "params-").string(), "--eval",
                               "--dump", "logits=" + (tmp.path / "logits.npy").string(), "--dump", "h=" + (tmp.path / "run_h.npy").string()});
    REQUIRE(r.exit_code == 0);
    NamedTensors y = load_npz((tmp.path / "y.npz").string());
    REQUIRE(y.size() == 1);
    CHECK(y[0].first == "output");
    CHECK(max_difference(y[0].second, load_npy((tmp.path / "logits.npy").string())) < 1e-5);
    CHECK(max_difference(load_npy((tmp.path / "h.npy").string()), load_npy((tmp.path / "run_h.npy").string())) < 1e-5);

    // an output that needs the absent labels is an error that names them
    CliResult bad = run_wengert({"predict", model.string(), "--checkpoint", ck.string(), "--inputs", (tmp.path / "x.npz").string(),
                                 "--out", (tmp.path / "z.npz").string(), "--function", "shifted"});
    CHECK(bad.exit_code == 65);
    CHECK_THAT(bad.err, Catch::Contains("shifted: its return value needs argument 'y', which the inputs do not give"));
    // an array that is no argument
    save_npz((tmp.path / "wrong.npz").string(), {{"images", arrays[0].second}});
    CliResult wrong = run_wengert({"predict", model.string(), "--checkpoint", ck.string(), "--inputs", (tmp.path / "wrong.npz").string(),
                                   "--out", (tmp.path / "z.npz").string()});
    CHECK(wrong.exit_code == 74);
    CHECK_THAT(wrong.err, Catch::Contains("wrong.npz: the file holds 'images', which is no argument of net (x, y)\n"));
}

TEST_CASE("dumped attention weights sum to 1 over the keys and equal a reference computation", "[dsl][cli][attention]") {
    TempDir tmp;
    const fs::path model = tmp.path / "attend.wg";
    write_text(model, R"(
def attend(q: f32[B, 3, 4], k: f32[B, 5, 4], v: f32[B, 5, 4], mask: u8[B, 1, 1, 5]) {
    y, m = pure_attention(n_heads = 2)(q, k, v, mask)
    return y
}

def attend_near(q: f32[B, 3, 4], k: f32[B, 5, 4], v: f32[B, 5, 4], mask: u8[B, 1, 1, 5]) {
    y, m = pure_attention(n_heads = 2, penalty = distance(scale = 0.5))(q, k, v, mask)
    return y
}
)");
    const std::int64_t b = 2, lq = 3, lk = 5, d = 4, heads = 2, dh = 2;
    Generator gen(3);
    Tensor q = Tensor::zeros(Shape{b, lq, d}, DType::f32), k = Tensor::zeros(Shape{b, lk, d}, DType::f32),
           v = Tensor::zeros(Shape{b, lk, d}, DType::f32);
    for (Tensor* t : {&q, &k, &v}) gen.fill_uniform(*t, -1.0, 1.0);
    // the second sequence's last two keys are padding
    Tensor mask = Tensor::from(std::vector<std::uint8_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, Shape{b, 1, 1, lk});
    save_npz((tmp.path / "in.npz").string(), {{"q", q}, {"k", k}, {"v", v}, {"mask", mask}});
    auto qs = q.to_doubles(), ks = k.to_doubles(), vs = v.to_doubles();
    auto ms = mask.to_doubles();

    for (const auto& [function, scale] : std::vector<std::pair<std::string, double>>{{"attend", 0.0}, {"attend_near", 0.5}}) {
        INFO(function);
        const fs::path w = tmp.path / (function + "_w.npy"), y = tmp.path / (function + "_y.npy");
        CliResult r = run_wengert({"run", model.string(), "--function", function, "--inputs", (tmp.path / "in.npz").string(),
                                   "--dump", "y.attention.weights=" + w.string(), "--dump", "y=" + y.string()});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        Tensor weights = load_npy(w.string());
        REQUIRE(weights.shape() == Shape{b, heads, lq, lk});
        auto ws = weights.to_doubles(), ys = load_npy(y.string()).to_doubles();
        for (std::int64_t bi = 0; bi < b; ++bi) {
            for (std::int64_t h = 0; h < heads; ++h) {
                for (std::int64_t i = 0; i < lq; ++i) {
                    // the reference: softmax over keys of q k^T / sqrt(d_head) - scale |i - j|, masked keys at -1e9
                    std::vector<double> logits(lk);
                    for (std::int64_t j = 0; j < lk; ++j) {
                        double dot = 0;
                        for (std::int64_t c = h * dh; c < (h + 1) * dh; ++c) dot += qs[(bi * lq + i) * d + c] * ks[(bi * lk + j) * d + c];
                        logits[j] = ms[bi * lk + j] != 0 ? dot / std::sqrt(static_cast<double>(dh)) - scale * std::abs(static_cast<double>(i - j)) : -1e9;
                    }
                    double top = *std::max_element(logits.begin(), logits.end()), total = 0, row_sum = 0;
                    for (double l : logits) total += std::exp(l - top);
                    for (std::int64_t j = 0; j < lk; ++j) {
                        const double got = ws[((bi * heads + h) * lq + i) * lk + j];
                        CHECK(got == Approx(std::exp(logits[j] - top) / total).margin(1e-6));
                        row_sum += got;
                    }
                    CHECK(row_sum == Approx(1.0).margin(1e-6));
                    // and they are the weights the layer's output averages v with
                    for (std::int64_t c = h * dh; c < (h + 1) * dh; ++c) {
                        double mixed = 0;
                        for (std::int64_t j = 0; j < lk; ++j) mixed += ws[((bi * heads + h) * lq + i) * lk + j] * vs[(bi * lk + j) * d + c];
                        CHECK(ys[(bi * lq + i) * d + c] == Approx(mixed).margin(1e-5));
                    }
                }
            }
        }
    }

    // a misspelt name suggests the offered one
    CliResult typo = run_wengert({"run", model.string(), "--function", "attend", "--inputs", (tmp.path / "in.npz").string(),
                                  "--dump", "y.atention.weights=" + (tmp.path / "x.npy").string()});
    CHECK(typo.exit_code == 64);
    CHECK(typo.err.rfind("wengert: --dump: no value named 'y.atention.weights'; did you mean 'y.attention.weights'?\n", 0) == 0);
}

TEST_CASE("models/sort_attention.wg: each block's weights by their documented names, (B, 4, 16, 16)", "[dsl][cli][attention]") {
    TempDir tmp;
    Tensor tokens = Tensor::zeros(Shape{3, 16}, DType::i64);
    for (std::int64_t i = 0; i < 48; ++i) tokens.data<std::int64_t>()[i] = i % 16 < 12 ? (i * 7) % 10 : 10;
    save_npz((tmp.path / "x.npz").string(), {{"tokens", tokens}});
    const std::string model = (fs::path(WENGERT_MODELS_DIR) / "sort_attention.wg").string();
    // predict reads a checkpoint; a folder without one is an I/O error
    CliResult r = run_wengert({"predict", model, "--checkpoint", (tmp.path / "none").string(), "--inputs", (tmp.path / "x.npz").string(),
                               "--out", (tmp.path / "y.npz").string()});
    CHECK(r.exit_code == 74);   // no checkpoint there
    // run on the untrained model: the weights' form does not depend on training
    Tensor targets = Tensor::zeros(Shape{3, 16}, DType::i64);   // any digits: the loss is not looked at
    save_npz((tmp.path / "in.npz").string(), {{"tokens", tokens}, {"targets", targets}});
    CliResult run = run_wengert({"run", model, "--inputs", (tmp.path / "in.npz").string(), "--eval",
                                 "--dump", "h1.attention.weights=" + (tmp.path / "w1.npy").string(),
                                 "--dump", "h2.encoder_block.residual_0.attention.attention_qkv.pure_attention.weights=" + (tmp.path / "w2.npy").string()});
    INFO(run.err);
    REQUIRE(run.exit_code == 0);
    for (const char* name : {"w1.npy", "w2.npy"}) {
        Tensor w = load_npy((tmp.path / name).string());
        REQUIRE(w.shape() == Shape{3, 4, 16, 16});
        auto ws = w.to_doubles();
        for (std::int64_t row = 0; row < 3 * 4 * 16; ++row) {
            double total = 0, on_padding = 0;
            for (std::int64_t j = 0; j < 16; ++j) {
                total += ws[row * 16 + j];
                if (j >= 12) on_padding += ws[row * 16 + j];
            }
            CHECK(total == Approx(1.0).margin(1e-5));
            CHECK(on_padding == Approx(0.0).margin(1e-6));   // the padding mask hides tokens 12..15
        }
    }
}

TEST_CASE("sample writes PNG grids of samples, reconstructions and a latent walk of the expected size", "[dsl][cli][sample][png]") {
    TempDir tmp;
    const fs::path train = tmp.path / "train.npz", eval = tmp.path / "eval.npz", model = tmp.path / "vae.wg", ck = tmp.path / "ck";
    write_images(train, 32, 1);
    write_images(eval, 16, 2);
    write_text(model, small_vae(train, eval));
    REQUIRE(run_wengert({"train", model.string(), "--checkpoint", ck.string(), "--no-progress"}).exit_code == 0);
    struct Case {
        std::vector<std::string> args;
        std::uint32_t width, height;
    };
    // images 4 x 4 at scale 2 (8 px) with 2 px between and around: n images a row take n * 10 + 2
    for (const Case& c : std::vector<Case>{{{"--n", "9"}, 32, 32},
                                           {{"--n", "10", "--scale", "3"}, 4 * 14 + 2, 3 * 14 + 2},
                                           {{"--reconstruct", "3"}, 32, 22},
                                           {{"--reconstruct", "12"}, 102, 42},
                                           {{"--walk", "--steps", "4"}, 42, 82}}) {
        INFO(fmt::format("{}", fmt::join(c.args, " ")));
        const fs::path out = tmp.path / "grid.png";
        std::vector<std::string> args = {"sample", model.string(), "--checkpoint", ck.string(), "--out", out.string()};
        args.insert(args.end(), c.args.begin(), c.args.end());
        CliResult r = run_wengert(args);
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        Png png = read_png(out);
        CHECK(png.width == c.width);
        CHECK(png.height == c.height);
    }
    // a reconstruction's top row is the data itself: pixel (0, 0) of eval image 0 at range (0, 1)
    const fs::path out = tmp.path / "recon.png";
    REQUIRE(run_wengert({"sample", model.string(), "--checkpoint", ck.string(), "--out", out.string(), "--reconstruct", "1", "--scale", "1"}).exit_code == 0);
    Png png = read_png(out);
    const double first = load_npz(eval.string())[0].second.to_doubles()[0];
    CHECK(std::abs(static_cast<double>(png.at(2, 2, 0)) - first * 255.0) <= 1.0);

    // the sampler's absence, a decode without a code size
    write_text(tmp.path / "bare.wg", "def decode(z) {\n    return z\n}\n");
    CliResult none = run_wengert({"sample", (tmp.path / "bare.wg").string(), "--checkpoint", ck.string(), "--out", out.string()});
    CHECK(none.exit_code == 64);
    CHECK_THAT(none.err, Catch::Contains("sample: the model declares no sampler"));
}

TEST_CASE("show draws heatmaps per head and image grids as PNG files of the documented size", "[dsl][cli][show][png]") {
    TempDir tmp;
    // (2, 4, 6, 6): batch item 1's four heads in one row, 4 px a cell
    Tensor maps = Tensor::zeros(Shape{2, 4, 6, 6}, DType::f32);
    Generator(1).fill_uniform(maps, 0.0, 1.0);
    save_npy((tmp.path / "w.npy").string(), maps);
    CliResult r = run_wengert({"show", (tmp.path / "w.npy").string(), "--out", (tmp.path / "w.png").string(), "--index", "1", "--scale", "4"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    Png png = read_png(tmp.path / "w.png");
    // each map (6 * 4 + 16) x (20 + 6 * 4 + 16), a 16 px margin and the 72 px colour bar
    CHECK(png.width == 4 * 40 + 16 + 72);
    CHECK(png.height == 60 + 16);

    Tensor grid = Tensor::zeros(Shape{3, 5}, DType::f64);
    save_npy((tmp.path / "m.npy").string(), grid);
    REQUIRE(run_wengert({"show", (tmp.path / "m.npy").string(), "--out", (tmp.path / "m.png").string(), "--scale", "10"}).exit_code == 0);
    png = read_png(tmp.path / "m.png");
    CHECK(png.width == 5 * 10 + 16 + 16 + 72);
    CHECK(png.height == 20 + 3 * 10 + 16 + 16);

    // images: the first all white, the second all black, three to a row at scale 3
    Tensor images = Tensor::zeros(Shape{5, 8, 8}, DType::f32);
    for (std::int64_t i = 0; i < 64; ++i) images.data<float>()[i] = 1.0f;
    save_npy((tmp.path / "im.npy").string(), images);
    REQUIRE(run_wengert({"show", (tmp.path / "im.npy").string(), "--images", "--out", (tmp.path / "im.png").string(), "--scale", "3"}).exit_code == 0);
    png = read_png(tmp.path / "im.png");
    CHECK(png.width == 3 * (8 * 3 + 2) + 2);
    CHECK(png.height == 2 * (8 * 3 + 2) + 2);
    CHECK(png.at(5, 5, 0) == 255);
    CHECK(png.at(2 + 26 + 5, 5, 1) == 0);

    CliResult missing = run_wengert({"show", (tmp.path / "none.npy").string(), "--out", (tmp.path / "x.png").string()});
    CHECK(missing.exit_code == 74);
    CHECK(missing.err == "wengert: error: " + (tmp.path / "none.npy").string() + ": no such array file\n");
    CliResult bad = run_wengert({"show", (tmp.path / "m.npy").string(), "--out", (tmp.path / "x.png").string(), "--images"});
    CHECK(bad.exit_code == 64);
    CHECK_THAT(bad.err, Catch::Contains("show --images: expects (N, H, W) or (N, H, W, C) with C = 1 or 3, got [3, 5]"));
}

TEST_CASE("plot draws one panel per loss term and metric of a metrics log", "[dsl][cli][plot][png]") {
    TempDir tmp;
    const fs::path data = tmp.path / "data.npz", model = tmp.path / "net.wg", ck = tmp.path / "ck";
    write_dataset(data, 20, 4, 3, 5);
    write_text(model, classifier(data));
    REQUIRE(run_wengert({"train", model.string(), "--checkpoint", ck.string(), "--no-progress"}).exit_code == 0);
    CliResult r = run_wengert({"plot", (ck / "metrics.jsonl").string(), "--out", (tmp.path / "curves.png").string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    Png png = read_png(tmp.path / "curves.png");
    // loss, ce and acc: two panels of 420 x 280 to a row
    CHECK(png.width == 2 * 420);
    CHECK(png.height == 2 * 280);

    write_text(tmp.path / "bad.jsonl", "{\"step\": 1, \"loss\": 2}\nnot json\n");
    CliResult bad = run_wengert({"plot", (tmp.path / "bad.jsonl").string(), "--out", (tmp.path / "x.png").string()});
    CHECK(bad.exit_code == 74);
    CHECK_THAT(bad.err, Catch::Contains("bad.jsonl: line 2: json:"));
}

TEST_CASE("--help covers predict, sample, show and plot", "[dsl][cli]") {
    for (const std::string command : {"predict", "sample", "show", "plot"}) {
        INFO(command);
        CliResult r = run_wengert({command, "--help"});
        CHECK(r.exit_code == 0);
        CHECK(r.out.rfind("usage: wengert " + command + " FILE", 0) == 0);
    }
    CliResult main_help = run_wengert({"--help"});
    for (const char* line : {"  predict FILE ", "  sample FILE ", "  show FILE.npy ", "  plot FILE.jsonl "}) CHECK_THAT(main_help.out, Catch::Contains(line));
}
