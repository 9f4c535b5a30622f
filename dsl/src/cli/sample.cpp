// `wengert sample`: a generative model's decoder on codes z ~ N(0, I), on the codes of the
// evaluation data (--reconstruct) or on the line between two of them (--walk), drawn as a PNG
// grid of images. The model file says how with a sampler(...) declaration (Note [Samplers] in
// sample_builtins.cpp).
#include <fmt/ranges.h>

#include <cmath>

#include "../checkpoint.hpp"
#include "../data.hpp"
#include "../picture.hpp"
#include "../train.hpp"
#include "cli.hpp"
#include "wengert/ops.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

namespace {

struct Sampler {
    std::string decode, encode;    // def names; encode may be empty
    std::vector<std::int64_t> image;   // (H, W) or (H, W, C)
    double lo = 0, hi = 1;
    Location loc;
};

// The model's one `NAME = sampler(...)` declaration, evaluated.
Sampler read_sampler(Interpreter& in) {
    const Constant* found = nullptr;
    for (const auto& d : in.main_module().decls) {
        const auto* c = d.as<Constant>();
        if (!c) continue;
        const auto* call = c->value->as<Call>();
        const auto* callee = call ? call->callee->as<Name>() : nullptr;
        if (!callee || callee->id != "sampler") continue;
        if (found) throw EvalError(d.loc, fmt::format("a second sampler declaration ('{}' after '{}'): sample reads one", c->name, found->name));
        found = c;
    }
    if (!found) {
        throw UsageError("sample: the model declares no sampler; add one such as `sampling = sampler(decode = decode, "
                         "image = (28, 28), range = (0, 1))` (docs/dsl.md, \"Sampling\")");
    }
    Value v = in.eval_global(*found->value);
    const Record& r = *v.get<std::shared_ptr<Record>>();
    Sampler s;
    s.decode = r.fields.at("decode").get<std::string>();
    if (!r.fields.at("encode").is_none()) s.encode = r.fields.at("encode").get<std::string>();
    for (const Value& e : *r.fields.at("image").get<std::shared_ptr<TupleValue>>()) s.image.push_back(e.get<std::int64_t>());
    const TupleValue& range = *r.fields.at("range").get<std::shared_ptr<TupleValue>>();
    s.lo = range[0].number();
    s.hi = range[1].number();
    s.loc = r.loc;
    return s;
}

// The code size d of `decode(z: f32[N, d])`.
std::int64_t code_size(const Interpreter& in, const std::string& decode) {
    const FunctionDef* def = in.find_function(decode);
    const auto* size = def && def->params.size() == 1 && def->params[0].type && def->params[0].type->dims.size() == 2
                           ? std::get_if<std::int64_t>(&def->params[0].type->dims[1].size)
                           : nullptr;
    if (!size) {
        throw UsageError(fmt::format("sample: {} must take one argument annotated with the code size, as `def {}(z: f32[N, 20])`",
                                     decode, decode));
    }
    return *size;
}

// The first value `fname` returns on `inputs`, in predict mode, without a tape.
Tensor first_output(Interpreter& in, const std::string& fname, const std::vector<Tensor>& inputs) {
    Tape tape;
    NoGrad no_grad;
    RunResult r = in.run(fname, inputs, Mode::predict);
    if (r.outputs.empty() || !r.outputs[0].is<Var>()) throw UsageError(fmt::format("sample: {} returns no tensor", fname));
    return r.outputs[0].get<Var>().value().to(DType::f64).contiguous();
}

// Rows of `values` (N, ...) as images of the sampler's shape, mapped from its range to [0, 1].
std::vector<picture::Image> images_of(const Tensor& values, const Sampler& s, const std::string& what) {
    const std::int64_t per_image = s.image[0] * s.image[1] * (s.image.size() == 3 ? s.image[2] : 1);
    if (values.ndim() == 0 || values.numel() != values.shape()[0] * per_image) {
        std::vector<std::string> dims;
        for (auto d : s.image) dims.push_back(std::to_string(d));
        throw UsageError(fmt::format("sample: {} is {}, not one image of {} values ({}) per row", what, values.shape().str(), per_image,
                                     fmt::join(dims, " x ")));
    }
    const double* p = values.data<double>();
    std::vector<picture::Image> out;
    for (std::int64_t i = 0; i < values.shape()[0]; ++i) {
        picture::Image image{s.image[0], s.image[1], s.image.size() == 3 ? s.image[2] : 1, {}};
        for (std::int64_t k = 0; k < per_image; ++k) image.values.push_back((p[i * per_image + k] - s.lo) / (s.hi - s.lo));
        out.push_back(std::move(image));
    }
    return out;
}

// The first `n` rows of the evaluation data's first column (the images).
Tensor eval_images(Interpreter& in, const Cli& cli, std::int64_t n) {
    TrainOverrides o;
    TrainSettings settings = read_train_settings(in, o);
    DataOptions data;
    data.dtype = in.options().dtype;
    if (cli.has("data")) data.data_dir = cli.get("data");
    std::optional<Dataset> eval = settings.eval_data ? std::optional(load_dataset(*settings.eval_data, data))
                                                     : settings.data ? companion_eval_dataset(*settings.data, data) : std::nullopt;
    if (!eval) throw UsageError("sample: the train block has no eval_data and its data has no test split to take images from");
    if (eval->size() < n) throw UsageError(fmt::format("sample: needs {} images; {} has {}", n, eval->description, eval->size()));
    return eval->columns[0].slice(0, 0, n).contiguous();
}

}  // namespace

int cmd_sample(const Cli& cli) {
    for (const char* k : {"checkpoint", "out"}) {
        if (!cli.has(k)) throw UsageError(fmt::format("sample: --{} is required", k));
    }
    const bool walk = cli.flags.count("walk") > 0;
    if (walk && cli.has("reconstruct")) throw UsageError("sample: --reconstruct and --walk exclude each other");
    const std::int64_t n = cli.integer("n").value_or(64), steps = cli.integer("steps").value_or(10);
    const std::int64_t reconstruct = cli.integer("reconstruct").value_or(0);
    const std::int64_t scale = cli.integer("scale").value_or(2);
    if (n < 1 || n > 4096) throw UsageError(fmt::format("--n must be 1 to 4096, got {}", n));
    if (steps < 2 || steps > 64) throw UsageError(fmt::format("--steps must be 2 to 64, got {}", steps));
    if (cli.has("reconstruct") && (reconstruct < 1 || reconstruct > 1024)) {
        throw UsageError(fmt::format("--reconstruct must be 1 to 1024, got {}", reconstruct));
    }
    if (scale < 1 || scale > 32) throw UsageError(fmt::format("--scale must be 1 to 32, got {}", scale));
    return with_model(cli, interpreter_options(cli), [&](Interpreter& in, ParamStore& params, DiagnosticSink&) {
        Sampler s = read_sampler(in);
        if (cli.has("function")) s.decode = target_function(in, cli);
        const std::int64_t d = code_size(in, s.decode);
        if ((walk || reconstruct > 0) && s.encode.empty()) {
            throw EvalError(s.loc, fmt::format("sample --{} needs the codes of images: give the sampler an encode def "
                                               "(encode = ...)", walk ? "walk" : "reconstruct"));
        }
        constexpr std::int64_t kWalkRows = 8;
        Tensor images = walk ? eval_images(in, cli, 2 * kWalkRows) : reconstruct > 0 ? eval_images(in, cli, reconstruct) : Tensor();
        LoadedCheckpoint ck = load_checkpoint(cli.get("checkpoint"));
        // the decoder's (and encoder's) parameters, created then read from the checkpoint
        create_params(in, s.decode, {Tensor::zeros(Shape{1, d}, in.options().dtype)}, Mode::predict);
        if (images.defined()) create_params(in, s.encode, {images.slice(0, 0, 1).contiguous()}, Mode::predict);
        params_from_checkpoint(params, ck.params, ck.params_path);
        in.set_progress(checkpoint_progress(ck.info));
        manual_seed(in.options().seed);

        std::vector<picture::Image> grid;
        std::int64_t columns = 0;
        if (walk) {
            // rows r: from the code of image 2r to that of image 2r + 1, in `steps` even steps
            Tensor codes = first_output(in, s.encode, {images});
            if (codes.ndim() != 2 || codes.shape()[1] != d) {
                throw UsageError(fmt::format("sample: {} gives codes {}, where {} takes (N, {})", s.encode, codes.shape().str(), s.decode, d));
            }
            Tensor line = Tensor::empty(Shape{kWalkRows * steps, d}, DType::f64);
            const double* c = codes.data<double>();
            double* z = line.data<double>();
            for (std::int64_t r = 0; r < kWalkRows; ++r) {
                for (std::int64_t j = 0; j < steps; ++j) {
                    const double t = static_cast<double>(j) / static_cast<double>(steps - 1);
                    for (std::int64_t k = 0; k < d; ++k) z[(r * steps + j) * d + k] = (1 - t) * c[2 * r * d + k] + t * c[(2 * r + 1) * d + k];
                }
            }
            grid = images_of(first_output(in, s.decode, {line.to(in.options().dtype)}), s, s.decode + "'s output");
            columns = steps;
        } else if (reconstruct > 0) {
            // pairs of rows: up to 10 images of the data, then their reconstructions below
            Tensor codes = first_output(in, s.encode, {images});
            std::vector<picture::Image> originals = images_of(images.to(DType::f64).contiguous(), s, "the evaluation images");
            std::vector<picture::Image> decoded = images_of(first_output(in, s.decode, {codes.to(in.options().dtype)}), s, s.decode + "'s output");
            columns = std::min<std::int64_t>(reconstruct, 10);
            for (std::int64_t start = 0; start < reconstruct; start += columns) {
                for (auto* source : {&originals, &decoded}) {
                    for (std::int64_t i = start; i < start + columns; ++i) {
                        grid.push_back(i < reconstruct ? (*source)[static_cast<std::size_t>(i)] : picture::Image{});
                    }
                }
            }
        } else {
            Tensor z;
            {
                Tape tape;
                NoGrad no_grad;
                z = normal(Shape{n, d}, 0.0, 1.0, in.options().dtype).value();
            }
            grid = images_of(first_output(in, s.decode, {z}), s, s.decode + "'s output");
            columns = static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
        }
        picture::write_image_grid(cli.get("out"), grid, columns, static_cast<int>(scale));
        fmt::print(stderr, "sample: {} images ({} per row) -> {}\n", grid.size(), columns, cli.get("out"));
        return 0;
    });
}

}  // namespace wengert::dsl
