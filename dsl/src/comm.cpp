// One process, and the choice between it and MPI (comm.hpp).
#include "comm.hpp"

#include <cstdlib>
#include <sstream>
#include <vector>
#include <stdexcept>

#include <fmt/format.h>

#include "wengert/error.hpp"

namespace wengert::dsl {

namespace {

class SingleProcess final : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    std::string describe() const override { return "one process"; }
    void allreduce_sum(std::span<double>) override {}
    void start_allreduce_sum(std::span<float>) override {}
    void start_allreduce_sum(std::span<double>) override {}
    void wait_all() override {}
    void broadcast(std::span<std::byte>) override {}
    [[noreturn]] void abort(int code) override { std::exit(code); }
};

std::unique_ptr<Communicator>& current() {
    static std::unique_ptr<Communicator> comm = std::make_unique<SingleProcess>();
    return comm;
}

bool mpi_started = false;

const char* launcher_variable() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
        if (std::getenv(name)) return name;
    }
    return nullptr;
}

}  // namespace

void Communicator::broadcast(std::string& text) {
    std::uint64_t n = text.size();
    broadcast(std::as_writable_bytes(std::span<std::uint64_t>(&n, 1)));
    text.resize(n);
    broadcast(std::as_writable_bytes(std::span<char>(text.data(), text.size())));
}

Communicator& communicator() { return *current(); }

void broadcast_tensors(Communicator& comm, NamedTensors& values) {
    if (comm.size() == 1) return;
    const bool root = comm.rank() == 0;
    // one line per tensor: name, dtype, extents (names are dotted identifiers: no spaces)
    std::string header;
    if (root) {
        for (const auto& [name, t] : values) {
            header += name + " " + dtype_name(t.dtype());
            for (std::int64_t d : t.shape()) header += fmt::format(" {}", d);
            header += "\n";
        }
    }
    comm.broadcast(header);
    if (!root) {
        values.clear();
        std::istringstream lines(header);
        std::string line;
        while (std::getline(lines, line)) {
            std::istringstream fields(line);
            std::string name, dtype;
            fields >> name >> dtype;
            std::vector<std::int64_t> dims;
            for (std::int64_t d; fields >> d;) dims.push_back(d);
            values.emplace_back(name, Tensor::empty(Shape(std::span<const std::int64_t>(dims)), parse_dtype(dtype, "broadcast")));
        }
    }
    for (auto& [name, t] : values) {
        if (!t.is_contiguous()) t = t.contiguous();
        auto* bytes = static_cast<std::byte*>(t.raw());
        comm.broadcast(std::span<std::byte>(bytes, static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype())));
    }
}

bool built_with_mpi() {
#ifdef WENGERT_HAVE_MPI
    return true;
#else
    return false;
#endif
}

void init_communicator(int* argc, char*** argv) {
    const char* variable = launcher_variable();
    if (!variable) return;
#ifdef WENGERT_HAVE_MPI
    current() = make_mpi_communicator(argc, argv);
    mpi_started = true;
#else
    (void)argc;
    (void)argv;
    throw Error(std::string("launched by mpirun (") + variable + " is set), but this wengert was built without MPI: install "
                "libopenmpi-dev and rebuild (meson setup -Dmpi=enabled), or run it as one process");
#endif
}

void finalize_communicator() {
#ifdef WENGERT_HAVE_MPI
    if (mpi_started) finalize_mpi();
#endif
    mpi_started = false;
}

}  // namespace wengert::dsl
