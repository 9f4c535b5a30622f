// The run's processes through Open MPI (comm.hpp): MPI_COMM_WORLD, sums with MPI_Iallreduce in
// the order they are started, broadcasts from rank 0.
// the C API only: Open MPI's C++ bindings do not compile cleanly with -Wcast-function-type
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "comm.hpp"
#include "wengert/error.hpp"

namespace wengert::dsl {

namespace {

void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, text, &n);
    throw Error(fmt::format("{} failed: {}", what, std::string(text, static_cast<std::size_t>(n))));
}

class Mpi final : public Communicator {
public:
    Mpi(int* argc, char*** argv) {
        int provided = 0;
        check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        // errors come back as codes, so that they are reported as wengert's, not MPI's abort
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int n = 0;
        MPI_Get_library_version(version, &n);
        std::string v(version, static_cast<std::size_t>(n));
        library_ = v.substr(0, v.find(','));
    }
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string describe() const override { return fmt::format("{} ({} processes)", library_, size_); }

    void allreduce_sum(std::span<double> values) override {
        Clock start = now();
        check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
        wait_seconds += seconds_since(start);
        bytes_reduced += static_cast<std::int64_t>(values.size_bytes());
    }
    void start_allreduce_sum(std::span<float> values) override { start(values.data(), values.size(), MPI_FLOAT, values.size_bytes()); }
    void start_allreduce_sum(std::span<double> values) override { start(values.data(), values.size(), MPI_DOUBLE, values.size_bytes()); }
    void wait_all() override {
        if (requests_.empty()) return;
        Clock t = now();
        check(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
        wait_seconds += seconds_since(t);
        requests_.clear();
    }
    void broadcast(std::span<std::byte> bytes) override {
        // in pieces below 2^31 bytes: MPI counts are ints
        constexpr std::size_t kPiece = std::size_t{1} << 30;
        for (std::size_t at = 0; at < bytes.size(); at += kPiece) {
            int n = static_cast<int>(std::min(kPiece, bytes.size() - at));
            check(MPI_Bcast(bytes.data() + at, n, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
        }
    }
    [[noreturn]] void abort(int code) override {
        // Exiting without MPI_Finalize makes mpirun end every other process and exit with this
        // code. Not MPI_Abort: Open MPI 4.1's mpirun can crash (SIGSEGV in its help-message
        // aggregation) when a process aborts while others are being torn down.
        std::fflush(stdout);
        std::fflush(stderr);
        std::_Exit(code);
    }

private:
    using Clock = std::chrono::steady_clock::time_point;
    static Clock now() { return std::chrono::steady_clock::now(); }
    static double seconds_since(Clock t) { return std::chrono::duration<double>(now() - t).count(); }

    void start(void* data, std::size_t count, MPI_Datatype type, std::size_t bytes) {
        if (count > static_cast<std::size_t>(INT32_MAX)) throw Error("a gradient bucket of more than 2^31 elements");
        MPI_Request r;
        check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), type, MPI_SUM, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
        requests_.push_back(r);
        bytes_reduced += static_cast<std::int64_t>(bytes);
    }

    int rank_ = 0, size_ = 1;
    std::string library_;
    std::vector<MPI_Request> requests_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(int* argc, char*** argv) { return std::make_unique<Mpi>(argc, argv); }

void finalize_mpi() { MPI_Finalize(); }

}  // namespace wengert::dsl
