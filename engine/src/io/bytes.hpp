// Internal: the byte-level layer under every file format. Whole-file reads, bounds-checked
// little/big-endian fields, zlib inflate, atomic writes. Every failure is an IOError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "wengert/error.hpp"

namespace wengert::io {

using Bytes = std::span<const std::uint8_t>;

// Who is reading: IOError(path, prefix + detail). The prefix names a part of the file, e.g.
// "member 'w.npy': " inside an archive.
struct Where {
    std::string path;
    std::string prefix;
    [[noreturn]] void fail(const std::string& detail) const;
};

std::vector<std::uint8_t> read_file(const std::string& path);

// bytes[at, at + n), or "truncated file: expected {n} bytes of {what} at offset {at}, found {m}".
Bytes take(Bytes bytes, std::uint64_t at, std::uint64_t n, const char* what, const Where& where);

inline std::uint16_t le16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
inline std::uint32_t le32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
           static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}
inline std::uint64_t le64(const std::uint8_t* p) { return le32(p) | static_cast<std::uint64_t>(le32(p + 4)) << 32; }
inline std::uint32_t be32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) << 24 | static_cast<std::uint32_t>(p[1]) << 16 |
           static_cast<std::uint32_t>(p[2]) << 8 | static_cast<std::uint32_t>(p[3]);
}

void put_le16(std::string& out, std::uint16_t v);
void put_le32(std::string& out, std::uint32_t v);

// out = a * b for a, b >= 0; false (out untouched) when the product exceeds INT64_MAX.
bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t& out);
// bytes = the size of a row-major array of `shape` with items of `item_size` bytes; false
// (bytes untouched) when it, or the product of the extents other than 0, exceeds INT64_MAX:
// an empty array still has strides, the products of its other extents (Tensor::empty refuses
// [0, 2^32, 2^32] as NumPy refuses (0, 2^62, 2^62); found by fuzzing the IDX reader).
bool array_bytes(const Shape& shape, std::int64_t item_size, std::int64_t& bytes);

std::uint32_t crc32(Bytes bytes, std::uint32_t crc = 0);

// Raw DEFLATE (zip method 8) that must decompress to exactly `size` bytes.
std::vector<std::uint8_t> inflate_raw(Bytes compressed, std::uint64_t size, const Where& where);

// A gzip file (RFC 1952: one or more members), checked against each member's CRC-32.
// `max_size`, when given, is asked for the most bytes the output may hold, given what it
// holds so far (a format's header declares its size): decompression stops with an error as
// soon as the output passes it, so that a small file that expands to gigabytes (a gzip bomb)
// is refused after its header, not read whole.
std::vector<std::uint8_t> gunzip(Bytes compressed, const Where& where,
                                 const std::function<std::uint64_t(Bytes)>& max_size = {});
inline bool is_gzip(Bytes bytes) { return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b; }

// Note [Atomic writes]
// A writer never opens the real name. It creates "<path>.tmp-<pid>-<n>" in the same directory
// (so the rename cannot cross file systems), writes, fsyncs, closes, renames it over `path`
// and fsyncs the directory so the rename itself is durable. A crash at any point leaves either
// the old file or the new one under the real name; an exception removes the temporary.
class AtomicFile {
public:
    explicit AtomicFile(std::string path);
    ~AtomicFile();
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    void write(const void* bytes, std::size_t n);
    void write(const std::string& bytes) { write(bytes.data(), bytes.size()); }
    void commit();

private:
    [[noreturn]] void fail(const char* action);
    std::string path_;
    std::string temp_;
    int fd_ = -1;
};

}  // namespace wengert::io
