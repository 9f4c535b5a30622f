// Internal: the .npy format on bytes in memory, shared by load_npy/save_npy and the .npz
// members.
#pragma once

#include <string>

#include "bytes.hpp"
#include "wengert/io.hpp"

namespace wengert::io {

// A whole .npy image: magic, version, header, data.
Tensor parse_npy(Bytes bytes, const Where& where);

// What save_npy writes for `tensor`: the format 1.0 header (magic through the final '\n')
// and the row-major data it describes.
struct NpyImage {
    std::string header;
    Tensor data;
    Bytes data_bytes() const;
};
NpyImage npy_image(const Tensor& tensor, ByteKind bytes);

}  // namespace wengert::io
