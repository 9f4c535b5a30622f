// wengert language: a source file and positions in it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace wengert::dsl {

class SourceFile;

// A position in a source file: 1-based line and column, the column counting characters
// (UTF-8 code points), not bytes. `length` is how many characters the construct spans on
// that line (0 when unknown); diagnostics underline that many. A default Location has no
// file and is printed without a position.
struct Location {
    const SourceFile* file = nullptr;
    int line = 0;
    int column = 0;
    int length = 0;
};

// The text of one .wg file and the offsets where its lines start. Locations point at it, so
// it can be neither copied nor moved: keep it alive (and in place) as long as any AST or
// diagnostic made from it.
class SourceFile {
public:
    // `path` is the name diagnostics print, as given ("model.wg", "models/vae.wg").
    SourceFile(std::string path, std::string text);
    SourceFile(const SourceFile&) = delete;
    SourceFile& operator=(const SourceFile&) = delete;

    // Reads the file at `path`; throws wengert::IOError if it cannot be read, is not a regular
    // file (a device such as /dev/zero, a pipe) or is larger than kMaxSourceBytes.
    static SourceFile read(const std::string& path);
    // The text of the file at `path`, read as `read` does.
    static std::string read_text(const std::string& path);
    static constexpr std::size_t kMaxSourceBytes = std::size_t{16} << 20;

    const std::string& path() const { return path_; }
    const std::string& text() const { return text_; }
    int line_count() const { return static_cast<int>(line_starts_.size()); }

    // Line `line` (1-based) without its line break ("\n" or "\r\n"); empty outside
    // 1..line_count().
    std::string_view line(int line) const;

    // The location of the byte at `offset` (offset == text().size() is the end of the file).
    Location location(std::size_t offset, int length = 0) const;

private:
    std::string path_;
    std::string text_;
    std::vector<std::size_t> line_starts_;
};

// The number of characters (UTF-8 code points) in `text`.
int count_chars(std::string_view text);

}  // namespace wengert::dsl
