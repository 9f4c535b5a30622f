// Internal: summing the parameters' gradients across the processes of a data-parallel run, in
// buckets, while the backward pass goes on (Note [Data-parallel training] in train.cpp).
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
// buckets. When backward says a parameter's gradient is final (Tape::backward's on_ready), its
// gradient, times this process's share of the global batch (rows / global rows), is copied into
// its bucket; a bucket whose parameters are all in is summed (MPI_Iallreduce) at once if every
// earlier bucket has been started, so every process starts the same sums in the same order.
// finish() adds what backward never reached (parameters off the tape), starts the rest, waits,
// and writes the sums back as the gradients. A process with no rows in a step (a last batch
// smaller than the process count) takes part with zeros.
class GradReducer {
public:
    static constexpr std::int64_t kBucketBytes = std::int64_t{1} << 20;

    explicit GradReducer(Communicator& comm) : comm_(comm) {}
    // Starts a step: (re)builds the buckets if the trainable parameters changed.
    void begin(ParamStore& params, double share);
    // A parameter whose gradient is final.
    void ready(Parameter& p);
    // Sums every bucket and writes the sums back. `has_grad` gets, per bucket parameter in
    // order, 1 where this process had a gradient (to be summed with the losses).
    void finish(std::vector<double>& has_grad);
    // After the flags were summed: parameters no process gave a gradient get none.
    void drop_missing(const double* flags);

    std::int64_t bytes_per_step() const { return bytes_; }
    std::size_t buckets() const { return buckets_.size(); }

private:
    struct Slot {
        Parameter* param;
        std::int64_t offset;   // in the bucket's buffer, in elements
        bool in = false;
    };
    struct Bucket {
        DType dtype = DType::f32;
        std::vector<Slot> slots;
        std::int64_t elements = 0;
        std::vector<float> f32;
        std::vector<double> f64;
        std::size_t waiting = 0;   // slots not in yet
    };
    void pack(Bucket& b, Slot& slot);
    void start_ready_buckets();

    Communicator& comm_;
    std::vector<Parameter*> layout_;   // the parameters the buckets were built for
    std::vector<Bucket> buckets_;
    std::map<const Parameter*, std::pair<std::size_t, std::size_t>> where_;   // bucket, slot
    std::size_t next_ = 0;             // the first bucket not started
    double share_ = 1.0;
    std::int64_t bytes_ = 0;
};

}  // namespace wengert::dsl
