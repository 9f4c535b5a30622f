// Internal: summing the parameters' gradients across the processes of a data-parallel run, in
// buckets, while the backward pass goes on (Note [Data-parallel training] in trainer.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "comm.hpp"
#include "wengert/params.hpp"

namespace wengert::dsl {

// Note [Gradient buckets]
// The trainable parameters, in reverse creation order (the order backward finishes them), are
// cut into buckets of at most kBucketBytes (a parameter larger than that is a bucket of its
// own; a change of dtype starts a new one). Every process has the same parameters, so the same
// buckets. A parameter's gradient is a view of its bucket's buffer, so backward accumulates
// straight into the buffer and the sum lands where the optimizer reads it: no copies. (Before
// a parameter's first gradient the tape makes its own; it is copied in once, then the view
// takes over.) Backward runs from the process's share of the global batch (rows / global rows)
// as the output gradient, so the buffers hold weighted gradients. When backward says a
// parameter's gradient is final (Tape::backward's on_ready), its bucket counts it; a bucket
// whose parameters are all in is summed (MPI_Iallreduce, in place) at once if every earlier
// bucket has been started, so every process starts the same sums in the same order. finish()
// takes what backward never reached (parameters off the tape), starts the rest and waits. A
// process with no rows in a step (a last batch smaller than the process count) takes part
// with zeros. A parameter no process gave a gradient keeps none, as with one process.
class GradReducer {
public:
    static constexpr std::int64_t kBucketBytes = std::int64_t{1} << 20;

    explicit GradReducer(Communicator& comm) : comm_(comm) {}
    // Starts a step: (re)builds the buckets if the trainable parameters changed.
    void begin(ParamStore& params);
    // A parameter whose gradient is final.
    void ready(Parameter& p);
    // Sums every bucket. Appends to `has_grad`, per bucket parameter in order, 1 where this
    // process had a gradient (to be summed with the losses).
    void finish(std::vector<double>& has_grad);
    // With the flags summed: the gradients are the sums, or none where no process had one.
    void settle(const double* flags);

    std::int64_t bytes_per_step() const { return bytes_; }
    std::size_t buckets() const { return buckets_.size(); }

private:
    struct Slot {
        Parameter* param;
        std::int64_t offset;   // in the bucket's buffer, in elements
        bool in = false;
        bool had_grad = false;
    };
    struct Bucket {
        Tensor buffer;         // 1-D, the bucket's dtype
        std::vector<Slot> slots;
        std::int64_t elements = 0;
        std::size_t waiting = 0;   // slots not in yet
    };
    Tensor view_of(const Bucket& b, const Slot& slot) const;
    void take(Bucket& b, Slot& slot);
    void start_ready_buckets();

    Communicator& comm_;
    std::vector<Parameter*> layout_;   // the parameters the buckets were built for
    std::vector<Bucket> buckets_;
    std::map<const Parameter*, std::pair<std::size_t, std::size_t>> where_;   // bucket, slot
    std::size_t next_ = 0;             // the first bucket not started
    std::int64_t bytes_ = 0;
};

}  // namespace wengert::dsl
