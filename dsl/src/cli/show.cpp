// `wengert show`: an array as a picture. 2-D: a heatmap; 3-D (h, Lq, Lk): one heatmap per map
// (attention per head); 4-D (B, h, Lq, Lk): batch item --index of it; --images: (N, H, W) or
// (N, H, W, C) as a grid of images.
#include <cmath>
#include <filesystem>

#include "../picture.hpp"
#include "cli.hpp"

namespace wengert::dsl {

namespace {

std::vector<double> values_of(const Tensor& t) {
    Tensor f = t.to(DType::f64).contiguous();
    const double* p = f.data<double>();
    return std::vector<double>(p, p + f.numel());
}

int image_grid(const Cli& cli, const Tensor& array) {
    const Shape& s = array.shape();
    const bool channels = array.ndim() == 4;
    if ((array.ndim() != 3 && array.ndim() != 4) || (channels && s[3] != 1 && s[3] != 3)) {
        throw UsageError(fmt::format("show --images: expects (N, H, W) or (N, H, W, C) with C = 1 or 3, got {}", s.str()));
    }
    const std::int64_t n = s[0], h = s[1], w = s[2], c = channels ? s[3] : 1;
    std::vector<double> v = values_of(array);
    std::vector<picture::Image> images;
    for (std::int64_t i = 0; i < n; ++i) {
        picture::Image image{h, w, c, {}};
        auto first = v.begin() + i * h * w * c;
        image.values.assign(first, first + h * w * c);
        images.push_back(std::move(image));
    }
    const int scale = static_cast<int>(cli.integer("scale").value_or(2));
    if (scale < 1) throw UsageError(fmt::format("--scale must be positive, got {}", scale));
    const auto columns = static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
    picture::write_image_grid(cli.get("out"), images, columns, scale);
    return 0;
}

}  // namespace

int cmd_show(const Cli& cli) {
    if (!cli.has("out")) throw UsageError("show: --out map.png is required");
    Tensor array = load_npy(cli.file);
    if (array.numel() == 0) throw IOError(cli.file, fmt::format("the array {} is empty: nothing to show", array.shape().str()));
    if (cli.flags.count("images")) return image_grid(cli, array);
    const Shape& s = array.shape();
    const std::string stem = std::filesystem::path(cli.file).stem().string();
    std::vector<picture::Heatmap> maps;
    if (array.ndim() == 2) {
        maps.push_back({fmt::format("{} {}", stem, s.str()), s[0], s[1], values_of(array)});
    } else if (array.ndim() == 3 || array.ndim() == 4) {
        std::int64_t index = cli.integer("index").value_or(0);
        Tensor stack = array;
        std::string item;
        if (array.ndim() == 4) {
            if (index < 0 || index >= s[0]) throw UsageError(fmt::format("--index must be in [0, {}), got {}", s[0], index));
            stack = array.slice(0, index, index + 1).reshape(Shape{s[1], s[2], s[3]});
            item = fmt::format("item {}, ", index);
        } else if (cli.has("index")) {
            throw UsageError("--index picks the batch item of a 4-D (B, h, Lq, Lk) array; this one is 3-D");
        }
        std::vector<double> v = values_of(stack);
        const Shape& m = stack.shape();
        for (std::int64_t i = 0; i < m[0]; ++i) {
            auto first = v.begin() + i * m[1] * m[2];
            maps.push_back({fmt::format("{}head {}", item, i), m[1], m[2], std::vector<double>(first, first + m[1] * m[2])});
        }
    } else {
        throw UsageError(fmt::format("show: draws a 2-D array, a 3-D stack of maps or a 4-D (B, h, Lq, Lk) one (or images "
                                     "with --images), got {}", s.str()));
    }
    const std::int64_t cols = maps[0].cols;
    const int cell = static_cast<int>(cli.integer("scale").value_or(std::clamp<std::int64_t>(192 / cols, 1, 24)));
    if (cell < 1) throw UsageError(fmt::format("--scale must be positive, got {}", cell));
    picture::write_heatmaps(cli.get("out"), maps, cell);
    return 0;
}

}  // namespace wengert::dsl
