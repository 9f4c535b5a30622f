// wengert: file formats. NumPy .npy and .npz, IDX (MNIST, Fashion-MNIST), numeric CSV.
//
// Every failure is an IOError(path, detail): a missing file, a truncated one (with the bytes
// expected and found), a bad magic string, a corrupt header, a CRC mismatch, a shape that does
// not match the data, an unsupported dtype (named as the file spells it). No input crashes.
// Every write is atomic: the bytes go to a temporary file beside the target, are fsynced and
// then renamed over it, so the real name never holds half a file.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "wengert/tensor.hpp"

namespace wengert {

// ---- .npy: one array (NumPy format versions 1.0, 2.0 and 3.0 read; 1.0 written) ----

// Reads '<f4' -> f32, '<f8' -> f64, '<i8' -> i64, '|u1' -> u8 and '|b1' -> u8 holding 0 or 1,
// little-endian, in C or Fortran order. The result is always contiguous (row-major).
Tensor load_npy(const std::string& path);

// The tensor has no bool dtype: bool data lives in u8 tensors. This says how a u8 tensor is
// written: as NumPy uint8 ('|u1') or as NumPy bool ('|b1', nonzero written as True).
enum class ByteKind { u8, boolean };

// Writes the tensor row-major, with the same header NumPy 1.24 writes for it.
void save_npy(const std::string& path, const Tensor& tensor, ByteKind bytes = ByteKind::u8);

// ---- .npz: a zip archive of .npy members (what np.savez / np.savez_compressed write) ----

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Members in archive order, named without their ".npy". Reads stored and deflated members,
// checks each member's CRC-32, and reads zip64 records.
NamedTensors load_npz(const std::string& path);

// Writes a stored (uncompressed) archive with member "<name>.npy" for each tensor, in order;
// `bytes` applies to every u8 tensor. Names must be distinct. Archives of 4 GiB or more would
// need zip64 records, which are not written: they are an IOError before anything is written.
void save_npz(const std::string& path, const NamedTensors& tensors, ByteKind bytes = ByteKind::u8);

// ---- IDX: the MNIST format, plain or gzipped ----

// The header's type byte picks the dtype: 0x08 unsigned byte -> u8; 0x09 signed byte, 0x0B
// int16 and 0x0C int32 -> i64; 0x0D float32 -> f32; 0x0E float64 -> f64. The header's
// dimensions are the shape: (N, 28, 28) for MNIST images, (N,) for labels.
Tensor load_idx(const std::string& path);

// ---- CSV: numeric tables ----

struct CsvOptions {
    char delimiter = ',';
    bool header = false;                 // the first row names the columns
    std::optional<int> label_column = std::nullopt;  // this column goes to CsvTable::labels; < 0 counts from the end
    DType dtype = DType::f32;            // of CsvTable::features: f32 or f64
};

struct CsvTable {
    std::vector<std::string> header;     // the header row as written, label column included; empty without one
    Tensor features;                     // (rows, columns without the label)
    Tensor labels;                       // (rows,) i64; undefined without a label column
};

// Blank lines are skipped; fields may have spaces around them. A field that is not a number
// (or a label that is not an integer) is an IOError naming its line and column, both from 1.
CsvTable load_csv(const std::string& path, const CsvOptions& options = {});

// ---- any file ----
// Writes `bytes` to `path` atomically (see Note [Atomic writes] in src/io/bytes.hpp).
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace wengert
