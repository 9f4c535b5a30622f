#include "wengert/tensor.hpp"

#include <sys/mman.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <unordered_map>

#include "dispatch.hpp"

namespace wengert {

const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::f32: return "f32";
        case DType::f64: return "f64";
        case DType::i64: return "i64";
        case DType::u8: return "u8";
    }
    return "?";
}

std::size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::f32: return 4;
        case DType::f64: return 8;
        case DType::i64: return 8;
        case DType::u8: return 1;
    }
    return 1;
}

DType parse_dtype(const std::string& name, const char* op) {
    if (name == "f32" || name == "float32") return DType::f32;
    if (name == "f64" || name == "float64") return DType::f64;
    if (name == "i64" || name == "int64") return DType::i64;
    if (name == "u8" || name == "bool") return DType::u8;
    throw ShapeError(op, fmt::format("unknown dtype '{}'; expected f32, f64, i64 or u8", name));
}

std::string fmt_dtype_mismatch(const char* want, const char* have) {
    return fmt::format("tensor: expected dtype {}, got {}", want, have);
}

std::string fmt_count_mismatch(std::size_t count, const Shape& shape) {
    return fmt::format("{} values do not fill shape {} ({} elements)", count, shape.str(), shape.numel());
}

// ---------------------------------------------------------------- Shape

Shape::Shape(std::initializer_list<std::int64_t> dims) : Shape(std::span<const std::int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const std::int64_t> dims) {
    if (dims.size() > static_cast<std::size_t>(kMaxDims)) {
        throw ShapeError("shape", fmt::format("{} dimensions; at most {} are supported", dims.size(), kMaxDims));
    }
    n_ = static_cast<int>(dims.size());
    for (int i = 0; i < n_; ++i) d_[i] = dims[i];
}

void Shape::push_back(std::int64_t v) {
    if (n_ == kMaxDims) throw ShapeError("shape", fmt::format("more than {} dimensions", kMaxDims));
    d_[n_++] = v;
}

void Shape::insert(int pos, std::int64_t v) {
    if (n_ == kMaxDims) throw ShapeError("shape", fmt::format("more than {} dimensions", kMaxDims));
    for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++n_;
}

void Shape::erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
}

void Shape::resize(int n, std::int64_t fill) {
    if (n > kMaxDims) throw ShapeError("shape", fmt::format("more than {} dimensions", kMaxDims));
    for (int i = n_; i < n; ++i) d_[i] = fill;
    n_ = n;
}

std::int64_t Shape::numel() const {
    if (std::find(begin(), end(), 0) != end()) return 0;
    std::int64_t n = 1;
    for (int i = 0; i < n_; ++i) {
        if (__builtin_mul_overflow(n, d_[i], &n)) throw ShapeError("shape", fmt::format("{} has more than 2^63 elements", str()));
    }
    return n;
}

std::string Shape::str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

bool operator==(const Shape& a, const Shape& b) {
    if (a.n_ != b.n_) return false;
    for (int i = 0; i < a.n_; ++i) if (a.d_[i] != b.d_[i]) return false;
    return true;
}

int normalize_axis(std::int64_t axis, int ndim, const char* op) {
    std::int64_t a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim) {
        throw ShapeError(op, fmt::format("axis {} is out of range for a tensor of rank {}", axis, ndim));
    }
    return static_cast<int>(a);
}

Shape contiguous_strides(const Shape& shape) {
    Shape s;
    s.resize(shape.size());
    std::int64_t acc = 1;
    for (int i = shape.size() - 1; i >= 0; --i) {
        s[i] = acc;
        acc *= shape[i];
    }
    return s;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    if (a == b) return a;
    int n = std::max(a.size(), b.size());
    Shape out;
    out.resize(n);
    for (int i = 0; i < n; ++i) {
        int ia = a.size() - n + i, ib = b.size() - n + i;
        std::int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            throw ShapeError(op, fmt::format("shapes {} and {} do not broadcast (axis {}: {} vs {})",
                                             a.str(), b.str(), i - n, da, db));
        }
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// ---------------------------------------------------------------- Storage

// Note [Storage cache]
// A training step allocates the same sizes every step. Large blocks are kept on free lists by
// size when their tensors die and handed out again, so the steady-state step does not go back
// to the system for memory: on this kind of machine a fresh 40 MB block costs over 100 ms of
// page faults on first touch, against a few ms when reused. Blocks below kCacheMin go straight
// to malloc (fast already); at most kCacheMax bytes are kept, and only of sizes freed before
// (from a training step's second step on), so memory does not grow with sizes met once. Sanitizer builds bypass the
// cache so that use-after-free is still caught.
namespace {

constexpr std::size_t kCacheMin = 32 * 1024;
constexpr std::size_t kCacheMax = std::size_t{1} << 30;
constexpr std::size_t kCacheSizes = 4096;   // sizes remembered as freed once, before the unused ones are forgotten

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCacheEnabled = false;
#else
constexpr bool kCacheEnabled = true;
#endif

struct BlockCache {
    std::mutex mutex;
    std::unordered_map<std::size_t, std::vector<void*>> free_blocks;
    std::size_t cached_bytes = 0;
};

BlockCache& block_cache() {
    static BlockCache* cache = new BlockCache;   // never destroyed: storages may outlive statics
    return *cache;
}

std::size_t block_size(std::size_t bytes) { return bytes == 0 ? 64 : ((bytes + 63) / 64) * 64; }

// The blocks the cache takes (from kCacheMin bytes) are mapped from the system, and unmapped
// when freed and not kept. From malloc, a block freed in the middle of the heap stays resident
// while every later, larger request extends the heap past it (glibc raises its own mmap
// threshold to the largest block freed): `wengert check` of 3000 defs with inputs of growing
// size held all 6 GB of them at once. Sanitizer builds use malloc throughout, which they check.
constexpr std::size_t kMapMin = kCacheMin;

void* allocate_block(std::size_t size) {
    if (kCacheEnabled && size >= kMapMin) {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? nullptr : p;
    }
    return std::aligned_alloc(64, size);
}

void free_block(void* data, std::size_t size) {
    if (kCacheEnabled && size >= kMapMin) ::munmap(data, size);
    else std::free(data);
}

}  // namespace

Storage::Storage(std::size_t bytes) : nbytes(bytes) {
    std::size_t size = block_size(bytes);
    if (kCacheEnabled && size >= kCacheMin) {
        BlockCache& cache = block_cache();
        std::lock_guard<std::mutex> lock(cache.mutex);
        auto it = cache.free_blocks.find(size);
        if (it != cache.free_blocks.end() && !it->second.empty()) {
            data = it->second.back();
            it->second.pop_back();
            cache.cached_bytes -= size;
            return;
        }
    }
    data = allocate_block(size);
    if (!data) throw OutOfMemory(fmt::format("out of memory: cannot allocate {} bytes", bytes));
}

Storage::~Storage() {
    std::size_t size = block_size(nbytes);
    if (kCacheEnabled && size >= kCacheMin) {
        BlockCache& cache = block_cache();
        std::lock_guard<std::mutex> lock(cache.mutex);
        // Only a size freed before is kept: a training step's sizes come back every step, while
        // sizes met once (`wengert check` on a file of 20k defs, each of its own input size)
        // would fill the cache with blocks no one asks for again.
        auto seen = cache.free_blocks.find(size);
        if (seen == cache.free_blocks.end()) {
            if (cache.free_blocks.size() >= kCacheSizes) std::erase_if(cache.free_blocks, [](const auto& e) { return e.second.empty(); });
            cache.free_blocks.emplace(size, std::vector<void*>{});
        } else if (cache.cached_bytes + size <= kCacheMax) {
            seen->second.push_back(data);
            cache.cached_bytes += size;
            return;
        }
    }
    free_block(data, size);
}

// ---------------------------------------------------------------- creation

namespace {
thread_local const ElementLimit* t_element_limit = nullptr;
}  // namespace

ElementLimit::ElementLimit(std::int64_t max_elements, std::string what, std::string why)
    : max_elements_(max_elements), what_(std::move(what)), why_(std::move(why)), previous_(t_element_limit) {
    t_element_limit = this;
}

ElementLimit::~ElementLimit() { t_element_limit = previous_; }

void ElementLimit::check(const Shape& shape) {
    const ElementLimit* limit = t_element_limit;
    if (!limit) return;
    for (auto d : shape) {
        if (d < 0) return;   // Tensor::empty's own error
    }
    std::int64_t n = 1;
    bool over = false;
    for (auto d : shape) {
        if (d == 0) return;
        if (__builtin_mul_overflow(n, d, &n) || n > limit->max_elements_) over = true;
    }
    if (over) {
        throw ShapeError(limit->what_, fmt::format("a tensor of shape {} has more than {} elements, the most {}", shape.str(),
                                                   limit->max_elements_, limit->why_));
    }
}

Tensor Tensor::empty(const Shape& shape, DType dtype) {
    for (auto d : shape) {
        if (d < 0) throw ShapeError("tensor", fmt::format("negative extent in shape {}", shape.str()));
    }
    const auto item_bytes = static_cast<std::int64_t>(dtype_size(dtype));
    if (shape.numel() > std::numeric_limits<std::int64_t>::max() / item_bytes) {
        throw ShapeError("tensor", fmt::format("shape {} of {} needs more than 2^63 bytes", shape.str(), dtype_name(dtype)));
    }
    // the extents other than 0 too: an empty tensor's strides are their products (NumPy
    // refuses (0, 2^62, 2^62) as well); found by fuzzing the IDX reader
    std::int64_t nonzero_bytes = item_bytes;
    for (auto d : shape) {
        if (d != 0 && __builtin_mul_overflow(nonzero_bytes, d, &nonzero_bytes)) {
            throw ShapeError("tensor", fmt::format("shape {} of {} needs more than 2^63 bytes", shape.str(), dtype_name(dtype)));
        }
    }
    ElementLimit::check(shape);
    Tensor t;
    try {
        t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(shape.numel() * item_bytes));
    } catch (const std::bad_alloc&) {
        throw OutOfMemory(fmt::format("out of memory: cannot allocate {} bytes for a {} tensor of shape {}",
                                      shape.numel() * item_bytes, dtype_name(dtype), shape.str()));
    }
    t.dtype_ = dtype;
    t.shape_ = shape;
    t.strides_ = contiguous_strides(shape);
    return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
    Tensor t = empty(shape, dtype);
    std::memset(t.storage_->data, 0, t.storage_->nbytes);
    return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
    Tensor t = empty(shape, dtype);
    t.fill(value);
    return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full(Shape{}, value, dtype); }

Tensor Tensor::eye(std::int64_t n, DType dtype) {
    Tensor t = zeros(Shape{n, n}, dtype);
    detail::dispatch_all(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = t.data<T>();
        for (std::int64_t i = 0; i < n; ++i) p[i * n + i] = T(1);
    });
    return t;
}

Tensor Tensor::arange(double start, double stop, double step, DType dtype) {
    if (step == 0) throw ShapeError("arange", "step must not be zero");
    double count = std::ceil((stop - start) / step);
    if (std::isnan(count) || count >= 9223372036854775808.0) {   // casting those to int64 is undefined
        throw ShapeError("arange", fmt::format("{} to {} in steps of {} is not a count of values below 2^63", start, stop, step));
    }
    Tensor t = empty(Shape{count > 0 ? static_cast<std::int64_t>(count) : 0}, dtype);
    detail::dispatch_all(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = t.data<T>();
        for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
    });
    return t;
}

Tensor Tensor::from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype) {
    if (static_cast<std::int64_t>(values.size()) != shape.numel()) {
        throw ShapeError("tensor", fmt_count_mismatch(values.size(), shape));
    }
    Tensor t = empty(shape, dtype);
    detail::dispatch_all(dtype, [&](auto tag) {
        using T = decltype(tag);
        T* p = t.data<T>();
        for (std::size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
    });
    return t;
}

// ---------------------------------------------------------------- metadata

std::int64_t Tensor::size(std::int64_t axis) const { return shape_[normalize_axis(axis, ndim(), "size")]; }

bool Tensor::is_contiguous() const {
    std::int64_t expected = 1;
    for (int i = ndim() - 1; i >= 0; --i) {
        if (shape_[i] != 1 && strides_[i] != expected) return false;
        expected *= shape_[i];
    }
    return true;
}

void* Tensor::raw() const {
    return static_cast<char*>(storage_->data) + offset_ * static_cast<std::int64_t>(dtype_size(dtype_));
}

// ---------------------------------------------------------------- views

// Resolves one -1 in `shape` against `numel`.
static Shape infer_shape(const Shape& requested, std::int64_t numel, const Shape& from, const char* op) {
    Shape s = requested;
    int infer = -1;
    std::int64_t known = 1;
    for (int i = 0; i < s.size(); ++i) {
        if (s[i] == -1) {
            if (infer >= 0) throw ShapeError(op, fmt::format("more than one -1 in {}", requested.str()));
            infer = i;
        } else if (s[i] < 0) {
            throw ShapeError(op, fmt::format("negative extent in {}", requested.str()));
        } else {
            known *= s[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || numel % known != 0) {
            throw ShapeError(op, fmt::format("cannot reshape {} ({} elements) to {}", from.str(), numel, requested.str()));
        }
        s[infer] = numel / known;
    }
    if (s.numel() != numel) {
        throw ShapeError(op, fmt::format("cannot reshape {} ({} elements) to {} ({} elements)", from.str(), numel,
                                         s.str(), s.numel()));
    }
    return s;
}

// Strides for viewing (shape, strides) as `target` without copying, if possible. Old axes are
// walked from the last, in chunks that are contiguous in themselves; each chunk must map onto
// a run of new axes with the same element count.
static bool view_strides(const Shape& shape, const Shape& strides, const Shape& target, Shape& out) {
    out.resize(target.size());
    if (shape.size() == 0 || shape.numel() == 0) {
        out = contiguous_strides(target);
        return true;
    }
    int view_d = target.size() - 1;
    std::int64_t chunk_base_stride = strides.back();
    std::int64_t tensor_numel = 1, view_numel = 1;
    for (int tensor_d = shape.size() - 1; tensor_d >= 0; --tensor_d) {
        tensor_numel *= shape[tensor_d];
        bool chunk_ends = tensor_d == 0 ||
                          (shape[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride);
        if (!chunk_ends) continue;
        while (view_d >= 0 && (view_numel < tensor_numel || target[view_d] == 1)) {
            out[view_d] = view_numel * chunk_base_stride;
            view_numel *= target[view_d];
            --view_d;
        }
        if (view_numel != tensor_numel) return false;
        if (tensor_d > 0) {
            chunk_base_stride = strides[tensor_d - 1];
            tensor_numel = 1;
            view_numel = 1;
        }
    }
    return view_d == -1;
}

Tensor Tensor::view(const Shape& shape) const {
    Shape target = infer_shape(shape, numel(), shape_, "view");
    Shape strides;
    if (!view_strides(shape_, strides_, target, strides)) {
        throw ShapeError("view", fmt::format("a tensor of shape {} with strides {} cannot be viewed as {} without a copy",
                                             shape_.str(), strides_.str(), target.str()));
    }
    Tensor t = *this;
    t.shape_ = target;
    t.strides_ = strides;
    return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
    Shape target = infer_shape(shape, numel(), shape_, "reshape");
    Shape strides;
    if (view_strides(shape_, strides_, target, strides)) {
        Tensor t = *this;
        t.shape_ = target;
        t.strides_ = strides;
        return t;
    }
    return contiguous().view(target);
}

Tensor Tensor::permute(std::span<const int> axes) const {
    if (static_cast<int>(axes.size()) != ndim()) {
        throw ShapeError("permute", fmt::format("{} axes given for a tensor of rank {}", axes.size(), ndim()));
    }
    Tensor t = *this;
    bool seen[Shape::kMaxDims] = {};
    for (int i = 0; i < ndim(); ++i) {
        int a = normalize_axis(axes[i], ndim(), "permute");
        if (seen[a]) throw ShapeError("permute", fmt::format("axis {} appears twice", a));
        seen[a] = true;
        t.shape_[i] = shape_[a];
        t.strides_[i] = strides_[a];
    }
    return t;
}

Tensor Tensor::permute(std::initializer_list<int> axes) const {
    return permute(std::span<const int>(axes.begin(), axes.size()));
}

Tensor Tensor::transpose(int a, int b) const {
    a = normalize_axis(a, ndim(), "transpose");
    b = normalize_axis(b, ndim(), "transpose");
    Tensor t = *this;
    std::swap(t.shape_[a], t.shape_[b]);
    std::swap(t.strides_[a], t.strides_[b]);
    return t;
}

Tensor Tensor::slice(int axis, std::int64_t start, std::int64_t stop, std::int64_t step) const {
    axis = normalize_axis(axis, ndim(), "slice");
    if (step <= 0) throw ShapeError("slice", fmt::format("step must be positive, got {}", step));
    std::int64_t n = shape_[axis];
    auto clampi = [n](std::int64_t v) { return std::clamp<std::int64_t>(v < 0 ? v + n : v, 0, n); };
    start = clampi(start);
    stop = clampi(stop);
    // written so that no step up to 2^63 - 1 overflows (NumPy: x[0:2^63-1:2^63-1] is one row)
    std::int64_t count = stop > start ? (stop - start - 1) / step + 1 : 0;
    Tensor t = *this;
    t.offset_ += start * strides_[axis];
    t.shape_[axis] = count;
    // an axis of one element never steps; otherwise step < n, and the stride fits as the
    // storage's extent does
    t.strides_[axis] = count > 1 ? strides_[axis] * step : strides_[axis];
    return t;
}

Tensor Tensor::expand(const Shape& shape) const {
    if (shape.size() < ndim()) {
        throw ShapeError("expand", fmt::format("cannot expand {} to fewer dimensions {}", shape_.str(), shape.str()));
    }
    Tensor t = *this;
    t.shape_ = shape;
    t.strides_.resize(shape.size());
    int lead = shape.size() - ndim();
    for (int i = 0; i < shape.size(); ++i) {
        int src = i - lead;
        if (src < 0) {
            t.strides_[i] = 0;
        } else if (shape_[src] == shape[i]) {
            t.strides_[i] = strides_[src];
        } else if (shape_[src] == 1) {
            t.strides_[i] = 0;
        } else {
            throw ShapeError("expand", fmt::format("cannot expand {} to {} (axis {}: {} vs {})", shape_.str(), shape.str(),
                                                   i, shape_[src], shape[i]));
        }
    }
    return t;
}

Tensor Tensor::squeeze(int axis) const {
    axis = normalize_axis(axis, ndim(), "squeeze");
    if (shape_[axis] != 1) {
        throw ShapeError("squeeze", fmt::format("axis {} of {} has extent {}, not 1", axis, shape_.str(), shape_[axis]));
    }
    Tensor t = *this;
    t.shape_.erase(axis);
    t.strides_.erase(axis);
    return t;
}

Tensor Tensor::unsqueeze(int axis) const {
    axis = normalize_axis(axis, ndim() + 1, "unsqueeze");
    Tensor t = *this;
    std::int64_t stride = axis < ndim() ? strides_[axis] * shape_[axis] : 1;
    t.shape_.insert(axis, 1);
    t.strides_.insert(axis, stride);
    return t;
}

Tensor Tensor::select(int axis, std::int64_t index) const {
    axis = normalize_axis(axis, ndim(), "select");
    std::int64_t n = shape_[axis];
    if (index < -n || index >= n) {
        throw ShapeError("select", fmt::format("index {} is out of range for axis {} of extent {}", index, axis, n));
    }
    if (index < 0) index += n;
    Tensor t = *this;
    t.offset_ += index * strides_[axis];
    t.shape_.erase(axis);
    t.strides_.erase(axis);
    return t;
}

// ---------------------------------------------------------------- copies

void Tensor::copy_from(const Tensor& src_in) {
    Tensor src = src_in.shape() == shape_ ? src_in : src_in.expand(shape_);
    detail::dispatch_all(dtype_, [&](auto tag) {
        using T = decltype(tag);
        T* out = data<T>();
        detail::dispatch_all(src.dtype(), [&](auto stag) {
            using S = decltype(stag);
            const S* in = src.data<S>();
            detail::for_each_run<2>(shape_, {&strides_, &src.strides_}, [&](std::int64_t n, auto off, auto st) {
                T* o = out + off[0];
                const S* s = in + off[1];
                if (st[0] == 1 && st[1] == 1) {
                    for (std::int64_t i = 0; i < n; ++i) o[i] = static_cast<T>(s[i]);
                } else {
                    for (std::int64_t i = 0; i < n; ++i) o[i * st[0]] = static_cast<T>(s[i * st[1]]);
                }
            });
        });
    });
    bump_version();
}

void Tensor::fill(double value) {
    detail::dispatch_all(dtype_, [&](auto tag) {
        using T = decltype(tag);
        T* out = data<T>();
        T v = static_cast<T>(value);
        if (is_contiguous()) {
            // zero_grad's case: one memset (all bits zero is +0) or fill_n over the whole block
            if (value == 0.0 && !std::signbit(value)) std::memset(out, 0, static_cast<std::size_t>(numel()) * sizeof(T));
            else std::fill_n(out, numel(), v);
            return;
        }
        detail::for_each_run<1>(shape_, {&strides_}, [&](std::int64_t n, auto off, auto st) {
            for (std::int64_t i = 0; i < n; ++i) out[off[0] + i * st[0]] = v;
        });
    });
    bump_version();
}

Tensor Tensor::contiguous() const {
    if (is_contiguous()) return *this;
    return clone();
}

Tensor Tensor::clone() const {
    Tensor t = empty(shape_, dtype_);
    t.copy_from(*this);
    return t;
}

Tensor Tensor::clone_layout() const {
    if (is_contiguous() || numel() == 0) return clone();
    std::int64_t lo = 0, hi = 0;   // element span the view reaches, relative to its offset
    for (int i = 0; i < ndim(); ++i) {
        if (strides_[i] == 0 && shape_[i] > 1) return clone();
        std::int64_t reach = strides_[i] * (shape_[i] - 1);
        (reach < 0 ? lo : hi) += reach;
    }
    Tensor t = *this;
    t.storage_ = std::make_shared<Storage>(static_cast<std::size_t>(hi - lo + 1) * dtype_size(dtype_));
    t.offset_ = -lo;
    t.copy_from(*this);
    return t;
}

Tensor Tensor::to(DType dtype) const {
    if (dtype == dtype_) return *this;
    Tensor t = empty(shape_, dtype);
    t.copy_from(*this);
    return t;
}

// ---------------------------------------------------------------- element access

double Tensor::item() const {
    if (numel() != 1) throw ShapeError("item", fmt::format("tensor of shape {} has {} elements, not 1", shape_.str(), numel()));
    return detail::dispatch_all(dtype_, [&](auto tag) {
        using T = decltype(tag);
        return static_cast<double>(*data<T>());
    });
}

double Tensor::at(std::initializer_list<std::int64_t> index) const {
    if (static_cast<int>(index.size()) != ndim()) {
        throw ShapeError("at", fmt::format("{} indices for a tensor of rank {}", index.size(), ndim()));
    }
    std::int64_t off = 0;
    int i = 0;
    for (auto v : index) {
        if (v < 0 || v >= shape_[i]) throw ShapeError("at", fmt::format("index {} out of range for axis {} of {}", v, i, shape_.str()));
        off += v * strides_[i++];
    }
    return detail::dispatch_all(dtype_, [&](auto tag) {
        using T = decltype(tag);
        return static_cast<double>(data<T>()[off]);
    });
}

std::vector<double> Tensor::to_doubles() const {
    Tensor c = contiguous();
    std::vector<double> out(static_cast<std::size_t>(numel()));
    detail::dispatch_all(dtype_, [&](auto tag) {
        using T = decltype(tag);
        const T* p = c.data<T>();
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(p[i]);
    });
    return out;
}

std::string Tensor::str(int max_elements) const {
    auto values = to_doubles();
    std::string body;
    for (std::size_t i = 0; i < values.size() && static_cast<int>(i) < max_elements; ++i) {
        body += fmt::format("{}{:.6g}", i ? ", " : "", values[i]);
    }
    if (static_cast<int>(values.size()) > max_elements) body += ", ...";
    return fmt::format("tensor({} {}: [{}])", dtype_name(dtype_), shape_.str(), body);
}

}  // namespace wengert
