// Internal: the processes of a data-parallel run (Note [Data-parallel training] in trainer.cpp),
// behind the few operations the trainer needs: Open MPI when wengert is built with it and
// launched by mpirun, else one process, where every operation is a no-op. The engine knows
// nothing of it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "wengert/optim.hpp"

namespace wengert::dsl {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // "Open MPI 4.1.4" or "one process".
    virtual std::string describe() const = 0;

    // Sums `values` across processes in place; every process gets the same sum.
    virtual void allreduce_sum(std::span<double> values) = 0;
    // Starts summing in place, without waiting; wait_all() finishes every started sum. Every
    // process must start the same sums in the same order.
    virtual void start_allreduce_sum(std::span<float> values) = 0;
    virtual void start_allreduce_sum(std::span<double> values) = 0;
    virtual void wait_all() = 0;
    // Lets started sums move on (MPI progresses them only inside its calls); never waits.
    virtual void progress() {}
    // Rank 0's bytes on every process; the size must agree.
    virtual void broadcast(std::span<std::byte> bytes) = 0;
    // Ends every process with `code` (after an error on this one), never returning.
    [[noreturn]] virtual void abort(int code) = 0;

    // Rank 0's string on every process.
    void broadcast(std::string& text);

    // What the reductions cost: bytes summed, and seconds spent in the calls that wait for sums
    // or move them on (wait_all, progress, allreduce_sum), since start.
    std::int64_t bytes_reduced = 0;
    double wait_seconds = 0;
};

// Rank 0's named tensors on every process (names, dtypes, shapes and values); on rank 0
// `values` is left as it is.
void broadcast_tensors(Communicator& comm, NamedTensors& values);

// The run's processes: set up by init_communicator, one process until then.
Communicator& communicator();

// Called once at the start of main. Under mpirun (OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE in
// the environment) starts MPI, or throws when this wengert was built without it.
void init_communicator(int* argc, char*** argv);
// Ends MPI cleanly, if it was started.
void finalize_communicator();

// Whether this wengert was built with MPI.
bool built_with_mpi();

#ifdef WENGERT_HAVE_MPI
std::unique_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv);
void finalize_mpi();
#endif

}  // namespace wengert::dsl
