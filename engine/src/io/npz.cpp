// .npz: a zip archive of .npy members. Read: stored and deflated members, zip64 records;
// written: stored members, no zip64.
//
// Note [Zip layout]
// An archive is local file headers each followed by its member's bytes, then the central
// directory (one entry per member: name, method, CRC-32, sizes, local header offset), then
// the end-of-central-directory record (EOCD) holding the directory's offset and entry count.
// A reader starts from the EOCD at the end. When a count or offset does not fit its 16 or
// 32 bits, the field holds all ones and the real value is in a zip64 record: a zip64 EOCD
// (found through a locator just before the EOCD) and a zip64 "extra field" (id 0x0001) in
// the directory entry, holding only the saturated fields, in the order uncompressed size,
// compressed size, local header offset. np.savez always writes a zip64 extra field into the
// local headers; the directory entries and the sizes in them are what this reader trusts.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "bytes.hpp"
#include "npy.hpp"

namespace wengert {
namespace io {
namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kZip64EndSig = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSig = 0x07064b50;
constexpr std::size_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22, kZip64EndSize = 56, kZip64LocatorSize = 20;
constexpr std::uint16_t kStored = 0, kDeflated = 8;
constexpr std::uint16_t kVersion = 20;   // 2.0: deflate, the oldest version that reads what we write
constexpr std::uint16_t kDosDate = 0x21; // 1980-01-01, 00:00: archives do not depend on the clock
constexpr std::uint16_t kFlagUtf8 = 1 << 11;

struct Directory {
    std::uint64_t entries = 0;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
};

struct Member {
    std::string name;
    std::uint16_t flags = 0;
    std::uint16_t method = 0;
    std::uint32_t crc = 0;
    std::uint64_t compressed = 0;
    std::uint64_t uncompressed = 0;
    std::uint64_t local_offset = 0;
};

Directory find_directory(Bytes bytes, const Where& where) {
    // The EOCD is the last 22 bytes unless the archive has a comment (at most 65535 bytes).
    if (bytes.size() < kEndSize) {
        where.fail(fmt::format("truncated file: expected at least a {}-byte end-of-central-directory record, found {} bytes",
                               kEndSize, bytes.size()));
    }
    std::size_t lowest = bytes.size() - kEndSize > 0xffff ? bytes.size() - kEndSize - 0xffff : 0;
    std::size_t at = bytes.size() - kEndSize;
    while (!(le32(&bytes[at]) == kEndSig && at + kEndSize + le16(&bytes[at + 20]) <= bytes.size())) {
        if (at == lowest) {
            bool npy = bytes.size() >= 6 && std::memcmp(bytes.data(), "\x93NUMPY", 6) == 0;
            where.fail(npy ? "not a zip archive but a .npy file: load it with load_npy"
                           : "not a zip archive: no end-of-central-directory record");
        }
        --at;
    }
    const std::uint8_t* end = &bytes[at];
    if (le16(end + 4) != 0 || le16(end + 6) != 0) where.fail("multi-disk zip archives are not supported");
    Directory dir{le16(end + 10), le32(end + 12), le32(end + 16)};
    if (at >= kZip64LocatorSize && le32(&bytes[at - kZip64LocatorSize]) == kZip64LocatorSig) {
        std::uint64_t end64_at = le64(&bytes[at - kZip64LocatorSize + 8]);
        Bytes end64 = take(bytes, end64_at, kZip64EndSize, "zip64 end-of-central-directory record", where);
        if (le32(end64.data()) != kZip64EndSig) {
            where.fail(fmt::format("corrupt archive: no zip64 end-of-central-directory record at offset {}", end64_at));
        }
        dir = {le64(&end64[32]), le64(&end64[40]), le64(&end64[48])};
    } else if (dir.entries == 0xffff || dir.size == 0xffffffff || dir.offset == 0xffffffff) {
        where.fail("corrupt archive: the end-of-central-directory record points to zip64 records that are missing");
    }
    return dir;
}

// Fills the fields a zip64 extra field (id 0x0001) overrides: those saturated in the entry.
void read_zip64_extra(Bytes extra, Member& m, const Where& where) {
    std::size_t at = 0;
    while (at + 4 <= extra.size()) {
        std::uint16_t id = le16(&extra[at]), size = le16(&extra[at + 2]);
        if (at + 4 + size > extra.size()) where.fail("corrupt archive: an extra field runs past its entry");
        Bytes block = extra.subspan(at + 4, size);
        at += 4 + size;
        if (id != 0x0001) continue;
        std::size_t used = 0;
        for (std::uint64_t* field : {&m.uncompressed, &m.compressed, &m.local_offset}) {
            if (*field != 0xffffffff) continue;
            if (used + 8 > block.size()) where.fail("corrupt archive: the zip64 extra field is too short");
            *field = le64(&block[used]);
            used += 8;
        }
    }
}

std::vector<Member> read_directory(Bytes bytes, const Directory& dir, const Where& where) {
    std::vector<Member> members;
    std::uint64_t at = dir.offset;
    for (std::uint64_t i = 0; i < dir.entries; ++i) {
        Bytes entry = take(bytes, at, kCentralSize, "central directory entry", where);
        if (le32(entry.data()) != kCentralSig) {
            where.fail(fmt::format("corrupt archive: no central directory entry at offset {}", at));
        }
        Member m;
        m.flags = le16(&entry[8]);
        m.method = le16(&entry[10]);
        m.crc = le32(&entry[16]);
        m.compressed = le32(&entry[20]);
        m.uncompressed = le32(&entry[24]);
        std::uint16_t name_len = le16(&entry[28]), extra_len = le16(&entry[30]), comment_len = le16(&entry[32]);
        m.local_offset = le32(&entry[42]);
        Bytes name = take(bytes, at + kCentralSize, name_len, "member name", where);
        m.name.assign(name.begin(), name.end());
        read_zip64_extra(take(bytes, at + kCentralSize + name_len, extra_len, "extra field", where), m, where);
        at += kCentralSize + name_len + extra_len + comment_len;
        members.push_back(std::move(m));
    }
    return members;
}

Tensor read_member(Bytes bytes, const Member& m, const Where& where) {
    if (m.flags & 1) where.fail("member is encrypted");
    if (m.method != kStored && m.method != kDeflated) {
        where.fail(fmt::format("compression method {} is not supported: wengert reads stored (0) and deflated (8)", m.method));
    }
    Bytes local = take(bytes, m.local_offset, kLocalSize, "local file header", where);
    if (le32(local.data()) != kLocalSig) {
        where.fail(fmt::format("corrupt archive: no local file header at offset {}", m.local_offset));
    }
    std::uint64_t data_at = m.local_offset + kLocalSize + le16(&local[26]) + le16(&local[28]);
    Bytes data = take(bytes, data_at, m.compressed, "member data", where);
    std::vector<std::uint8_t> inflated;
    if (m.method == kDeflated) {
        inflated = inflate_raw(data, m.uncompressed, where);
        data = inflated;
    } else if (m.compressed != m.uncompressed) {
        where.fail(fmt::format("corrupt archive: stored member has compressed size {} but uncompressed size {}",
                               m.compressed, m.uncompressed));
    }
    std::uint32_t crc = crc32(data);
    if (crc != m.crc) {
        where.fail(fmt::format("CRC-32 mismatch: the directory says {:08x}, the data has {:08x}", m.crc, crc));
    }
    return parse_npy(data, where);
}

// A member as save_npz writes it.
struct Written {
    std::string name;
    NpyImage image;
    std::uint32_t crc = 0;
    std::uint64_t size = 0;
    std::uint64_t offset = 0;
};

// The fields a local file header and a directory entry share: version needed through name length.
void put_shared_fields(std::string& out, const Written& w) {
    bool utf8 = std::any_of(w.name.begin(), w.name.end(), [](char c) { return (c & 0x80) != 0; });
    put_le16(out, kVersion);
    put_le16(out, utf8 ? kFlagUtf8 : 0);
    put_le16(out, kStored);
    put_le16(out, 0);  // time
    put_le16(out, kDosDate);
    put_le32(out, w.crc);
    put_le32(out, static_cast<std::uint32_t>(w.size));  // compressed
    put_le32(out, static_cast<std::uint32_t>(w.size));  // uncompressed
    put_le16(out, static_cast<std::uint16_t>(w.name.size()));
}

}  // namespace
}  // namespace io

NamedTensors load_npz(const std::string& path) {
    std::vector<std::uint8_t> bytes = io::read_file(path);
    io::Where archive{path, ""};
    NamedTensors tensors;
    for (const io::Member& m : io::read_directory(bytes, io::find_directory(bytes, archive), archive)) {
        io::Where where{path, fmt::format("member '{}': ", m.name)};
        std::string name = m.name.ends_with(".npy") ? m.name.substr(0, m.name.size() - 4) : m.name;
        tensors.emplace_back(std::move(name), io::read_member(bytes, m, where));
    }
    return tensors;
}

void save_npz(const std::string& path, const NamedTensors& tensors, ByteKind bytes) {
    std::vector<io::Written> members;
    std::uint64_t offset = 0;
    for (const auto& [key, tensor] : tensors) {
        io::Written w{key + ".npy", io::npy_image(tensor, bytes)};
        for (const io::Written& other : members) {
            if (other.name == w.name) throw IOError(path, fmt::format("duplicate member name '{}'", key));
        }
        if (w.name.size() > 0xffff) throw IOError(path, fmt::format("member name '{}...' is too long", key.substr(0, 32)));
        io::Bytes data = w.image.data_bytes();
        auto header = reinterpret_cast<const std::uint8_t*>(w.image.header.data());
        w.crc = io::crc32(data, io::crc32({header, w.image.header.size()}));
        w.size = w.image.header.size() + data.size();
        w.offset = offset;
        offset += io::kLocalSize + w.name.size() + w.size;
        members.push_back(std::move(w));
    }

    std::string directory;
    for (const io::Written& w : members) {
        io::put_le32(directory, io::kCentralSig);
        io::put_le16(directory, io::kVersion);  // made by: MS-DOS attributes, zip 2.0
        io::put_shared_fields(directory, w);
        io::put_le16(directory, 0);  // extra field length
        io::put_le16(directory, 0);  // comment length
        io::put_le16(directory, 0);  // disk number
        io::put_le16(directory, 0);  // internal attributes
        io::put_le32(directory, 0);  // external attributes
        io::put_le32(directory, static_cast<std::uint32_t>(w.offset));
        directory += w.name;
    }
    if (offset + directory.size() >= 0xffffffff || members.size() >= 0xffff) {
        throw IOError(path, fmt::format("an archive of {} bytes in {} members needs zip64 records, which save_npz does "
                                        "not write: save the largest arrays with save_npy",
                                        offset + directory.size(), members.size()));
    }
    std::string end;
    io::put_le32(end, io::kEndSig);
    io::put_le16(end, 0);  // this disk
    io::put_le16(end, 0);  // disk with the directory
    io::put_le16(end, static_cast<std::uint16_t>(members.size()));
    io::put_le16(end, static_cast<std::uint16_t>(members.size()));
    io::put_le32(end, static_cast<std::uint32_t>(directory.size()));
    io::put_le32(end, static_cast<std::uint32_t>(offset));
    io::put_le16(end, 0);  // comment length

    io::AtomicFile file(path);
    for (const io::Written& w : members) {
        std::string local;
        io::put_le32(local, io::kLocalSig);
        io::put_shared_fields(local, w);
        io::put_le16(local, 0);  // extra field length
        local += w.name;
        local += w.image.header;
        file.write(local);
        io::Bytes data = w.image.data_bytes();
        file.write(data.data(), data.size());
    }
    file.write(directory);
    file.write(end);
    file.commit();
}

}  // namespace wengert
