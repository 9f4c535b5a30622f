// `wengert --version`: the version, the build type, the gemm kernels and the thread count.
#include <catch2/catch.hpp>

#include <string>

#include "support.hpp"

using namespace wengert::dsl::testing;

TEST_CASE("--version names the build type and the thread count", "[dsl][cli]") {
    CliResult plain = run_wengert({"--version"});
    REQUIRE(plain.exit_code == 0);
    const std::string first_line = plain.out.substr(0, plain.out.find('\n'));
    CHECK(first_line.rfind("wengert 0.", 0) == 0);
    CHECK(first_line.ends_with(std::string(" (") + WENGERT_BUILD_TYPE + " build)"));
    CHECK(plain.out.find("\ngemm kernels: ") != std::string::npos);
    CHECK(plain.out.find("\nthreads: ") != std::string::npos);
}
