// Internal: datasets a train block names, and batches drawn from them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "wengert/dsl/value.hpp"
#include "wengert/random.hpp"
#include "wengert/tensor.hpp"

namespace wengert::dsl {

// Columns of equal length along their first axis, in the order the model function takes them.
struct Dataset {
    std::string description;             // "fashion_mnist(split=\"train\") from /usr/share/..."
    std::vector<std::string> fields;
    std::vector<Tensor> columns;
    std::int64_t size() const { return columns.empty() ? 0 : columns[0].shape()[0]; }
};

struct DataOptions {
    std::string data_dir;                // --data, else WENGERT_DATA, else the Debian package's folder
    DType dtype = DType::f32;            // floating columns are converted to it
};

// Loads the dataset a `dataset` record describes. Throws IOError naming the missing file (with
// how to get it) or EvalError at the record for a bad setting.
Dataset load_dataset(const Record& record, const DataOptions& options);
// The evaluation split that goes with a training dataset (fashion_mnist's test split), if any.
std::optional<Dataset> companion_eval_dataset(const Record& record, const DataOptions& options);

// Rows `rows` of every column, as new contiguous tensors.
std::vector<Tensor> gather_rows(const Dataset& data, std::span<const std::int64_t> rows);

// The order of examples in epoch `epoch`: a permutation drawn from (seed, epoch) alone, so a
// resumed run sees exactly the batches an uninterrupted one would.
std::vector<std::int64_t> epoch_order(std::int64_t n, std::uint64_t seed, std::int64_t epoch);

}  // namespace wengert::dsl
