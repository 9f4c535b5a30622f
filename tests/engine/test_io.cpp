#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>

#include <fmt/format.h>

#include "wengert/io.hpp"

using namespace wengert;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return std::string(WG_FIXTURES_DIR) + "/" + name; }

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A fresh directory under the system's temporary directory, removed with everything in it.
struct TempDir {
    fs::path dir;
    TempDir() {
        std::random_device rd;
        dir = fs::temp_directory_path() / ("wengert-io-" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(dir);
    }
    ~TempDir() { fs::remove_all(dir); }
    std::string operator/(const std::string& name) const { return (dir / name).string(); }
    std::vector<std::string> files() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

// The CRC-32 of zip and gzip (polynomial 0xEDB88320), written out here so the tests do not
// check the reader against the same zlib it uses.
std::uint32_t crc32(const std::string& bytes) {
    std::uint32_t crc = 0xffffffff;
    for (unsigned char b : bytes) {
        crc ^= b;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320 & (0u - (crc & 1)));
    }
    return ~crc;
}

std::string le32(std::uint32_t v) {
    return {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16), static_cast<char>(v >> 24)};
}

std::string be32(std::uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

// A gzip member holding `data` in one stored (uncompressed) DEFLATE block.
std::string gzip_stored(const std::string& data) {
    std::string out("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
    auto n = static_cast<std::uint16_t>(data.size());
    out += '\x01';  // final block, stored
    out += {static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(~n), static_cast<char>(~n >> 8)};
    return out + data + le32(crc32(data)) + le32(static_cast<std::uint32_t>(data.size()));
}

// An IDX file: magic, big-endian dims, then `data` as given.
std::string idx_file(std::uint8_t type, const std::vector<std::uint32_t>& dims, const std::string& data) {
    std::string out{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
    for (auto d : dims) out += be32(d);
    return out + data;
}

// A .npy file with a hand-written header dict (format 1.0 unless `major` says otherwise).
std::string npy_file(const std::string& dict, const std::string& data, int major = 1) {
    std::string header = dict + "\n";
    std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
    if (major == 1) out += le32(static_cast<std::uint32_t>(header.size())).substr(0, 2);
    else out += le32(static_cast<std::uint32_t>(header.size()));
    return out + header + data;
}

std::string dict_with_descr(const std::string& descr) {
    return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2,), }";
}

std::string f32_bytes(std::initializer_list<float> values) {
    std::string out;
    for (float v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
    return out;
}

// The first Python on the machine that imports NumPy, or "" when there is none.
std::string python_with_numpy() {
    for (const char* python : {"/usr/bin/python3", "python3"}) {
        std::string probe = std::string(python) + " -c 'import numpy' >/dev/null 2>&1";
        if (std::system(probe.c_str()) == 0) return python;
    }
    return "";
}

void check_f32_2x3(const Tensor& t) {
    CHECK(t.dtype() == DType::f32);
    CHECK(t.shape() == Shape{2, 3});
    CHECK(t.to_doubles() == std::vector<double>{-1, -0.5, 0, 0.5, 1, 1.5});
}

void check_arrays(const NamedTensors& members) {
    REQUIRE(members.size() == 3);
    CHECK(members[0].first == "weights");
    check_f32_2x3(members[0].second);
    CHECK(members[1].first == "counts");
    CHECK(members[1].second.dtype() == DType::i64);
    CHECK(members[1].second.to_doubles() == std::vector<double>{-3, 0, 7, 1099511627776.0});
    CHECK(members[2].first == "mask");
    CHECK(members[2].second.dtype() == DType::u8);
    CHECK(members[2].second.shape() == Shape{2, 2});
    CHECK(members[2].second.to_doubles() == std::vector<double>{1, 0, 0, 1});
}

const std::vector<std::string> kNpyFixtures = {"f32_2x3.npy",   "f32_2x3_v2.npy", "f32_2x3_v3.npy",
                                               "f64_scalar.npy", "i64_vector.npy", "bool_2x2.npy",
                                               "u8_vector.npy",  "fortran_f64_2x3x4.npy"};
const std::vector<std::string> kNpzFixtures = {"arrays.npz", "arrays_compressed.npz", "arrays_streamed.npz",
                                               "arrays_zip64.npz"};

}  // namespace

// ---------------------------------------------------------------- .npy

TEST_CASE("npy files NumPy wrote load with their dtype, shape and values", "[io][npy]") {
    check_f32_2x3(load_npy(fixture("f32_2x3.npy")));
    check_f32_2x3(load_npy(fixture("f32_2x3_v2.npy")));
    check_f32_2x3(load_npy(fixture("f32_2x3_v3.npy")));

    Tensor scalar = load_npy(fixture("f64_scalar.npy"));
    CHECK(scalar.dtype() == DType::f64);
    CHECK(scalar.shape() == Shape{});
    CHECK(scalar.item() == 3.25);

    Tensor counts = load_npy(fixture("i64_vector.npy"));
    CHECK(counts.dtype() == DType::i64);
    CHECK(counts.shape() == Shape{4});
    CHECK(counts.data<std::int64_t>()[3] == std::int64_t{1} << 40);
    CHECK(counts.to_doubles() == std::vector<double>{-3, 0, 7, 1099511627776.0});

    Tensor mask = load_npy(fixture("bool_2x2.npy"));
    CHECK(mask.dtype() == DType::u8);
    CHECK(mask.shape() == Shape{2, 2});
    CHECK(mask.to_doubles() == std::vector<double>{1, 0, 0, 1});

    Tensor bytes = load_npy(fixture("u8_vector.npy"));
    CHECK(bytes.dtype() == DType::u8);
    CHECK(bytes.to_doubles() == std::vector<double>{0, 1, 127, 255});
}

TEST_CASE("a Fortran-order npy file loads row-major", "[io][npy]") {
    Tensor t = load_npy(fixture("fortran_f64_2x3x4.npy"));
    CHECK(t.dtype() == DType::f64);
    CHECK(t.shape() == Shape{2, 3, 4});
    CHECK(t.is_contiguous());
    std::vector<double> iota(24);
    for (int i = 0; i < 24; ++i) iota[static_cast<std::size_t>(i)] = i;
    CHECK(t.to_doubles() == iota);
    CHECK(t.at({1, 2, 3}) == 23);
    CHECK(t.at({0, 1, 2}) == 6);
}

TEST_CASE("npy headers in Python 2's spelling and with double quotes load", "[io][npy]") {
    TempDir tmp;
    std::string path = tmp / "old.npy";
    write_bytes(path, npy_file("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2L, 1L)}", f32_bytes({1, 2})));
    Tensor t = load_npy(path);
    CHECK(t.shape() == Shape{2, 1});
    CHECK(t.to_doubles() == std::vector<double>{1, 2});
}

TEST_CASE("save_npy writes the same bytes as NumPy and reads back", "[io][npy]") {
    TempDir tmp;
    for (const char* name : {"f32_2x3.npy", "f64_scalar.npy", "i64_vector.npy", "u8_vector.npy"}) {
        INFO(name);
        Tensor t = load_npy(fixture(name));
        save_npy(tmp / name, t);
        CHECK(read_bytes(tmp / name) == read_bytes(fixture(name)));
        Tensor back = load_npy(tmp / name);
        CHECK(back.dtype() == t.dtype());
        CHECK(back.shape() == t.shape());
        CHECK(back.to_doubles() == t.to_doubles());
    }
    save_npy(tmp / "bool_2x2.npy", load_npy(fixture("bool_2x2.npy")), ByteKind::boolean);
    CHECK(read_bytes(tmp / "bool_2x2.npy") == read_bytes(fixture("bool_2x2.npy")));
}

TEST_CASE("save_npy writes views row-major and bools as 0 or 1", "[io][npy]") {
    TempDir tmp;
    Tensor fortran = load_npy(fixture("fortran_f64_2x3x4.npy"));
    Tensor view = fortran.permute({2, 0, 1}).slice(0, 1, 4, 2);  // (2, 2, 3), not contiguous
    save_npy(tmp / "view.npy", view);
    Tensor back = load_npy(tmp / "view.npy");
    CHECK(back.shape() == Shape{2, 2, 3});
    CHECK(back.to_doubles() == view.to_doubles());

    save_npy(tmp / "flags.npy", Tensor::from(std::vector<std::uint8_t>{0, 2, 1, 255}, {4}), ByteKind::boolean);
    CHECK(read_bytes(tmp / "flags.npy").find("'descr': '|b1'") != std::string::npos);
    CHECK(load_npy(tmp / "flags.npy").to_doubles() == std::vector<double>{0, 1, 1, 1});

    Tensor empty = Tensor::zeros({0, 3}, DType::f32);
    save_npy(tmp / "empty.npy", empty);
    CHECK(load_npy(tmp / "empty.npy").shape() == Shape{0, 3});
}

TEST_CASE("npy errors name the file and what is wrong", "[io][npy][errors]") {
    TempDir tmp;
    std::string path = tmp / "bad.npy";
    auto load_with = [&](const std::string& bytes) {
        write_bytes(path, bytes);
        return load_npy(path);
    };
    const std::string data = f32_bytes({1, 2});

    CHECK_THROWS_WITH(load_npy(tmp / "missing.npy"), tmp / "missing.npy" + ": cannot open: No such file or directory");
    CHECK_THROWS_AS(load_npy(tmp / "missing.npy"), IOError);

    std::string f32 = read_bytes(fixture("f32_2x3.npy"));
    CHECK_THROWS_WITH(load_with(f32.substr(0, 140)),
                      path + ": truncated file: expected 24 bytes of data after the 128-byte header, found 12");
    CHECK_THROWS_WITH(load_with(f32.substr(0, 50)),
                      path + ": truncated file: expected 118 bytes of header at offset 10, found 40");
    CHECK_THROWS_WITH(load_with(f32.substr(0, 5)),
                      path + ": truncated file: expected 8 bytes of npy magic and version at offset 0, found 5");
    CHECK_THROWS_WITH(load_with(f32 + "xxxx"),
                      path + ": shape (2, 3) of '<f4' holds 24 bytes of data, but the file has 28");
    CHECK_THROWS_WITH(load_with("\x93NUMPZ\x01\x00" + f32.substr(8)),
                      path + ": bad magic: expected 93 4e 55 4d 50 59 (\"\\x93NUMPY\"), found 93 4e 55 4d 50 5a");
    CHECK_THROWS_WITH(load_npy(fixture("arrays.npz")),
                      fixture("arrays.npz") +
                          ": bad magic: expected 93 4e 55 4d 50 59 (\"\\x93NUMPY\"), found 50 4b 03 04 14 00 "
                          "(a zip archive: load it with load_npz)");
    CHECK_THROWS_WITH(load_with(npy_file(dict_with_descr("<f4"), data, 4)),
                      path + ": unsupported format version 4.0: wengert reads 1.0, 2.0 and 3.0");

    CHECK_THROWS_WITH(load_with(npy_file(dict_with_descr(">f4"), data)),
                      path + ": big-endian dtype '>f4' is not supported: wengert reads little-endian data "
                             "(in NumPy: a.astype('<f4'))");
    for (const char* descr : {"<f2", "<c8", "|O", "<i4"}) {
        CHECK_THROWS_WITH(load_with(npy_file(dict_with_descr(descr), data)),
                          path + ": unsupported dtype '" + descr + "': wengert reads '<f4', '<f8', '<i8', '|u1' and '|b1'");
    }
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': [('x', '<f4'), ('y', '<f4')], 'fortran_order': False, 'shape': (1,), }", data)),
                      path + ": unsupported dtype [('x', '<f4'), ('y', '<f4')]: structured arrays are not supported");

    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,}", data)),
                      path + ": corrupt header: expected a value at character 53 of "
                             "\"{'descr': '<f4', 'fortran_order': False, 'shape': (2,}\"");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4' 'fortran_order': False}", data)),
                      path + ": corrupt header: expected ',' or '}' at character 16 of "
                             "\"{'descr': '<f4' 'fortran_order': False}\"");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False}", data)),
                      path + ": corrupt header: no 'shape' key");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", data)),
                      path + ": corrupt header: unexpected key 'x'");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", data)),
                      path + ": corrupt header: 'fortran_order' must be True or False, got 0");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1)}", data)),
                      path + ": corrupt header: 'shape' must be a tuple of non-negative integers, got (2, -1)");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 2)}", data)),
                      path + ": shape (1, 1, 1, 1, 1, 1, 1, 1, 2) has 9 dimensions; wengert supports at most 8");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}", data)),
                      path + ": corrupt header: shape (4294967296, 4294967296) is too large");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296)}", "")),
                      path + ": corrupt header: shape (0, 4294967296, 4294967296) is too large");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", data)),
                      path + ": corrupt header: integer out of range at character 69 of "
                             "\"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}\"");
    // A header that claims far more data than the file has fails before allocating it.
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,)}", data)),
                      path + ": truncated file: expected 8000000000000 bytes of data after the 78-byte header, found 8");
    CHECK_THROWS_WITH(load_with(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((((((((((((2,),),),),),),),),),),),),),),),),),),)}", data)),
                      Catch::StartsWith(path + ": corrupt header: values nested too deeply"));
}

// ---------------------------------------------------------------- .npz

TEST_CASE("npz archives from np.savez and np.savez_compressed load in archive order", "[io][npz]") {
    for (const auto& name : kNpzFixtures) {
        INFO(name);
        check_arrays(load_npz(fixture(name)));
    }
}

TEST_CASE("save_npz round-trips through load_npz", "[io][npz]") {
    TempDir tmp;
    NamedTensors written = load_npz(fixture("arrays.npz"));
    save_npz(tmp / "out.npz", written, ByteKind::boolean);
    check_arrays(load_npz(tmp / "out.npz"));

    Tensor view = load_npy(fixture("fortran_f64_2x3x4.npy")).transpose(0, 2);
    save_npz(tmp / "views.npz", {{"t", view}, {"scalar", Tensor::scalar(-2, DType::f64)}, {"none", Tensor::zeros({0}, DType::i64)}});
    NamedTensors back = load_npz(tmp / "views.npz");
    REQUIRE(back.size() == 3);
    CHECK(back[0].first == "t");
    CHECK(back[0].second.shape() == Shape{4, 3, 2});
    CHECK(back[0].second.to_doubles() == view.to_doubles());
    CHECK(back[1].second.item() == -2);
    CHECK(back[2].second.shape() == Shape{0});

    save_npz(tmp / "nothing.npz", {});
    CHECK(load_npz(tmp / "nothing.npz").empty());
    CHECK_THROWS_WITH(save_npz(tmp / "dup.npz", {{"a", view}, {"a", view}}),
                      tmp / "dup.npz" + ": duplicate member name 'a'");
}

TEST_CASE("npz errors name the archive, the member and what is wrong", "[io][npz][errors]") {
    TempDir tmp;
    std::string path = tmp / "bad.npz";
    std::string archive = read_bytes(fixture("arrays.npz"));

    // The first member, weights.npy, starts with its npy magic; its data follows a 128-byte header.
    std::size_t member = archive.find("\x93NUMPY");
    std::string corrupted = archive;
    corrupted[member + 128] ^= 0x40;
    write_bytes(path, corrupted);
    CHECK_THROWS_WITH(load_npz(path), path + ": member 'weights.npy': CRC-32 mismatch: the directory says " +
                                          fmt::format("{:08x}", crc32(archive.substr(member, 152))) + ", the data has " +
                                          fmt::format("{:08x}", crc32(corrupted.substr(member, 152))));

    write_bytes(path, archive.substr(0, archive.size() - 10));
    CHECK_THROWS_WITH(load_npz(path), path + ": not a zip archive: no end-of-central-directory record");
    write_bytes(path, archive.substr(0, 10));
    CHECK_THROWS_WITH(load_npz(path), path + ": truncated file: expected at least a 22-byte end-of-central-directory "
                                             "record, found 10 bytes");
    CHECK_THROWS_WITH(load_npz(fixture("f32_2x3.npy")),
                      fixture("f32_2x3.npy") + ": not a zip archive but a .npy file: load it with load_npy");
    CHECK_THROWS_WITH(load_npz(tmp / "missing.npz"), tmp / "missing.npz" + ": cannot open: No such file or directory");

    // The archive without the bytes of its last member's data: the directory points past them.
    std::string compressed = read_bytes(fixture("arrays_compressed.npz"));
    std::size_t directory = compressed.find("PK\x01\x02");
    write_bytes(path, compressed.substr(0, directory - 3) + compressed.substr(directory));
    CHECK_THROWS_AS(load_npz(path), IOError);
}

// ---------------------------------------------------------------- IDX

TEST_CASE("a gzipped IDX file is read no further than its header declares (a gzip bomb is refused early)", "[io][idx]") {
    TempDir tmp;
    // the header declares 10 bytes; the members after it expand to 3 MB
    std::string bomb = gzip_stored(idx_file(0x08, {10}, std::string(10, '\x01')));
    for (int i = 0; i < 50; ++i) bomb += gzip_stored(std::string(60000, '\0'));
    write_bytes(tmp / "bomb.gz", bomb);
    try {
        load_idx(tmp / "bomb.gz");
        FAIL("no error");
    } catch (const IOError& e) {
        std::string what = e.what();
        INFO(what);
        std::string prefix = (tmp / "bomb.gz") + ": decompresses to more than the 18 bytes its header declares (stopped after ";
        REQUIRE(what.rfind(prefix, 0) == 0);
        CHECK(std::stoll(what.substr(prefix.size())) <= 200000);
    }
}

TEST_CASE("IDX files load with the header's type and dimensions, gzipped or not", "[io][idx]") {
    TempDir tmp;
    std::string pixels;
    for (int i = 0; i < 12; ++i) pixels += static_cast<char>(i * 20);
    std::string images = idx_file(0x08, {2, 3, 2}, pixels);
    for (const auto& [name, bytes] : {std::pair{"images", images}, {"images.gz", gzip_stored(images)}}) {
        INFO(name);
        write_bytes(tmp / name, bytes);
        Tensor t = load_idx(tmp / name);
        CHECK(t.dtype() == DType::u8);
        CHECK(t.shape() == Shape{2, 3, 2});
        CHECK(t.at({1, 2, 1}) == 220);
        CHECK(t.at({0, 1, 0}) == 40);
    }

    // A gzip file may be several members back to back: gunzip reads them as one stream.
    std::string labels = idx_file(0x08, {5}, std::string("\x09\x00\x03\x07\x01", 5));
    write_bytes(tmp / "labels.gz", gzip_stored(labels.substr(0, 6)) + gzip_stored(labels.substr(6)));
    CHECK(load_idx(tmp / "labels.gz").to_doubles() == std::vector<double>{9, 0, 3, 7, 1});

    write_bytes(tmp / "i8", idx_file(0x09, {3}, "\xff\x80\x7f"));
    Tensor i8 = load_idx(tmp / "i8");
    CHECK(i8.dtype() == DType::i64);
    CHECK(i8.to_doubles() == std::vector<double>{-1, -128, 127});

    write_bytes(tmp / "i16", idx_file(0x0B, {2}, std::string("\xff\xfe\x01\x00", 4)));
    CHECK(load_idx(tmp / "i16").to_doubles() == std::vector<double>{-2, 256});

    write_bytes(tmp / "i32", idx_file(0x0C, {1, 2}, be32(0xfffffffd) + be32(70000)));
    Tensor i32 = load_idx(tmp / "i32");
    CHECK(i32.shape() == Shape{1, 2});
    CHECK(i32.to_doubles() == std::vector<double>{-3, 70000});

    write_bytes(tmp / "f32", idx_file(0x0D, {2}, be32(0x3fc00000) + be32(0xc0200000)));
    Tensor f32 = load_idx(tmp / "f32");
    CHECK(f32.dtype() == DType::f32);
    CHECK(f32.to_doubles() == std::vector<double>{1.5, -2.5});

    write_bytes(tmp / "f64", idx_file(0x0E, {1}, be32(0x400921fb) + be32(0x54442d18)));
    Tensor f64 = load_idx(tmp / "f64");
    CHECK(f64.dtype() == DType::f64);
    CHECK(f64.item() == 3.141592653589793);
}

TEST_CASE("IDX errors name the file and what is wrong", "[io][idx][errors]") {
    TempDir tmp;
    std::string path = tmp / "bad";
    auto load_with = [&](const std::string& bytes) {
        write_bytes(path, bytes);
        return load_idx(path);
    };
    std::string images = idx_file(0x08, {2, 3, 2}, std::string(12, '\x07'));
    CHECK_THROWS_WITH(load_with(images.substr(0, 21)),
                      path + ": truncated file: expected 12 bytes of unsigned byte data for shape [2, 3, 2] after the "
                             "16-byte header, found 5");
    CHECK_THROWS_WITH(load_with(gzip_stored(images.substr(0, 21))),
                      path + ": truncated file: expected 12 bytes of unsigned byte data for shape [2, 3, 2] after the "
                             "16-byte header, found 5 (after gunzip)");
    std::string gz = gzip_stored(images);
    CHECK_THROWS_WITH(load_with(gz.substr(0, gz.size() - 3)),
                      path + ": truncated gzip stream: the input ends after " + std::to_string(gz.size() - 3) +
                          " bytes, before the end of the compressed data");
    CHECK_THROWS_WITH(load_with(images.substr(0, 10)),
                      path + ": truncated file: expected a 16-byte IDX header, found 10 bytes");
    CHECK_THROWS_WITH(load_with(images + "x"),
                      path + ": shape [2, 3, 2] of unsigned byte holds 12 bytes of data, but the file has 13");
    CHECK_THROWS_WITH(load_with("\x01\x02\x08\x01"), path + ": bad magic: expected 00 00 <type> <dimensions>, found 01 02 08 01");
    CHECK_THROWS_WITH(load_with(idx_file(0x0A, {1}, "x")),
                      path + ": unknown IDX type byte 0x0A: expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E");
    CHECK_THROWS_WITH(load_with(idx_file(0x08, {}, "")), path + ": the header declares 0 dimensions; wengert reads 1 to 8");
    std::string corrupt_crc = gz;
    corrupt_crc[gz.size() - 8] ^= 1;
    CHECK_THROWS_WITH(load_with(corrupt_crc), path + ": corrupt gzip stream: incorrect data check");
    CHECK_THROWS_WITH(load_with(gz + "junk"), path + ": 4 bytes of trailing garbage after the gzip stream");
    CHECK_THROWS_WITH(load_idx(tmp / "missing"), tmp / "missing" + ": cannot open: No such file or directory");
    // found by fuzzing: no data, but strides beyond 2^63 (signed overflow in contiguous_strides)
    CHECK_THROWS_WITH(load_with(idx_file(0x08, {0, 0xfefcffe0, 0xff460700}, "")),
                      path + ": corrupt header: shape [0, 4277993440, 4282779392] is too large");
}

TEST_CASE("Fashion-MNIST's test split loads when the dataset package is installed", "[io][idx][data]") {
    const std::string dir = "/usr/share/datasets/fashion-mnist/";
    if (!fs::exists(dir + "t10k-images-idx3-ubyte.gz") || !fs::exists(dir + "t10k-labels-idx1-ubyte.gz")) {
        WARN("skipped: " << dir << " has no t10k files (Debian package dataset-fashion-mnist)");
        return;
    }
    Tensor images = load_idx(dir + "t10k-images-idx3-ubyte.gz");
    CHECK(images.dtype() == DType::u8);
    CHECK(images.shape() == Shape{10000, 28, 28});
    Tensor labels = load_idx(dir + "t10k-labels-idx1-ubyte.gz");
    CHECK(labels.dtype() == DType::u8);
    CHECK(labels.shape() == Shape{10000});
    CHECK(labels.slice(0, 0, 5).to_doubles() == std::vector<double>{9, 2, 1, 1, 6});  // ankle boot, pullover, ...
    std::vector<double> all = labels.to_doubles();
    CHECK(*std::max_element(all.begin(), all.end()) == 9);
}

// ---------------------------------------------------------------- CSV

TEST_CASE("CSV tables load with a header row and a label column", "[io][csv]") {
    TempDir tmp;
    std::string path = tmp / "iris.csv";
    write_bytes(path, "\xEF\xBB\xBFsepal, petal ,label\r\n5.1, 3.5 ,0\r\n4.9,3.0,1\r\n\r\n+6.2,-1e-3,2\r\n");
    CsvTable table = load_csv(path, {.header = true, .label_column = -1});
    CHECK(table.header == std::vector<std::string>{"sepal", "petal", "label"});
    CHECK(table.features.dtype() == DType::f32);
    CHECK(table.features.shape() == Shape{3, 2});
    CHECK(table.features.at({0, 0}) == 5.1f);
    CHECK(table.features.at({2, 1}) == -1e-3f);
    CHECK(table.labels.dtype() == DType::i64);
    CHECK(table.labels.to_doubles() == std::vector<double>{0, 1, 2});

    write_bytes(path, "7;1;0.25\n-3;2;0.5");
    CsvTable plain = load_csv(path, {.delimiter = ';', .label_column = 0, .dtype = DType::f64});
    CHECK(plain.header.empty());
    CHECK(plain.features.dtype() == DType::f64);
    CHECK(plain.features.to_doubles() == std::vector<double>{1, 0.25, 2, 0.5});
    CHECK(plain.labels.to_doubles() == std::vector<double>{7, -3});

    CsvTable unlabeled = load_csv(path, {.delimiter = ';'});
    CHECK(unlabeled.features.shape() == Shape{2, 3});
    CHECK_FALSE(unlabeled.labels.defined());

    write_bytes(path, "a,b\n");
    CHECK(load_csv(path, {.header = true}).features.shape() == Shape{0, 2});
}

TEST_CASE("CSV errors name the line and column of the bad field", "[io][csv][errors]") {
    TempDir tmp;
    std::string path = tmp / "bad.csv";
    auto load_with = [&](const std::string& text, CsvOptions options = {}) {
        write_bytes(path, text);
        return load_csv(path, options);
    };
    CHECK_THROWS_WITH(load_with("1,2\n3,abc\n"), path + ": line 2, column 2: 'abc' is not a number");
    CHECK_THROWS_WITH(load_with("a,b\n1,2\n\n3,2x\n", {.header = true}),
                      path + ": line 4, column 2 ('b'): '2x' is not a number");
    CHECK_THROWS_WITH(load_with("1,2\n3\n"), path + ": line 2: 1 fields, expected 2 as on line 1");
    CHECK_THROWS_WITH(load_with("1,,2\n"), path + ": line 1, column 2: empty field");
    CHECK_THROWS_WITH(load_with("1e39,1\n"), path + ": line 1, column 1: '1e39' is out of range for f32");
    CHECK_THROWS_WITH(load_with("1,0.5\n", {.label_column = 1}), path + ": line 1, column 2: label '0.5' is not an integer");
    CHECK_THROWS_WITH(load_with("1,99999999999999999999\n", {.label_column = 1}),
                      path + ": line 1, column 2: label '99999999999999999999' is not a 64-bit integer");
    CHECK_THROWS_WITH(load_with("1,2\n", {.label_column = 2}), path + ": label column 2 is out of range for 2 columns");
    CHECK_THROWS_WITH(load_with("1,2\n", {.label_column = -3}), path + ": label column -3 is out of range for 2 columns");
    CHECK_THROWS_WITH(load_with("\n  \n"), path + ": empty file: no rows");
    CHECK_THROWS_WITH(load_with("1\n", {.dtype = DType::i64}), "load_csv: features dtype must be f32 or f64, got i64");
    CHECK_THROWS_WITH(load_csv(tmp / "missing.csv"), tmp / "missing.csv" + ": cannot open: No such file or directory");
}

// ---------------------------------------------------------------- robustness

namespace {

struct Loader {
    const char* format;
    std::function<void(const std::string&)> load;
};

// Every fixture, and IDX files plain and gzipped, with the loader for each.
std::vector<std::pair<std::string, Loader>> valid_files(const TempDir& tmp) {
    Loader npy{"npy", [](const std::string& p) { load_npy(p); }};
    Loader npz{"npz", [](const std::string& p) { load_npz(p); }};
    Loader idx{"idx", [](const std::string& p) { load_idx(p); }};
    std::vector<std::pair<std::string, Loader>> files;
    for (const auto& name : kNpyFixtures) files.emplace_back(read_bytes(fixture(name)), npy);
    for (const auto& name : kNpzFixtures) files.emplace_back(read_bytes(fixture(name)), npz);
    std::string images = idx_file(0x08, {2, 2, 3}, std::string(12, '\x05'));
    files.emplace_back(images, idx);
    files.emplace_back(gzip_stored(images), idx);
    files.emplace_back(idx_file(0x0C, {3}, be32(1) + be32(2) + be32(3)), idx);
    std::string written = tmp / "written.npz";
    save_npz(written, load_npz(fixture("arrays.npz")));
    files.emplace_back(read_bytes(written), npz);
    return files;
}

}  // namespace

// Note [Truncation sweep]
// Every proper prefix of a valid file is a broken file: each must be an IOError, never a
// crash, a hang, another exception or a successful load. Run under the ASan build too.
TEST_CASE("every truncation of a valid file is an IOError", "[io][robustness]") {
    TempDir tmp;
    std::string path = tmp / "cut";
    for (const auto& [bytes, loader] : valid_files(tmp)) {
        for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
            INFO(loader.format << " file of " << bytes.size() << " bytes cut to " << cut);
            write_bytes(path, bytes.substr(0, cut));
            CHECK_THROWS_AS(loader.load(path), IOError);
        }
    }
}

TEST_CASE("a file with any one byte changed loads or is an IOError", "[io][robustness]") {
    TempDir tmp;
    std::string path = tmp / "flipped";
    for (const auto& [bytes, loader] : valid_files(tmp)) {
        for (std::size_t at = 0; at < bytes.size(); ++at) {
            for (unsigned char mask : {0x01, 0x80, 0xff}) {
                std::string flipped = bytes;
                flipped[at] = static_cast<char>(flipped[at] ^ mask);
                write_bytes(path, flipped);
                INFO(loader.format << " file of " << bytes.size() << " bytes, byte " << at << " ^ " << int(mask));
                try {
                    loader.load(path);
                } catch (const IOError&) {
                }
            }
        }
    }
}

// ---------------------------------------------------------------- atomic writes

TEST_CASE("writes replace the file whole and leave no temporary behind", "[io][atomic]") {
    TempDir tmp;
    std::string path = tmp / "weights.npy";
    write_bytes(path, "old contents");
    save_npy(path, Tensor::ones({3}, DType::f32));
    CHECK(load_npy(path).to_doubles() == std::vector<double>{1, 1, 1});
    save_npz(tmp / "all.npz", {{"w", Tensor::ones({2}, DType::f64)}});
    CHECK(tmp.files() == std::vector<std::string>{"all.npz", "weights.npy"});

    // A failed save leaves the old file as it was.
    Tensor w = Tensor::ones({2}, DType::f32);
    CHECK_THROWS_AS(save_npz(tmp / "all.npz", {{"w", w}, {"w", w}}), IOError);
    CHECK(load_npz(tmp / "all.npz")[0].second.dtype() == DType::f64);
    CHECK(tmp.files() == std::vector<std::string>{"all.npz", "weights.npy"});

    CHECK_THROWS_WITH(save_npy(tmp / "no/such/dir/x.npy", w),
                      tmp / "no/such/dir/x.npy" + ": cannot create a temporary file beside it: No such file or directory");
}

// ---------------------------------------------------------------- NumPy reads what wengert writes

TEST_CASE("NumPy loads the files wengert writes", "[io][numpy]") {
    std::string python = python_with_numpy();
    if (python.empty()) {
        WARN("skipped: no python3 with numpy on this machine to read wengert's files back");
        return;
    }
    TempDir tmp;
    for (const char* name : {"f32_2x3", "f64_scalar", "i64_vector", "u8_vector", "fortran_f64_2x3x4"}) {
        save_npy(tmp / (std::string(name) + ".npy"), load_npy(fixture(std::string(name) + ".npy")));
    }
    save_npy(tmp / "bool_2x2.npy", load_npy(fixture("bool_2x2.npy")), ByteKind::boolean);
    save_npz(tmp / "arrays.npz", load_npz(fixture("arrays.npz")), ByteKind::boolean);
    write_bytes(tmp / "check.py", R"(import sys, zipfile
import numpy as np
out, fixtures = sys.argv[1], sys.argv[2]
for name in ['f32_2x3', 'f64_scalar', 'i64_vector', 'bool_2x2', 'u8_vector', 'fortran_f64_2x3x4']:
    got, want = np.load(f'{out}/{name}.npy'), np.load(f'{fixtures}/{name}.npy')
    assert got.dtype == want.dtype and got.shape == want.shape and (got == want).all(), name
assert zipfile.ZipFile(f'{out}/arrays.npz').testzip() is None
with np.load(f'{out}/arrays.npz') as got, np.load(f'{fixtures}/arrays.npz') as want:
    assert list(got.keys()) == list(want.keys())
    for key in want:
        assert got[key].dtype == want[key].dtype and (got[key] == want[key]).all(), key
)");
    std::string command = python + " '" + (tmp / "check.py") + "' '" + tmp.dir.string() + "' '" + WG_FIXTURES_DIR + "'";
    INFO(command);
    CHECK(std::system(command.c_str()) == 0);
}
