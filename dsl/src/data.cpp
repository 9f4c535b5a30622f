#include "data.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "builtins.hpp"
#include "wengert/io.hpp"
#include "wengert/layers.hpp"

namespace wengert::dsl {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

std::string data_dir(const Record& r, const DataOptions& options) {
    auto it = r.fields.find("dir");
    if (it != r.fields.end() && it->second.is<std::string>()) return it->second.get<std::string>();
    if (!options.data_dir.empty()) return options.data_dir;
    if (const char* env = std::getenv("WENGERT_DATA")) return env;
    return kFashionMnistDir;
}

// "train-images-idx3-ubyte" with or without ".gz".
std::string find_idx(const std::string& dir, const std::string& stem) {
    for (const char* suffix : {".gz", ""}) {
        std::string p = (fs::path(dir) / (stem + suffix)).string();
        if (fs::exists(p)) return p;
    }
    throw IOError((fs::path(dir) / (stem + ".gz")).string(),
                  "not found; install the Debian package dataset-fashion-mnist, or point --data or WENGERT_DATA "
                  "at a folder holding the four Fashion-MNIST IDX files");
}

// Note [Label noise]
// fashion_mnist(split = "train", label_noise = rate, noise = kind, noise_seed = s) corrupts
// each training label with probability `rate`, as Sukhbaatar et al. (arXiv 1406.2080) do to
// study noisy labels: "pairs" moves class i to (i + 1) mod 10 (a systematic confusion, the
// hard case), "uniform" to one of the other nine classes, each equally likely. The same seed
// gives the same labels; the test split, which evaluation reads, is always clean.
void add_label_noise(const Record& r, Dataset& d) {
    const Value& rate_value = r.fields.at("label_noise");
    if (!rate_value.is_number()) {
        throw EvalError(r.loc, fmt::format("fashion_mnist: label_noise must be a number, got {}", describe(rate_value)));
    }
    const double rate = rate_value.number();
    if (!(rate >= 0.0 && rate < 1.0)) throw EvalError(r.loc, fmt::format("fashion_mnist: label_noise must be in [0, 1), got {}", rate));
    const Value& kind_value = r.fields.at("noise");
    const std::string kind = kind_value.is<std::string>() ? kind_value.get<std::string>() : "";
    if (kind != "pairs" && kind != "uniform") {
        throw EvalError(r.loc, fmt::format("fashion_mnist: noise must be \"pairs\" or \"uniform\", got {}", describe(kind_value)));
    }
    const Value& seed_value = r.fields.at("noise_seed");
    if (!seed_value.is<std::int64_t>()) {
        throw EvalError(r.loc, fmt::format("fashion_mnist: noise_seed must be an integer, got {}", describe(seed_value)));
    }
    if (rate == 0.0) return;
    Generator gen(hash_name(static_cast<std::uint64_t>(seed_value.get<std::int64_t>()), "label_noise"));
    Tensor labels = d.columns[1].clone();
    std::int64_t* y = labels.data<std::int64_t>();
    std::int64_t flipped = 0;
    for (std::int64_t i = 0; i < labels.numel(); ++i) {
        const double u = static_cast<double>(gen.next_u64() >> 11) * 0x1.0p-53;
        const auto other = static_cast<std::int64_t>(gen.next_u64() % 9);   // drawn for every label: kinds flip the same ones
        if (u >= rate) continue;
        y[i] = kind == "pairs" ? (y[i] + 1) % 10 : (y[i] + 1 + other) % 10;
        ++flipped;
    }
    d.columns[1] = labels;
    d.description += fmt::format(", {} of {} labels flipped ({} noise {})", flipped, labels.numel(), kind, rate);
}

Dataset fashion_mnist(const Record& r, const DataOptions& options, const std::string& split) {
    std::string dir = data_dir(r, options);
    std::string prefix;
    if (split == "train") prefix = "train";
    else if (split == "test") prefix = "t10k";
    else throw EvalError(r.loc, fmt::format("fashion_mnist: split must be \"train\" or \"test\", got \"{}\"", split));
    std::string layout = r.fields.at("layout").is<std::string>() ? r.fields.at("layout").get<std::string>() : "";
    if (layout != "flat" && layout != "image") {
        throw EvalError(r.loc, fmt::format("fashion_mnist: layout must be \"flat\" (N, 784) or \"image\" (N, 28, 28, 1), got \"{}\"", layout));
    }
    std::string images_path = find_idx(dir, prefix + "-images-idx3-ubyte");
    std::string labels_path = find_idx(dir, prefix + "-labels-idx1-ubyte");
    Tensor images = load_idx(images_path);
    Tensor labels = load_idx(labels_path);
    if (images.ndim() != 3 || labels.ndim() != 1 || images.shape()[0] != labels.shape()[0]) {
        throw IOError(images_path, fmt::format("expected images (N, 28, 28) and labels (N,), got {} and {}",
                                               images.shape().str(), labels.shape().str()));
    }
    // pixels are bytes and labels classes 0 to 9: another IDX type is not cast silently (a NaN
    // or negative float pixel has no byte; a label 2.5 is not class 2)
    if (images.dtype() != DType::u8) {
        throw IOError(images_path, fmt::format("holds {} pixels; Fashion-MNIST's images are u8 (IDX type 0x08)",
                                               dtype_name(images.dtype())));
    }
    {
        std::vector<double> values = labels.to_doubles();
        for (std::size_t i = 0; i < values.size(); ++i) {
            double v = values[i];
            if (!(v >= 0 && v <= 9 && v == std::floor(v))) {
                throw IOError(labels_path, fmt::format("row {} holds label {}, not a class 0 to 9", i, v));
            }
        }
    }
    std::int64_t n = images.shape()[0];
    std::int64_t pixels = images.shape()[1] * images.shape()[2];
    Tensor x = Tensor::empty(Shape{n, pixels}, options.dtype);
    Tensor src = images.to(DType::u8).contiguous();
    const std::uint8_t* p = src.data<std::uint8_t>();
    if (options.dtype == DType::f64) {
        double* o = x.data<double>();
        for (std::int64_t i = 0; i < n * pixels; ++i) o[i] = p[i] / 255.0;
    } else {
        float* o = x.data<float>();
        for (std::int64_t i = 0; i < n * pixels; ++i) o[i] = static_cast<float>(p[i]) / 255.0f;
    }
    if (layout == "image") x = x.view(Shape{n, images.shape()[1], images.shape()[2], 1});
    Dataset d;
    d.description = fmt::format("fashion_mnist(split=\"{}\") from {}", split, dir);
    d.fields = {"image", "label"};
    d.columns = {x, labels.to(DType::i64)};
    if (split == "train") {
        add_label_noise(r, d);
    } else if (r.fields.at("split").is<std::string>() && r.fields.at("split").get<std::string>() == "test" &&
               r.fields.at("label_noise").is_number() && r.fields.at("label_noise").number() != 0.0) {
        throw EvalError(r.loc, "fashion_mnist: label_noise corrupts the training split only; the test split stays clean");
    }
    return d;
}

Dataset npz_data(const Record& r, const DataOptions& options) {
    std::string path = r.fields.at("path").get<std::string>();
    NamedTensors arrays = load_npz(path);
    Dataset d;
    d.description = fmt::format("npz_data(\"{}\")", path);
    const Value& fields = r.fields.at("fields");
    if (fields.is_none()) {
        for (auto& [name, t] : arrays) {
            d.fields.push_back(name);
            d.columns.push_back(t);
        }
    } else {
        if (!fields.is<std::shared_ptr<TupleValue>>()) throw EvalError(r.loc, "npz_data: fields must be a tuple of names");
        for (const auto& f : *fields.get<std::shared_ptr<TupleValue>>()) {
            if (!f.is<std::string>()) throw EvalError(r.loc, "npz_data: fields must be strings");
            const std::string& want = f.get<std::string>();
            auto it = std::find_if(arrays.begin(), arrays.end(), [&](const auto& a) { return a.first == want; });
            if (it == arrays.end()) {
                std::vector<std::string> names;
                for (const auto& a : arrays) names.push_back(a.first);
                throw IOError(path, fmt::format("has no array '{}'; it holds {}", want, fmt::join(names, ", ")));
            }
            d.fields.push_back(want);
            d.columns.push_back(it->second);
        }
    }
    for (auto& c : d.columns) {
        if (is_floating(c.dtype())) c = c.to(options.dtype);
        if (c.ndim() == 0 || c.shape()[0] != d.columns[0].shape()[0]) {
            throw IOError(path, fmt::format("arrays must share their first axis: {} has shape {}, {} has {}", d.fields[0],
                                            d.columns[0].shape().str(), d.fields[static_cast<std::size_t>(&c - &d.columns[0])], c.shape().str()));
        }
    }
    return d;
}

Dataset csv_data(const Record& r, const DataOptions& options) {
    std::string path = r.fields.at("path").get<std::string>();
    CsvOptions o;
    o.header = r.fields.at("header").is<bool>() && r.fields.at("header").get<bool>();
    const std::string& delim = r.fields.at("delimiter").get<std::string>();
    if (delim.size() != 1) throw EvalError(r.loc, fmt::format("csv_data: delimiter must be one character, got \"{}\"", delim));
    o.delimiter = delim[0];
    o.dtype = options.dtype;
    if (r.fields.at("label").is<std::int64_t>()) {
        std::int64_t label = r.fields.at("label").get<std::int64_t>();
        if (label < std::numeric_limits<int>::min() || label > std::numeric_limits<int>::max()) {
            throw EvalError(r.loc, fmt::format("csv_data: label column {} is out of range", label));
        }
        o.label_column = static_cast<int>(label);
    }
    CsvTable table = load_csv(path, o);
    Dataset d;
    d.description = fmt::format("csv_data(\"{}\")", path);
    d.fields.push_back("features");
    d.columns.push_back(table.features);
    if (table.labels.defined()) {
        d.fields.push_back("label");
        d.columns.push_back(table.labels);
    }
    return d;
}

// Note [The sorting task]
// n sequences of digits 0-9, each of a length drawn uniformly from [min_len, max_len], padded to
// max_len with `pad`; the targets are the same digits sorted, with 0 at the padded positions
// (a model masks them out of its loss with the padding mask of the tokens). Generated from
// the seed alone: the same seed gives the same data.
Dataset sort_digits(const Record& r) {
    auto integer = [&](const char* k) {
        const Value& v = r.fields.at(k);
        if (!v.is<std::int64_t>()) throw EvalError(r.loc, fmt::format("sort_digits: {} must be an integer", k));
        return v.get<std::int64_t>();
    };
    std::int64_t n = integer("n"), lo = integer("min_len"), hi = integer("max_len"), pad = integer("pad");
    if (n < 1 || lo < 1 || hi < lo) {
        throw EvalError(r.loc, fmt::format("sort_digits: needs n >= 1 and 1 <= min_len <= max_len, got n={}, min_len={}, max_len={}", n, lo, hi));
    }
    if (pad >= 0 && pad <= 9) throw EvalError(r.loc, fmt::format("sort_digits: pad {} is a digit; use 10 or more", pad));
    Generator gen(hash_name(static_cast<std::uint64_t>(integer("seed")), "sort_digits"));
    Tensor tokens = Tensor::full(Shape{n, hi}, static_cast<double>(pad), DType::i64);
    Tensor targets = Tensor::zeros(Shape{n, hi}, DType::i64);
    std::int64_t* tk = tokens.data<std::int64_t>();
    std::int64_t* tg = targets.data<std::int64_t>();
    std::vector<std::int64_t> digits;
    for (std::int64_t i = 0; i < n; ++i) {
        std::int64_t len = lo + static_cast<std::int64_t>(gen.next_u64() % static_cast<std::uint64_t>(hi - lo + 1));
        digits.resize(static_cast<std::size_t>(len));
        for (auto& d : digits) d = static_cast<std::int64_t>(gen.next_u64() % 10);
        for (std::int64_t j = 0; j < len; ++j) tk[i * hi + j] = digits[static_cast<std::size_t>(j)];
        std::sort(digits.begin(), digits.end());
        for (std::int64_t j = 0; j < len; ++j) tg[i * hi + j] = digits[static_cast<std::size_t>(j)];
    }
    Dataset d;
    d.description = fmt::format("sort_digits(n={}, min_len={}, max_len={}, seed={})", n, lo, hi, integer("seed"));
    d.fields = {"tokens", "targets"};
    d.columns = {tokens, targets};
    return d;
}

}  // namespace

Dataset load_dataset(const Record& r, const DataOptions& options) {
    if (r.kind != "dataset") throw EvalError(r.loc, fmt::format("expected a dataset, got {} {}", r.kind, r.name));
    if (r.name == "fashion_mnist") {
        const Value& split = r.fields.at("split");
        if (!split.is<std::string>()) throw EvalError(r.loc, "fashion_mnist: split must be a string");
        return fashion_mnist(r, options, split.get<std::string>());
    }
    if (r.name == "npz_data") return npz_data(r, options);
    if (r.name == "csv_data") return csv_data(r, options);
    if (r.name == "sort_digits") return sort_digits(r);
    throw EvalError(r.loc, fmt::format("no loader for dataset '{}'", r.name));
}

std::optional<Dataset> companion_eval_dataset(const Record& r, const DataOptions& options) {
    if (r.name == "fashion_mnist" && r.fields.at("split").is<std::string>() && r.fields.at("split").get<std::string>() == "train") {
        return fashion_mnist(r, options, "test");
    }
    return std::nullopt;
}

std::vector<Tensor> gather_rows(const Dataset& data, std::span<const std::int64_t> rows) {
    std::vector<Tensor> out;
    for (const Tensor& col_in : data.columns) {
        Tensor col = col_in.contiguous();
        Shape shape = col.shape();
        std::int64_t row_elems = shape.numel() / std::max<std::int64_t>(shape[0], 1);
        shape[0] = static_cast<std::int64_t>(rows.size());
        Tensor batch = Tensor::empty(shape, col.dtype());
        std::size_t row_bytes = static_cast<std::size_t>(row_elems) * dtype_size(col.dtype());
        const char* src = static_cast<const char*>(col.raw());
        char* dst = static_cast<char*>(batch.raw());
        for (std::size_t i = 0; i < rows.size(); ++i) {
            std::memcpy(dst + i * row_bytes, src + static_cast<std::size_t>(rows[i]) * row_bytes, row_bytes);
        }
        out.push_back(batch);
    }
    return out;
}

std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch) {
    Generator gen(hash_name(seed, fmt::format("data.epoch.{}", epoch)));
    return gen.permutation(n);
}

}  // namespace wengert::dsl
