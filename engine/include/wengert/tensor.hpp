// wengert: the tensor type. Shape, strides and offset over shared aligned storage.
//
// Note [Views]
// A Tensor is a view: (storage, dtype, shape, strides in elements, offset in elements).
// reshape (where the strides allow), permute, transpose, slice, expand (stride 0),
// squeeze and unsqueeze never copy; contiguous() copies only when the view is not already
// row-major and dense. Every write through any view bumps the storage's version, which the
// tape reads to refuse a backward whose saved tensors were modified in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "wengert/error.hpp"

namespace wengert {

enum class DType : std::uint8_t { f32, f64, i64, u8 };

const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);
// "f32", "f64", "i64", "u8" (or "bool"); anything else is a ShapeError naming `op`.
DType parse_dtype(const std::string& name, const char* op);
inline bool is_floating(DType dtype) { return dtype == DType::f32 || dtype == DType::f64; }

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<std::uint8_t>() { return DType::u8; }

// A small fixed-capacity list of extents (or strides): no allocation per tensor.
class Shape {
public:
    static constexpr int kMaxDims = 8;

    Shape() = default;
    Shape(std::initializer_list<std::int64_t> dims);
    explicit Shape(std::span<const std::int64_t> dims);

    int size() const { return n_; }
    bool empty() const { return n_ == 0; }
    std::int64_t operator[](int i) const { return d_[i]; }
    std::int64_t& operator[](int i) { return d_[i]; }
    const std::int64_t* begin() const { return d_; }
    const std::int64_t* end() const { return d_ + n_; }
    std::int64_t* begin() { return d_; }
    std::int64_t* end() { return d_ + n_; }
    std::int64_t back() const { return d_[n_ - 1]; }

    void push_back(std::int64_t v);
    void insert(int pos, std::int64_t v);
    void erase(int pos);
    void resize(int n, std::int64_t fill = 0);

    std::int64_t numel() const;
    std::vector<std::int64_t> to_vector() const { return {begin(), end()}; }
    std::string str() const;  // "[2, 3]"

    friend bool operator==(const Shape& a, const Shape& b);

private:
    std::int64_t d_[kMaxDims] = {};
    int n_ = 0;
};

// Normalise a possibly negative axis against ndim; throws ShapeError naming `op`.
int normalize_axis(std::int64_t axis, int ndim, const char* op);

// Note [Element limit]
// A program that makes tensors from sizes it is given (the .wg language: zeros(n), dense(n),
// alibi_bias(h, lq, lk)) can cap them. While an ElementLimit lives on a thread, Tensor::empty
// on that thread refuses a tensor of more elements than the limit with a ShapeError naming
// `what` and the shape, and saying `why` there is a limit, before anything is allocated
// ("zeros: a tensor of shape [...] has more than N elements, the most <why>"): a size that cannot be sensible is an
// error at once instead of seconds of allocation or the machine's memory. Scopes nest; the
// innermost one decides. Without one there is no limit beyond the address space.
class ElementLimit {
public:
    ElementLimit(std::int64_t max_elements, std::string what, std::string why);
    ~ElementLimit();
    ElementLimit(const ElementLimit&) = delete;
    ElementLimit& operator=(const ElementLimit&) = delete;
    // Throws the limit's ShapeError if a tensor of `shape` would exceed the innermost limit
    // on this thread; for an op that works out sizes before it allocates its output.
    static void check(const Shape& shape);

private:
    std::int64_t max_elements_;
    std::string what_, why_;
    const ElementLimit* previous_;
};

struct Storage {
    void* data = nullptr;
    std::size_t nbytes = 0;
    std::uint64_t version = 0;
    explicit Storage(std::size_t bytes);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
};

class Tensor {
public:
    Tensor() = default;

    // ---- creation ----
    static Tensor empty(const Shape& shape, DType dtype = DType::f32);
    static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
    static Tensor ones(const Shape& shape, DType dtype = DType::f32);
    static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
    static Tensor scalar(double value, DType dtype = DType::f32);
    static Tensor eye(std::int64_t n, DType dtype = DType::f32);
    static Tensor arange(double start, double stop, double step = 1.0, DType dtype = DType::f32);
    // Copies `values` (row-major) into a new tensor of `shape`.
    template <class T> static Tensor from(const std::vector<T>& values, const Shape& shape);
    static Tensor from_doubles(const std::vector<double>& values, const Shape& shape,
                               DType dtype = DType::f32);

    // ---- metadata ----
    bool defined() const { return storage_ != nullptr; }
    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    const Shape& strides() const { return strides_; }
    std::int64_t offset() const { return offset_; }
    int ndim() const { return shape_.size(); }
    std::int64_t numel() const { return shape_.numel(); }
    std::int64_t size(std::int64_t axis) const;
    bool is_contiguous() const;
    const std::shared_ptr<Storage>& storage() const { return storage_; }
    std::uint64_t version() const { return storage_ ? storage_->version : 0; }
    // Call after writing through data(): saved-tensor checks read the version.
    void bump_version() const { if (storage_) ++storage_->version; }

    // ---- raw access (offset already applied) ----
    template <class T> T* data() const;
    void* raw() const;

    // ---- views (no copy) ----
    Tensor view(const Shape& shape) const;        // requires compatible strides
    Tensor reshape(const Shape& shape) const;     // view when possible, else a copy; one -1 allowed
    Tensor permute(std::span<const int> axes) const;
    Tensor permute(std::initializer_list<int> axes) const;
    Tensor transpose(int a, int b) const;
    Tensor slice(int axis, std::int64_t start, std::int64_t stop, std::int64_t step = 1) const;
    Tensor expand(const Shape& shape) const;      // NumPy broadcasting to `shape`, stride 0
    Tensor squeeze(int axis) const;
    Tensor unsqueeze(int axis) const;
    Tensor select(int axis, std::int64_t index) const;  // drops the axis

    // ---- copies ----
    Tensor contiguous() const;                    // self when already contiguous
    Tensor clone() const;                         // always a fresh contiguous copy
    // A copy with storage of its own and the same strides (a transposed view stays transposed);
    // a broadcast view (a stride 0) becomes contiguous, as clone().
    Tensor clone_layout() const;
    Tensor to(DType dtype) const;                 // self when already that dtype
    void copy_from(const Tensor& src);            // same shape (src broadcast allowed); bumps version
    void fill(double value);                      // bumps version

    // ---- element access for tests, printing and small data ----
    double item() const;                          // one element
    double at(std::initializer_list<std::int64_t> index) const;
    std::vector<double> to_doubles() const;
    std::string str(int max_elements = 64) const;

private:
    std::shared_ptr<Storage> storage_;
    DType dtype_ = DType::f32;
    Shape shape_;
    Shape strides_;
    std::int64_t offset_ = 0;
};

Shape contiguous_strides(const Shape& shape);
// NumPy broadcasting of two shapes; throws ShapeError naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

template <class T> T* Tensor::data() const {
    if (dtype_of<T>() != dtype_) {
        throw Error(fmt_dtype_mismatch(dtype_name(dtype_of<T>()), dtype_name(dtype_)));
    }
    return static_cast<T*>(storage_->data) + offset_;
}

template <class T> Tensor Tensor::from(const std::vector<T>& values, const Shape& shape) {
    if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
        throw ShapeError("tensor", fmt_count_mismatch(values.size(), shape));
    }
    Tensor t = empty(shape, dtype_of<T>());
    T* out = t.data<T>();
    for (std::size_t i = 0; i < values.size(); ++i) out[i] = values[i];
    return t;
}

}  // namespace wengert
