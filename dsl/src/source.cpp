#include "wengert/dsl/source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "wengert/error.hpp"

namespace wengert::dsl {

namespace {

bool is_continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

}  // namespace

int count_chars(std::string_view text) {
    return static_cast<int>(std::count_if(text.begin(), text.end(), [](char c) { return !is_continuation_byte(c); }));
}

SourceFile::SourceFile(std::string path, std::string text) : path_(std::move(path)), text_(std::move(text)) {
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < text_.size(); ++i) {
        if (text_[i] == '\n') line_starts_.push_back(i + 1);
    }
}

SourceFile SourceFile::read(const std::string& path) { return SourceFile(path, read_text(path)); }

std::string SourceFile::read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IOError(path, "cannot open file");
    // bounded: a device (/dev/zero), a pipe or a huge file is refused, not read for ever
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw IOError(path, "is not a regular file, so not a model file");
    std::uintmax_t size = std::filesystem::file_size(path, ec);
    if (ec) throw IOError(path, "cannot read file");
    if (size > kMaxSourceBytes) throw IOError(path, fmt::format("is larger than {} MiB, which no model file is", kMaxSourceBytes >> 20));
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) throw IOError(path, "cannot read file");
    text.resize(static_cast<std::size_t>(in.gcount()));
    return text;
}

std::string_view SourceFile::line(int line) const {
    if (line < 1 || line > line_count()) return {};
    std::size_t begin = line_starts_[static_cast<std::size_t>(line - 1)];
    std::size_t end = line < line_count() ? line_starts_[static_cast<std::size_t>(line)] - 1 : text_.size();
    std::string_view text(text_.data() + begin, end - begin);
    if (line < line_count() && !text.empty() && text.back() == '\r') text.remove_suffix(1);  // "\r\n"
    return text;
}

Location SourceFile::location(std::size_t offset, int length) const {
    offset = std::min(offset, text_.size());
    // The last line start at or before `offset`.
    auto next_line = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    int line = static_cast<int>(next_line - line_starts_.begin());
    std::size_t begin = line_starts_[static_cast<std::size_t>(line - 1)];
    int column = 1 + count_chars(std::string_view(text_.data() + begin, offset - begin));
    return Location{this, line, column, length};
}

}  // namespace wengert::dsl
