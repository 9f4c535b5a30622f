#include "wengert/threading.hpp"

#include <blis.h>
#include <tbb/global_control.h>

#include <cstdlib>
#include <memory>
#include <thread>

namespace wengert {

namespace {

int default_threads() {
    if (const char* env = std::getenv("WENGERT_NUM_THREADS")) {
        int n = std::atoi(env);
        if (n > 0) return n;
    }
    unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

struct ThreadState {
    int n = 0;
    std::unique_ptr<tbb::global_control> control;
    ThreadState() { apply(default_threads()); }
    void apply(int threads) {
        n = threads;
        control = std::make_unique<tbb::global_control>(tbb::global_control::max_allowed_parallelism,
                                                        static_cast<std::size_t>(threads));
        bli_thread_set_num_threads(1);   // Note [Matmul threading]: TBB splits products
    }
};

ThreadState& state() {
    static ThreadState s;
    return s;
}

}  // namespace

void set_num_threads(int n) { state().apply(n < 1 ? 1 : n); }
int max_threads() { return state().n; }

}  // namespace wengert
