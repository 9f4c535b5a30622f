// .npy: NumPy's single-array format. Read: versions 1.0, 2.0 and 3.0; written: 1.0.
#include "npy.hpp"

#include <algorithm>
#include <bit>
#include <limits>
#include <optional>
#include <cstring>
#include <numeric>

#include <fmt/format.h>

namespace wengert {
namespace io {

static_assert(std::endian::native == std::endian::little,
              ".npy data is read and written as little-endian by memcpy");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;

struct NpyType {
    const char* descr;
    DType dtype;
    bool is_bool;
};

constexpr NpyType kTypes[] = {
    {"<f4", DType::f32, false}, {"<f8", DType::f64, false}, {"<i8", DType::i64, false},
    {"|u1", DType::u8, false},  {"|b1", DType::u8, true},
};

// Note [The .npy header]
// After the magic "\x93NUMPY", a major and a minor version byte, and the header length
// (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0) comes a Python dict literal, padded
// with spaces and ended by '\n':
//     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// NumPy reads it with ast.literal_eval. This reads the subset that NumPy, and older writers
// with Python 2's `3L` integers, put there: strings, True/False, integers, tuples and lists.
struct Literal {
    enum class Kind { string, boolean, integer, sequence };
    Kind kind = Kind::string;
    std::string text;
    bool boolean = false;
    std::int64_t integer = 0;
    std::vector<Literal> items;
    std::string_view source;  // as written in the header
};

class HeaderParser {
public:
    HeaderParser(std::string_view header, const Where& where) : s_(header), where_(where) {}

    std::vector<std::pair<std::string, Literal>> dict() {
        std::vector<std::pair<std::string, Literal>> entries;
        expect('{');
        while (true) {
            skip_space();
            if (peek() == '}') break;
            Literal key = value(1);
            if (key.kind != Literal::Kind::string) fail("expected a string key");
            for (const auto& e : entries) {
                if (e.first == key.text) fail(fmt::format("duplicate key '{}'", key.text));
            }
            expect(':');
            entries.emplace_back(key.text, value(1));
            skip_space();
            if (peek() == ',') ++pos_;
            else if (peek() != '}') fail("expected ',' or '}'");
        }
        ++pos_;
        skip_space();
        if (pos_ != s_.size()) fail("unexpected text after the dict");
        return entries;
    }

private:
    static constexpr int kMaxDepth = 16;

    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }

    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r')) ++pos_;
    }

    void expect(char c) {
        skip_space();
        if (peek() != c) fail(fmt::format("expected '{}'", c));
        ++pos_;
    }

    Literal value(int depth) {
        if (depth > kMaxDepth) fail("values nested too deeply");
        skip_space();
        std::size_t start = pos_;
        Literal v;
        char c = peek();
        if (c == '\'' || c == '"') {
            v.kind = Literal::Kind::string;
            ++pos_;
            while (pos_ < s_.size() && s_[pos_] != c) {
                if (s_[pos_] == '\\') ++pos_;
                if (pos_ < s_.size()) v.text.push_back(s_[pos_++]);
            }
            if (pos_ >= s_.size()) fail("unterminated string");
            ++pos_;
        } else if (c == '(' || c == '[') {
            v.kind = Literal::Kind::sequence;
            char close = c == '(' ? ')' : ']';
            ++pos_;
            while (true) {
                skip_space();
                if (peek() == close) break;
                v.items.push_back(value(depth + 1));
                skip_space();
                if (peek() == ',') ++pos_;
                else if (peek() != close) fail(fmt::format("expected ',' or '{}'", close));
            }
            ++pos_;
        } else if (c == '-' || c == '+' || (c >= '0' && c <= '9')) {
            v.kind = Literal::Kind::integer;
            bool negative = c == '-';
            if (c == '-' || c == '+') ++pos_;
            if (!(peek() >= '0' && peek() <= '9')) fail("expected digits");
            while (peek() >= '0' && peek() <= '9') {
                std::int64_t digit = peek() - '0';
                if (v.integer > (std::numeric_limits<std::int64_t>::max() - digit) / 10) fail("integer out of range");
                v.integer = v.integer * 10 + digit;
                ++pos_;
            }
            if (peek() == 'L' || peek() == 'l') ++pos_;
            if (negative) v.integer = -v.integer;
        } else if (s_.substr(pos_, 4) == "True") {
            v.kind = Literal::Kind::boolean;
            v.boolean = true;
            pos_ += 4;
        } else if (s_.substr(pos_, 5) == "False") {
            v.kind = Literal::Kind::boolean;
            pos_ += 5;
        } else {
            fail("expected a value");
        }
        v.source = s_.substr(start, pos_ - start);
        return v;
    }

    [[noreturn]] void fail(const std::string& what) const {
        std::string_view body = s_;
        while (!body.empty() && (body.back() == ' ' || body.back() == '\n')) body.remove_suffix(1);
        std::string shown;
        for (char ch : body.substr(0, 120)) {
            auto u = static_cast<unsigned char>(ch);
            if (u >= 0x20 && u < 0x7f) shown.push_back(ch);
            else shown += fmt::format("\\x{:02x}", u);
        }
        if (body.size() > 120) shown += "...";
        where_.fail(fmt::format("corrupt header: {} at character {} of \"{}\"", what, pos_, shown));
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    const Where& where_;
};

const NpyType& lookup_type(const std::string& descr, const Where& where) {
    for (const auto& t : kTypes) {
        if (descr == t.descr) return t;
    }
    if (descr.size() == 3 && descr[0] == '>') {
        for (const auto& t : kTypes) {
            if (descr.substr(1) == std::string_view(t.descr).substr(1)) {
                where.fail(fmt::format("big-endian dtype '{}' is not supported: wengert reads little-endian data "
                                       "(in NumPy: a.astype('<{}'))", descr, descr.substr(1)));
            }
        }
    }
    where.fail(fmt::format("unsupported dtype '{}': wengert reads '<f4', '<f8', '<i8', '|u1' and '|b1'", descr));
}

std::string python_shape(const Shape& shape) {
    if (shape.size() == 1) return fmt::format("({},)", shape[0]);
    return fmt::format("({})", fmt::join(shape, ", "));
}

}  // namespace

Tensor parse_npy(Bytes bytes, const Where& where) {
    Bytes preamble = take(bytes, 0, kMagicLen + 2, "npy magic and version", where);
    if (std::memcmp(preamble.data(), kMagic, kMagicLen) != 0) {
        bool zip = preamble[0] == 'P' && preamble[1] == 'K';
        where.fail(fmt::format("bad magic: expected 93 4e 55 4d 50 59 (\"\\x93NUMPY\"), found {:02x}{}",
                               fmt::join(preamble.first(kMagicLen), " "),
                               zip ? " (a zip archive: load it with load_npz)" : ""));
    }
    int major = preamble[6], minor = preamble[7];
    if (minor != 0 || major < 1 || major > 3) {
        where.fail(fmt::format("unsupported format version {}.{}: wengert reads 1.0, 2.0 and 3.0", major, minor));
    }
    std::uint64_t len_size = major == 1 ? 2 : 4;
    Bytes len_bytes = take(bytes, 8, len_size, "header length", where);
    std::uint64_t header_len = major == 1 ? le16(len_bytes.data()) : le32(len_bytes.data());
    std::uint64_t data_offset = 8 + len_size + header_len;
    Bytes header = take(bytes, 8 + len_size, header_len, "header", where);

    std::optional<Literal> descr, fortran_order, shape_literal;
    for (auto& [key, value] :
         HeaderParser(std::string_view(reinterpret_cast<const char*>(header.data()), header.size()), where).dict()) {
        if (key == "descr") descr = std::move(value);
        else if (key == "fortran_order") fortran_order = std::move(value);
        else if (key == "shape") shape_literal = std::move(value);
        else where.fail(fmt::format("corrupt header: unexpected key '{}'", key));
    }
    for (auto [name, found] : {std::pair{"descr", &descr}, {"fortran_order", &fortran_order}, {"shape", &shape_literal}}) {
        if (!*found) where.fail(fmt::format("corrupt header: no '{}' key", name));
    }
    if (descr->kind == Literal::Kind::sequence) {
        where.fail(fmt::format("unsupported dtype {}: structured arrays are not supported", descr->source));
    }
    if (descr->kind != Literal::Kind::string) {
        where.fail(fmt::format("corrupt header: 'descr' must be a string, got {}", descr->source));
    }
    if (fortran_order->kind != Literal::Kind::boolean) {
        where.fail(fmt::format("corrupt header: 'fortran_order' must be True or False, got {}", fortran_order->source));
    }
    const NpyType& type = lookup_type(descr->text, where);

    Shape shape;
    const std::vector<Literal>& dims = shape_literal->items;
    bool shape_ok = shape_literal->kind == Literal::Kind::sequence &&
                    std::all_of(dims.begin(), dims.end(), [](const Literal& d) {
                        return d.kind == Literal::Kind::integer && d.integer >= 0;
                    });
    if (!shape_ok) {
        where.fail(fmt::format("corrupt header: 'shape' must be a tuple of non-negative integers, got {}",
                               shape_literal->source));
    }
    if (dims.size() > static_cast<std::size_t>(Shape::kMaxDims)) {
        where.fail(fmt::format("shape {} has {} dimensions; wengert supports at most {}", shape_literal->source,
                               dims.size(), Shape::kMaxDims));
    }
    for (const Literal& d : dims) shape.push_back(d.integer);

    std::int64_t data_bytes = 0;
    if (!array_bytes(shape, static_cast<std::int64_t>(dtype_size(type.dtype)), data_bytes)) {
        where.fail(fmt::format("corrupt header: shape {} is too large", shape_literal->source));
    }
    std::uint64_t found = bytes.size() - data_offset;
    if (found < static_cast<std::uint64_t>(data_bytes)) {
        where.fail(fmt::format("truncated file: expected {} bytes of data after the {}-byte header, found {}",
                               data_bytes, data_offset, found));
    }
    if (found > static_cast<std::uint64_t>(data_bytes)) {
        where.fail(fmt::format("shape {} of '{}' holds {} bytes of data, but the file has {}", shape_literal->source,
                               descr->text, data_bytes, found));
    }

    bool fortran = fortran_order->boolean && shape.size() > 1;
    Shape stored = shape;
    if (fortran) std::reverse(stored.begin(), stored.end());
    Tensor t = Tensor::empty(stored, type.dtype);
    if (data_bytes > 0) std::memcpy(t.raw(), bytes.data() + data_offset, static_cast<std::size_t>(data_bytes));
    if (type.is_bool) {
        auto* p = t.data<std::uint8_t>();
        for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] != 0;
    }
    if (fortran) {
        // Fortran order is C order of the reversed shape: reverse the axes back, then copy.
        std::vector<int> axes(static_cast<std::size_t>(shape.size()));
        std::iota(axes.rbegin(), axes.rend(), 0);
        t = t.permute(axes).contiguous();
    }
    return t;
}

Bytes NpyImage::data_bytes() const {
    return {static_cast<const std::uint8_t*>(data.raw()), static_cast<std::size_t>(data.numel()) * dtype_size(data.dtype())};
}

NpyImage npy_image(const Tensor& tensor, ByteKind bytes) {
    bool as_bool = tensor.dtype() == DType::u8 && bytes == ByteKind::boolean;
    NpyImage image;
    image.data = tensor.contiguous();
    if (as_bool) {
        Tensor flags = Tensor::empty(tensor.shape(), DType::u8);
        const auto* in = image.data.data<std::uint8_t>();
        auto* out = flags.data<std::uint8_t>();
        for (std::int64_t i = 0; i < flags.numel(); ++i) out[i] = in[i] != 0;
        image.data = flags;
    }
    const char* descr = "";
    for (const auto& t : kTypes) {
        if (t.dtype == tensor.dtype() && t.is_bool == as_bool) descr = t.descr;
    }
    // The same bytes as NumPy 1.24's _write_array_header: keys sorted, spare spaces so the
    // first axis can grow in place to 21 digits, then spaces to a 64-byte boundary and '\n'.
    const Shape& shape = tensor.shape();
    std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, python_shape(shape));
    if (shape.size() > 0) dict.append(21 - fmt::formatted_size("{}", shape[0]), ' ');
    std::size_t header_len = dict.size() + 1;
    std::size_t pad = 64 - (kMagicLen + 4 + header_len) % 64;
    header_len += pad;
    image.header.assign(kMagic, kMagicLen);
    image.header += '\x01';
    image.header += '\x00';
    put_le16(image.header, static_cast<std::uint16_t>(header_len));
    image.header += dict;
    image.header.append(pad, ' ');
    image.header += '\n';
    return image;
}

}  // namespace io

Tensor load_npy(const std::string& path) {
    std::vector<std::uint8_t> bytes = io::read_file(path);
    return io::parse_npy(bytes, io::Where{path, ""});
}

void save_npy(const std::string& path, const Tensor& tensor, ByteKind bytes) {
    io::NpyImage image = io::npy_image(tensor, bytes);
    io::AtomicFile file(path);
    file.write(image.header);
    io::Bytes data = image.data_bytes();
    file.write(data.data(), data.size());
    file.commit();
}

}  // namespace wengert
