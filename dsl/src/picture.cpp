// PNG pictures through cairo (picture.hpp): cairo rasterises, draws the text with the system's
// fonts (fontconfig), and writes the PNG with libpng.
#include "picture.hpp"

#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <memory>

#include "wengert/error.hpp"

namespace wengert::dsl::picture {

namespace {

// cairo's image surfaces hold at most 32767 pixels a side; a picture this large is a mistake
// (a --scale too big, an array that is no image).
constexpr int kMaxSide = 16384;

// Note [Fonts at exit]
// cairo finds its fonts through fontconfig, which keeps what it read in caches it never frees:
// LeakSanitizer reports them as leaks when the process exits, and CI runs the CLI under it. A
// command draws its picture and exits, so after each picture, with no cairo object left,
// FontRelease puts cairo's static data and fontconfig back to their initial state (the next
// picture, if any, initialises them again). What a sanitizer then reports is wengert's own.
struct FontRelease {
    FontRelease() = default;
    ~FontRelease() {
        cairo_debug_reset_static_data();
        FcFini();
    }
    FontRelease(const FontRelease&) = delete;
    FontRelease& operator=(const FontRelease&) = delete;
};

struct Canvas {
    cairo_surface_t* surface = nullptr;
    cairo_t* cr = nullptr;
    Canvas(const std::string& path, std::int64_t width, std::int64_t height) {
        if (width < 1 || height < 1 || width > kMaxSide || height > kMaxSide) {
            throw IOError(path, fmt::format("the picture would be {} x {} pixels; each side must be 1 to {}", width, height, kMaxSide));
        }
        surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, static_cast<int>(width), static_cast<int>(height));
        cr = cairo_create(surface);
        if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
            throw IOError(path, fmt::format("cannot draw the picture: {}", cairo_status_to_string(cairo_status(cr))));
        }
    }
    ~Canvas() {
        cairo_destroy(cr);
        cairo_surface_destroy(surface);
    }
    Canvas(const Canvas&) = delete;
    Canvas& operator=(const Canvas&) = delete;

    void write(const std::string& path) {
        cairo_surface_flush(surface);
        cairo_status_t status = cairo_surface_write_to_png(surface, path.c_str());
        if (status != CAIRO_STATUS_SUCCESS) throw IOError(path, fmt::format("cannot write the PNG: {}", cairo_status_to_string(status)));
    }
    void fill(double r, double g, double b) {
        cairo_set_source_rgb(cr, r, g, b);
        cairo_paint(cr);
    }
    void text(double x, double y, const std::string& s, double size = 11, bool centred = false) {
        cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
        cairo_set_font_size(cr, size);
        cairo_text_extents_t e;
        cairo_text_extents(cr, s.c_str(), &e);
        cairo_move_to(cr, centred ? x - e.x_advance / 2 : x, y);
        cairo_show_text(cr, s.c_str());
    }
    double text_width(const std::string& s, double size = 11) {
        cairo_set_font_size(cr, size);
        cairo_text_extents_t e;
        cairo_text_extents(cr, s.c_str(), &e);
        return e.x_advance;
    }
};

// `text` cut to `width` pixels at 11 points, "..." marking the cut.
std::string fitted(Canvas& canvas, std::string text, double width) {
    if (canvas.text_width(text) <= width) return text;
    while (!text.empty() && canvas.text_width(text + "...") > width) text.pop_back();
    return text + "...";
}

double clamp01(double v) { return std::isnan(v) ? 0.0 : std::clamp(v, 0.0, 1.0); }

// Packs an image into a cairo RGB24 surface, one pixel per image pixel.
cairo_surface_t* image_surface(const Image& image) {
    cairo_surface_t* s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, static_cast<int>(image.width), static_cast<int>(image.height));
    cairo_surface_flush(s);
    unsigned char* data = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    for (std::int64_t y = 0; y < image.height; ++y) {
        auto* row = reinterpret_cast<std::uint32_t*>(data + y * stride);
        for (std::int64_t x = 0; x < image.width; ++x) {
            const double* px = image.values.data() + (y * image.width + x) * image.channels;
            auto byte = [](double v) { return static_cast<std::uint32_t>(std::lround(clamp01(v) * 255.0)); };
            std::uint32_t r = byte(px[0]), g = image.channels == 3 ? byte(px[1]) : r, b = image.channels == 3 ? byte(px[2]) : r;
            row[x] = (r << 16) | (g << 8) | b;
        }
    }
    cairo_surface_mark_dirty(s);
    return s;
}

// Draws `surface` scaled by `scale` with its top left at (x, y), each pixel a sharp square.
void draw_scaled(cairo_t* cr, cairo_surface_t* surface, double x, double y, double scale) {
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_scale(cr, scale, scale);
    cairo_set_source_surface(cr, surface, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_paint(cr);
    cairo_restore(cr);
}

// matplotlib's viridis at 0, 0.1, ..., 1
constexpr std::array<std::array<int, 3>, 11> kViridis = {{{0x44, 0x01, 0x54}, {0x48, 0x24, 0x75}, {0x41, 0x44, 0x87},
                                                          {0x35, 0x5f, 0x8d}, {0x2a, 0x78, 0x8e}, {0x21, 0x91, 0x8c},
                                                          {0x22, 0xa8, 0x84}, {0x44, 0xbf, 0x70}, {0x7a, 0xd1, 0x51},
                                                          {0xbd, 0xdf, 0x26}, {0xfd, 0xe7, 0x25}}};

// t in [0, 1] -> an RGB colour of the scale, each channel in [0, 1]
std::array<double, 3> viridis(double t) {
    double pos = clamp01(t) * 10.0;
    auto i = std::min<std::size_t>(9, static_cast<std::size_t>(pos));
    double f = pos - static_cast<double>(i);
    std::array<double, 3> c{};
    for (int k = 0; k < 3; ++k) c[k] = ((1 - f) * kViridis[i][k] + f * kViridis[i + 1][k]) / 255.0;
    return c;
}

std::string tick(double v) { return fmt::format("{:.4g}", std::abs(v) < 1e-12 ? 0.0 : v); }

// Round values in [lo, hi] a step of 1, 2 or 5 times a power of ten apart, about five of them.
std::vector<double> ticks(double lo, double hi) {
    const double raw = (hi - lo) / 5.0, power = std::pow(10.0, std::floor(std::log10(raw)));
    const double step = power * (raw / power < 1.5 ? 1 : raw / power < 3.5 ? 2 : raw / power < 7.5 ? 5 : 10);
    std::vector<double> out;
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) out.push_back(v);
    return out;
}

}  // namespace

void write_image_grid(const std::string& path, const std::vector<Image>& images, std::int64_t columns, int scale) {
    if (images.empty()) throw IOError(path, "no images to draw");
    const Image& first = images.front();
    const std::int64_t cols = std::min<std::int64_t>(columns, static_cast<std::int64_t>(images.size()));
    const std::int64_t rows = (static_cast<std::int64_t>(images.size()) + cols - 1) / cols;
    const std::int64_t cell_w = first.width * scale + kGap, cell_h = first.height * scale + kGap;
    FontRelease release;   // after the canvas is gone (Note [Fonts at exit])
    Canvas canvas(path, cols * cell_w + kGap, rows * cell_h + kGap);
    canvas.fill(0.5, 0.5, 0.5);
    for (std::size_t i = 0; i < images.size(); ++i) {
        if (images[i].width == 0) continue;   // a blank cell
        cairo_surface_t* s = image_surface(images[i]);
        const auto col = static_cast<std::int64_t>(i) % cols, row = static_cast<std::int64_t>(i) / cols;
        draw_scaled(canvas.cr, s, static_cast<double>(kGap + col * cell_w), static_cast<double>(kGap + row * cell_h), scale);
        cairo_surface_destroy(s);
    }
    canvas.write(path);
}

void write_heatmaps(const std::string& path, const std::vector<Heatmap>& maps, int cell) {
    if (maps.empty()) throw IOError(path, "no maps to draw");
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const auto& m : maps) {
        for (double v : m.values) {
            if (std::isfinite(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
        }
    }
    if (!std::isfinite(lo)) lo = hi = 0;
    const double span = hi > lo ? hi - lo : 1.0;
    const std::int64_t per_row = std::min<std::int64_t>(kMapsPerRow, static_cast<std::int64_t>(maps.size()));
    const std::int64_t n_rows = (static_cast<std::int64_t>(maps.size()) + per_row - 1) / per_row;
    const std::int64_t map_w = maps[0].cols * cell + kMargin, map_h = kTitle + maps[0].rows * cell + kMargin;
    const std::int64_t width = per_row * map_w + kMargin + kBar, height = n_rows * map_h + kMargin;
    FontRelease release;   // after the canvas is gone (Note [Fonts at exit])
    Canvas canvas(path, width, height);
    canvas.fill(1, 1, 1);
    cairo_t* cr = canvas.cr;
    for (std::size_t i = 0; i < maps.size(); ++i) {
        const Heatmap& m = maps[i];
        const double x0 = static_cast<double>(kMargin + (static_cast<std::int64_t>(i) % per_row) * map_w);
        const double y0 = static_cast<double>(kMargin + (static_cast<std::int64_t>(i) / per_row) * map_h);
        cairo_set_source_rgb(cr, 0, 0, 0);
        canvas.text(x0, y0 + kTitle - 6, fitted(canvas, m.title, static_cast<double>(map_w - kMargin)));
        for (std::int64_t r = 0; r < m.rows; ++r) {
            for (std::int64_t c = 0; c < m.cols; ++c) {
                double v = m.values[static_cast<std::size_t>(r * m.cols + c)];
                auto rgb = std::isfinite(v) ? viridis((v - lo) / span) : std::array<double, 3>{1, 0, 1};
                cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
                cairo_rectangle(cr, x0 + static_cast<double>(c * cell), y0 + kTitle + static_cast<double>(r * cell), cell, cell);
                cairo_fill(cr);
            }
        }
    }
    // the colour scale: a bar from hi (top) to lo (bottom), both ends labelled
    const double bar_x = static_cast<double>(per_row * map_w + kMargin), bar_top = kMargin + kTitle;
    const double bar_h = std::max(32.0, static_cast<double>(height) - bar_top - 2 * kMargin);
    for (int k = 0; k < static_cast<int>(bar_h); ++k) {
        auto rgb = viridis(1.0 - k / bar_h);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, bar_x, bar_top + k, 14, 1);
        cairo_fill(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    canvas.text(bar_x + 18, bar_top + 9, tick(hi));
    canvas.text(bar_x + 18, bar_top + bar_h, tick(lo));
    canvas.write(path);
}

void write_panels(const std::string& path, const std::vector<Panel>& panels) {
    if (panels.empty()) throw IOError(path, "nothing to plot");
    const auto n = static_cast<std::int64_t>(panels.size());
    const std::int64_t per_row = std::min<std::int64_t>(kPanelsPerRow, n);
    FontRelease release;   // after the canvas is gone (Note [Fonts at exit])
    Canvas canvas(path, per_row * kPanelWidth, ((n + per_row - 1) / per_row) * kPanelHeight);
    canvas.fill(1, 1, 1);
    cairo_t* cr = canvas.cr;
    constexpr double left = 64, right = 16, top = 28, bottom = 40;
    for (std::int64_t i = 0; i < n; ++i) {
        const Panel& p = panels[static_cast<std::size_t>(i)];
        const double ox = static_cast<double>((i % per_row) * kPanelWidth), oy = static_cast<double>((i / per_row) * kPanelHeight);
        double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
        for (const auto& s : p.series) {
            for (std::size_t k = 0; k < s.x.size(); ++k) {
                if (!std::isfinite(s.y[k])) continue;
                x_lo = std::min(x_lo, s.x[k]);
                x_hi = std::max(x_hi, s.x[k]);
                y_lo = std::min(y_lo, s.y[k]);
                y_hi = std::max(y_hi, s.y[k]);
            }
        }
        if (!std::isfinite(x_lo)) x_lo = x_hi = y_lo = y_hi = 0;
        if (x_hi <= x_lo) x_hi = x_lo + 1;
        if (y_hi <= y_lo) {
            y_lo -= 0.5;
            y_hi += 0.5;
        }
        const double pad = 0.05 * (y_hi - y_lo), x_pad = 0.02 * (x_hi - x_lo);
        y_lo -= pad;
        y_hi += pad;
        x_lo -= x_pad;
        x_hi += x_pad;
        const double px0 = ox + left, px1 = ox + kPanelWidth - right, py0 = oy + top, py1 = oy + kPanelHeight - bottom;
        auto sx = [&](double x) { return px0 + (x - x_lo) / (x_hi - x_lo) * (px1 - px0); };
        auto sy = [&](double y) { return py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0); };
        // title, frame, ticks
        cairo_set_source_rgb(cr, 0, 0, 0);
        canvas.text((px0 + px1) / 2, oy + 18, p.title, 13, true);
        cairo_set_line_width(cr, 1);
        cairo_rectangle(cr, px0 + 0.5, py0 + 0.5, px1 - px0, py1 - py0);
        cairo_stroke(cr);
        for (double yv : ticks(y_lo, y_hi)) {
            cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
            cairo_move_to(cr, px0 + 1, std::round(sy(yv)) + 0.5);
            cairo_line_to(cr, px1, std::round(sy(yv)) + 0.5);
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            std::string ys = tick(yv);
            canvas.text(px0 - 6 - canvas.text_width(ys, 10), sy(yv) + 4, ys, 10);
        }
        for (double xv : ticks(x_lo, x_hi)) canvas.text(sx(xv), py1 + 14, tick(xv), 10, true);
        canvas.text((px0 + px1) / 2, py1 + 30, p.x_label, 11, true);
        // curves, clipped to the frame
        cairo_save(cr);
        cairo_rectangle(cr, px0, py0, px1 - px0, py1 - py0);
        cairo_clip(cr);
        for (const auto& s : p.series) {
            cairo_set_source_rgb(cr, s.red, s.green, s.blue);
            cairo_set_line_width(cr, s.dots ? 1.5 : 1.0);
            bool pen_down = false;
            for (std::size_t k = 0; k < s.x.size(); ++k) {
                if (!std::isfinite(s.y[k])) {
                    pen_down = false;
                    continue;
                }
                if (pen_down) cairo_line_to(cr, sx(s.x[k]), sy(s.y[k]));
                else cairo_move_to(cr, sx(s.x[k]), sy(s.y[k]));
                pen_down = true;
            }
            cairo_stroke(cr);
            if (s.dots) {
                for (std::size_t k = 0; k < s.x.size(); ++k) {
                    if (!std::isfinite(s.y[k])) continue;
                    cairo_arc(cr, sx(s.x[k]), sy(s.y[k]), 2.5, 0, 2 * M_PI);
                    cairo_fill(cr);
                }
            }
        }
        cairo_restore(cr);
        // legend on a white ground, in the right-hand corner the curves end farther from: the top
        // for a falling loss, the bottom for a rising accuracy
        double legend_w = 0, ends = 0, counted = 0;
        for (const auto& s : p.series) {
            legend_w = std::max(legend_w, canvas.text_width(s.label, 10));
            for (std::size_t k = s.y.size(); k-- > 0;) {
                if (std::isfinite(s.y[k])) {
                    ends += (s.y[k] - y_lo) / (y_hi - y_lo);
                    counted += 1;
                    break;
                }
            }
        }
        const double legend_h = 14.0 * static_cast<double>(p.series.size()) + 4;
        const double legend_top = counted > 0 && ends / counted > 0.5 ? py1 - legend_h - 3 : py0 + 3;
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_rectangle(cr, px1 - legend_w - 32, legend_top, legend_w + 30, legend_h);
        cairo_fill(cr);
        double ly = legend_top + 11;
        for (const auto& s : p.series) {
            double w = canvas.text_width(s.label, 10);
            cairo_set_source_rgb(cr, s.red, s.green, s.blue);
            cairo_rectangle(cr, px1 - w - 26, ly - 7, 12, 4);
            cairo_fill(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            canvas.text(px1 - w - 8, ly, s.label, 10);
            ly += 14;
        }
    }
    canvas.write(path);
}

}  // namespace wengert::dsl::picture
