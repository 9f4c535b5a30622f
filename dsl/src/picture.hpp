// Pictures the CLI writes as PNG files, drawn with cairo (which encodes the PNG with libpng):
// grids of images (sample, show --images), heatmaps with a colour scale (show), and panels of
// curves with axes (plot). Layouts are fixed by the constants below, so a picture's pixel size
// follows from what it shows (the tests check it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace wengert::dsl::picture {

// An image of height x width pixels with 1 (grey) or 3 (RGB) channels, row-major and
// channels last, each value in [0, 1] (clamped).
struct Image {
    std::int64_t height = 0, width = 0, channels = 1;
    std::vector<double> values;
};

// Images in a grid of `columns` per row, each pixel drawn scale x scale, kGap pixels between
// and around them on a mid-grey ground: (columns * (width * scale + kGap) + kGap) wide.
// Every image has the first one's size; an empty one (width 0) leaves its cell blank.
constexpr int kGap = 2;
void write_image_grid(const std::string& path, const std::vector<Image>& images, std::int64_t columns, int scale);

// One heatmap: rows x cols values, row-major, and a title above it.
struct Heatmap {
    std::string title;
    std::int64_t rows = 0, cols = 0;
    std::vector<double> values;
};

// Heatmaps side by side, kMapsPerRow to a row, every value drawn as a cell x cell square in
// one colour scale (viridis, from the smallest value of all the maps to the largest), with
// the scale drawn as a bar on the right, labelled with both ends. Each map takes
// (cols * cell + kMargin) x (kTitle + rows * cell + kMargin); the bar adds kBar on the right
// (width = maps in a row * map width + kMargin + kBar, height = rows of maps * map height + kMargin).
constexpr int kMapsPerRow = 4, kMargin = 16, kTitle = 20, kBar = 72;
void write_heatmaps(const std::string& path, const std::vector<Heatmap>& maps, int cell);

// A curve: points (x[i], y[i]); drawn as a line, with dots when `dots`.
struct Series {
    std::string label;
    std::vector<double> x, y;
    bool dots = false;
    double red = 0, green = 0, blue = 0;
};

// A panel: axes around the range of its curves, the title above, a legend in the right-hand
// corner the curves end farther from, and the x axis labelled `x_label`.
struct Panel {
    std::string title, x_label;
    std::vector<Series> series;
};

// Panels in a grid of kPanelsPerRow columns, each kPanelWidth x kPanelHeight pixels.
constexpr int kPanelsPerRow = 2, kPanelWidth = 420, kPanelHeight = 280;
void write_panels(const std::string& path, const std::vector<Panel>& panels);

}  // namespace wengert::dsl::picture
