// CSV: numeric tables, one row per line, an optional header row and an optional integer
// label column.
#include <charconv>
#include <string_view>

#include <fmt/format.h>

#include "bytes.hpp"
#include "wengert/io.hpp"

namespace wengert {
namespace io {
namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

std::vector<std::string_view> split(std::string_view line, char delimiter) {
    std::vector<std::string_view> fields;
    while (true) {
        std::size_t cut = line.find(delimiter);
        fields.push_back(trim(line.substr(0, cut)));
        if (cut == std::string_view::npos) return fields;
        line.remove_prefix(cut + 1);
    }
}

// Parses all of `text` as T; from_chars takes no leading '+', so it is skipped here.
template <class T> bool parse_number(std::string_view text, T& out, bool& out_of_range) {
    if (text.size() > 1 && text.front() == '+' && text[1] != '-') text.remove_prefix(1);
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    out_of_range = ec == std::errc::result_out_of_range;
    return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace
}  // namespace io

CsvTable load_csv(const std::string& path, const CsvOptions& options) {
    if (!is_floating(options.dtype)) {
        throw ShapeError("load_csv", fmt::format("features dtype must be f32 or f64, got {}", dtype_name(options.dtype)));
    }
    std::vector<std::uint8_t> bytes = io::read_file(path);
    std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // the UTF-8 byte order mark spreadsheets write

    CsvTable table;
    std::vector<double> features;
    std::vector<std::int64_t> labels;
    std::size_t n_columns = 0, label = 0, rows = 0;
    int first_line = 0;
    auto where = [&](int line_no, std::size_t column) {
        std::string name = table.header.empty() ? "" : fmt::format(" ('{}')", table.header[column]);
        return fmt::format("line {}, column {}{}", line_no, column + 1, name);
    };

    int line_no = 0;
    while (!text.empty()) {
        ++line_no;
        std::size_t eol = text.find('\n');
        std::string_view line = text.substr(0, eol);
        text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
        if (line.ends_with('\r')) line.remove_suffix(1);
        if (io::trim(line).empty()) continue;
        std::vector<std::string_view> fields = io::split(line, options.delimiter);

        if (first_line == 0) {
            first_line = line_no;
            n_columns = fields.size();
            if (options.label_column) {
                int k = *options.label_column;
                std::int64_t resolved = k < 0 ? k + static_cast<std::int64_t>(n_columns) : k;
                if (resolved < 0 || resolved >= static_cast<std::int64_t>(n_columns)) {
                    throw IOError(path, fmt::format("label column {} is out of range for {} columns", k, n_columns));
                }
                label = static_cast<std::size_t>(resolved);
            }
            if (options.header) {
                table.header.assign(fields.begin(), fields.end());
                continue;
            }
        }
        if (fields.size() != n_columns) {
            throw IOError(path, fmt::format("line {}: {} fields, expected {} as on line {}", line_no, fields.size(),
                                            n_columns, first_line));
        }
        for (std::size_t c = 0; c < n_columns; ++c) {
            std::string_view field = fields[c];
            if (field.empty()) throw IOError(path, fmt::format("{}: empty field", where(line_no, c)));
            bool out_of_range = false;
            if (options.label_column && c == label) {
                std::int64_t value = 0;
                if (!io::parse_number(field, value, out_of_range)) {
                    throw IOError(path, fmt::format("{}: label '{}' is not {}", where(line_no, c), field,
                                                    out_of_range ? "a 64-bit integer" : "an integer"));
                }
                labels.push_back(value);
                continue;
            }
            double value = 0;
            bool ok = false;
            if (options.dtype == DType::f32) {
                float single = 0;
                ok = io::parse_number(field, single, out_of_range);
                value = single;
            } else {
                ok = io::parse_number(field, value, out_of_range);
            }
            if (!ok) {
                throw IOError(path, fmt::format("{}: '{}' is {}", where(line_no, c), field,
                                                out_of_range ? fmt::format("out of range for {}", dtype_name(options.dtype))
                                                             : std::string("not a number")));
            }
            features.push_back(value);
        }
        ++rows;
    }
    if (first_line == 0) throw IOError(path, "empty file: no rows");

    auto n_rows = static_cast<std::int64_t>(rows);
    auto n_features = static_cast<std::int64_t>(n_columns - (options.label_column ? 1 : 0));
    table.features = Tensor::from_doubles(features, Shape{n_rows, n_features}, options.dtype);
    if (options.label_column) table.labels = Tensor::from(labels, Shape{n_rows});
    return table;
}

}  // namespace wengert
