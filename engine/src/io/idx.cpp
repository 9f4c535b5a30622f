// IDX: the MNIST format (LeCun et al.), plain or gzipped.
//
// Header: two zero bytes, a type byte, the number of dimensions, then each dimension as a
// big-endian uint32; then the data, big-endian, row-major.
#include <bit>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "../dispatch.hpp"
#include "bytes.hpp"
#include "wengert/io.hpp"

namespace wengert {
namespace io {
namespace {

struct IdxType {
    std::uint8_t code;
    const char* name;
    std::size_t size;
    DType dtype;
};

constexpr IdxType kTypes[] = {
    {0x08, "unsigned byte", 1, DType::u8}, {0x09, "signed byte", 1, DType::i64}, {0x0B, "int16", 2, DType::i64},
    {0x0C, "int32", 4, DType::i64},        {0x0D, "float32", 4, DType::f32},     {0x0E, "float64", 8, DType::f64},
};

// Reads one big-endian value of `type` at p.
template <class T> T read_be(const std::uint8_t* p, const IdxType& type) {
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < type.size; ++i) bits = bits << 8 | p[i];  // big-endian
    switch (type.code) {
        case 0x09: return static_cast<T>(static_cast<std::int8_t>(bits));
        case 0x0B: return static_cast<T>(static_cast<std::int16_t>(bits));
        case 0x0C: return static_cast<T>(static_cast<std::int32_t>(bits));
        case 0x0D: return static_cast<T>(std::bit_cast<float>(static_cast<std::uint32_t>(bits)));
        case 0x0E: return static_cast<T>(std::bit_cast<double>(bits));
        default: return static_cast<T>(bits);
    }
}

Tensor parse_idx(Bytes bytes, bool gzipped, const Where& where) {
    const char* after = gzipped ? " (after gunzip)" : "";
    if (bytes.size() < 4) {
        where.fail(fmt::format("truncated file: expected a 4-byte IDX header, found {} bytes{}", bytes.size(), after));
    }
    if (bytes[0] != 0 || bytes[1] != 0) {
        where.fail(fmt::format("bad magic: expected 00 00 <type> <dimensions>, found {:02x}", fmt::join(bytes.first(4), " ")));
    }
    const IdxType* type = nullptr;
    for (const auto& t : kTypes) {
        if (t.code == bytes[2]) type = &t;
    }
    if (!type) {
        where.fail(fmt::format("unknown IDX type byte 0x{:02X}: expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E", bytes[2]));
    }
    int ndim = bytes[3];
    if (ndim == 0 || ndim > Shape::kMaxDims) {
        where.fail(fmt::format("the header declares {} dimensions; wengert reads 1 to {}", ndim, Shape::kMaxDims));
    }
    std::size_t data_at = 4 + 4 * static_cast<std::size_t>(ndim);
    if (bytes.size() < data_at) {
        where.fail(fmt::format("truncated file: expected a {}-byte IDX header, found {} bytes{}", data_at, bytes.size(), after));
    }
    Shape shape;
    for (int i = 0; i < ndim; ++i) shape.push_back(be32(&bytes[4 + 4 * static_cast<std::size_t>(i)]));
    std::int64_t data_bytes = 0;
    if (!array_bytes(shape, static_cast<std::int64_t>(type->size), data_bytes)) {
        where.fail(fmt::format("corrupt header: shape {} is too large", shape.str()));
    }
    std::uint64_t found = bytes.size() - data_at;
    if (found < static_cast<std::uint64_t>(data_bytes)) {
        where.fail(fmt::format("truncated file: expected {} bytes of {} data for shape {} after the {}-byte header, found {}{}",
                               data_bytes, type->name, shape.str(), data_at, found, after));
    }
    if (found > static_cast<std::uint64_t>(data_bytes)) {
        where.fail(fmt::format("shape {} of {} holds {} bytes of data, but the file has {}{}", shape.str(), type->name,
                               data_bytes, found, after));
    }
    Tensor t = Tensor::empty(shape, type->dtype);
    const std::uint8_t* in = bytes.data() + data_at;
    const std::int64_t n = t.numel();
    if (type->code == 0x08) {
        // unsigned bytes (MNIST's images and labels) are stored as they are
        std::memcpy(t.raw(), in, static_cast<std::size_t>(n));
        return t;
    }
    detail::dispatch_all(type->dtype, [&](auto tag) {
        using T = decltype(tag);
        T* out = t.data<T>();
        for (std::int64_t i = 0; i < n; ++i) out[i] = read_be<T>(in + i * type->size, *type);
    });
    return t;
}

}  // namespace
}  // namespace io

namespace io {
namespace {

// The size an IDX file's header declares (header and data), once `prefix` holds the header;
// the largest size until then, or when the header is corrupt (parse_idx says how).
std::uint64_t declared_idx_size(Bytes prefix) {
    constexpr std::uint64_t unknown = std::numeric_limits<std::uint64_t>::max();
    if (prefix.size() < 4) return unknown;
    const IdxType* type = nullptr;
    for (const auto& t : kTypes) {
        if (t.code == prefix[2]) type = &t;
    }
    int ndim = prefix[3];
    if (prefix[0] != 0 || prefix[1] != 0 || !type || ndim == 0 || ndim > Shape::kMaxDims) return unknown;
    std::size_t data_at = 4 + 4 * static_cast<std::size_t>(ndim);
    if (prefix.size() < data_at) return unknown;
    std::int64_t data_bytes = static_cast<std::int64_t>(type->size);
    for (int i = 0; i < ndim; ++i) {
        if (!checked_mul(data_bytes, be32(&prefix[4 + 4 * static_cast<std::size_t>(i)]), data_bytes)) return unknown;
    }
    return static_cast<std::uint64_t>(data_bytes) + data_at;
}

}  // namespace
}  // namespace io

Tensor load_idx(const std::string& path) {
    std::vector<std::uint8_t> bytes = io::read_file(path);
    io::Where where{path, ""};
    if (io::is_gzip(bytes)) return io::parse_idx(io::gunzip(bytes, where, io::declared_idx_size), true, where);
    return io::parse_idx(bytes, false, where);
}

}  // namespace wengert
