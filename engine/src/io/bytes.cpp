// The byte-level layer under every file format: see bytes.hpp.
#include "bytes.hpp"

#include "wengert/io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <limits>

#include <fmt/format.h>
#include <zlib.h>

namespace wengert::io {

void Where::fail(const std::string& detail) const { throw IOError(path, prefix + detail); }

// ---------------------------------------------------------------- reading

std::vector<std::uint8_t> read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IOError(path, fmt::format("cannot open: {}", std::strerror(errno)));
    std::vector<std::uint8_t> bytes;
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) bytes.reserve(static_cast<std::size_t>(st.st_size));
    std::uint8_t chunk[1 << 16];
    while (true) {
        ssize_t n = ::read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            throw IOError(path, fmt::format("cannot read: {}", std::strerror(err)));
        }
        if (n == 0) break;
        bytes.insert(bytes.end(), chunk, chunk + n);
    }
    ::close(fd);
    return bytes;
}

Bytes take(Bytes bytes, std::uint64_t at, std::uint64_t n, const char* what, const Where& where) {
    std::uint64_t size = bytes.size();
    std::uint64_t found = at >= size ? 0 : std::min(n, size - at);
    if (found < n) {
        where.fail(fmt::format("truncated file: expected {} bytes of {} at offset {}, found {}", n, what, at, found));
    }
    return bytes.subspan(static_cast<std::size_t>(at), static_cast<std::size_t>(n));
}

void put_le16(std::string& out, std::uint16_t v) {
    out.push_back(static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(v >> 8));
}

void put_le32(std::string& out, std::uint32_t v) {
    put_le16(out, static_cast<std::uint16_t>(v & 0xffff));
    put_le16(out, static_cast<std::uint16_t>(v >> 16));
}

bool checked_mul(std::int64_t a, std::int64_t b, std::int64_t& out) {
    if (a != 0 && b > std::numeric_limits<std::int64_t>::max() / a) return false;
    out = a * b;
    return true;
}

bool array_bytes(const Shape& shape, std::int64_t item_size, std::int64_t& bytes) {
    std::int64_t nonzero = item_size, total = item_size;
    for (auto d : shape) {
        if (d != 0 && !checked_mul(nonzero, d, nonzero)) return false;
        total *= d;   // at most `nonzero`
    }
    bytes = total;
    return true;
}

// ---------------------------------------------------------------- zlib

std::uint32_t crc32(Bytes bytes, std::uint32_t crc) {
    return static_cast<std::uint32_t>(::crc32_z(crc, bytes.data(), bytes.size()));
}

namespace {

// zlib counts in uInt; longer buffers are fed in pieces.
constexpr std::uint64_t kZlibChunk = 1u << 30;

struct Inflater {
    z_stream zs{};
    Inflater(int window_bits, const Where& where) {
        if (inflateInit2(&zs, window_bits) != Z_OK) where.fail("zlib could not start inflating");
    }
    ~Inflater() { inflateEnd(&zs); }
    Inflater(const Inflater&) = delete;
    Inflater& operator=(const Inflater&) = delete;
};

void feed(z_stream& zs, Bytes in, std::uint64_t& in_pos) {
    if (zs.avail_in == 0 && in_pos < in.size()) {
        auto n = std::min<std::uint64_t>(in.size() - in_pos, kZlibChunk);
        zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
        zs.avail_in = static_cast<uInt>(n);
        in_pos += n;
    }
}

std::string zlib_message(const z_stream& zs, int rc) {
    return zs.msg ? zs.msg : fmt::format("zlib error {}", rc);
}

}  // namespace

std::vector<std::uint8_t> inflate_raw(Bytes compressed, std::uint64_t size, const Where& where) {
    // DEFLATE expands at most 1032:1, so a bigger claim is a damaged directory: refuse it
    // before allocating what it asks for.
    if (size > compressed.size() * std::uint64_t{1032} + 1024) {
        where.fail(fmt::format("corrupt archive: {} compressed bytes cannot inflate to the {} bytes the directory claims",
                               compressed.size(), size));
    }
    // One spare byte shows a stream that inflates to more than `size`.
    std::vector<std::uint8_t> out(static_cast<std::size_t>(size) + 1);
    Inflater inf(-MAX_WBITS, where);
    z_stream& zs = inf.zs;
    std::uint64_t in_pos = 0, out_pos = 0;
    while (true) {
        feed(zs, compressed, in_pos);
        if (zs.avail_out == 0 && out_pos < out.size()) {
            auto n = std::min<std::uint64_t>(out.size() - out_pos, kZlibChunk);
            zs.next_out = out.data() + out_pos;
            zs.avail_out = static_cast<uInt>(n);
            out_pos += n;
        }
        int rc = inflate(&zs, Z_NO_FLUSH);
        std::uint64_t produced = out_pos - zs.avail_out;
        if (produced > size) where.fail(fmt::format("corrupt archive: data inflates to more than the {} bytes the directory claims", size));
        if (rc == Z_STREAM_END) {
            if (produced != size) where.fail(fmt::format("corrupt archive: data inflates to {} bytes, the directory claims {}", produced, size));
            break;
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && in_pos == compressed.size()) {
            where.fail(fmt::format("truncated deflate stream: {} compressed bytes end after {} of {} bytes, before the end marker",
                                   compressed.size(), produced, size));
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) where.fail("corrupt deflate stream: " + zlib_message(zs, rc));
    }
    out.resize(static_cast<std::size_t>(size));
    return out;
}

std::vector<std::uint8_t> gunzip(Bytes compressed, const Where& where, const std::function<std::uint64_t(Bytes)>& max_size) {
    std::vector<std::uint8_t> out;
    std::uint64_t limit = std::numeric_limits<std::uint64_t>::max();
    // A gzip member ends with its uncompressed size mod 2^32 (RFC 1952, ISIZE): room for the
    // whole of a one-member file up front, so that the output is not copied as it grows
    // (not with a limit: ISIZE is the file's word, and the header's is checked first).
    if (compressed.size() >= 18 && !max_size) {
        const std::uint8_t* isize = compressed.data() + compressed.size() - 4;
        out.reserve(static_cast<std::size_t>(isize[0]) | static_cast<std::size_t>(isize[1]) << 8 |
                    static_cast<std::size_t>(isize[2]) << 16 | static_cast<std::size_t>(isize[3]) << 24);
    }
    Inflater inf(16 + MAX_WBITS, where);  // 16: expect the gzip wrapper and check its CRC-32
    z_stream& zs = inf.zs;
    std::uint64_t in_pos = 0;
    std::uint8_t chunk[1 << 16];
    while (true) {
        feed(zs, compressed, in_pos);
        zs.next_out = chunk;
        zs.avail_out = sizeof chunk;
        int rc = inflate(&zs, Z_NO_FLUSH);
        out.insert(out.end(), chunk, chunk + (sizeof chunk - zs.avail_out));
        if (max_size) {
            std::uint64_t allowed = max_size(Bytes(out.data(), out.size()));
            if (allowed < limit) {
                limit = allowed;
                // room for what the header declares, up to a size any real file reaches (a
                // corrupt header's claim is refused when the data runs out, not allocated)
                out.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(limit, std::uint64_t{256} << 20)));
            }
            if (out.size() > limit) {
                where.fail(fmt::format("decompresses to more than the {} bytes its header declares (stopped after {})", limit,
                                       out.size()));
            }
        }
        std::uint64_t unread = compressed.size() - in_pos + zs.avail_in;
        if (rc == Z_STREAM_END) {
            if (unread == 0) break;
            if (!is_gzip(compressed.subspan(compressed.size() - unread))) {
                where.fail(fmt::format("{} bytes of trailing garbage after the gzip stream", unread));
            }
            inflateReset(&zs);  // RFC 1952: a gzip file may hold several members back to back
            continue;
        }
        if (rc == Z_BUF_ERROR && unread == 0) {
            where.fail(fmt::format("truncated gzip stream: the input ends after {} bytes, before the end of the compressed data",
                                   compressed.size()));
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) where.fail("corrupt gzip stream: " + zlib_message(zs, rc));
    }
    return out;
}

// ---------------------------------------------------------------- atomic writes

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
    static std::atomic<unsigned> counter{0};
    while (fd_ < 0) {
        temp_ = fmt::format("{}.tmp-{}-{}", path_, ::getpid(), counter++);
        fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd_ < 0 && errno != EEXIST) {
            temp_.clear();
            fail("cannot create a temporary file beside it");
        }
    }
}

AtomicFile::~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::fail(const char* action) {
    throw IOError(path_, fmt::format("{}: {}", action, std::strerror(errno)));
}

void AtomicFile::write(const void* bytes, std::size_t n) {
    auto p = static_cast<const char*>(bytes);
    while (n > 0) {
        ssize_t k = ::write(fd_, p, std::min<std::size_t>(n, SSIZE_MAX));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) fail("cannot write");
        p += k;
        n -= static_cast<std::size_t>(k);
    }
}

void AtomicFile::commit() {
    if (::fsync(fd_) != 0) fail("cannot fsync");
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot close");
    if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file over it");
    temp_.clear();
    std::string dir = std::filesystem::path(path_).parent_path().string();
    int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) fail("cannot open its directory to fsync the rename");
    int rc = ::fsync(dir_fd);
    ::close(dir_fd);
    if (rc != 0) fail("cannot fsync its directory");
}

}  // namespace wengert::io

namespace wengert {

void write_file_atomic(const std::string& path, const std::string& bytes) {
    io::AtomicFile file(path);
    file.write(bytes);
    file.commit();
}

}  // namespace wengert
