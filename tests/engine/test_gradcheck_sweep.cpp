// The registry sweep: every registered op has a case, and every case passes.
#include <fmt/format.h>

#include <set>

#include "ops/cases.hpp"

using namespace wengert;
using namespace wengert::test;

TEST_CASE("every registered op has a gradient check or, without a gradient, a forward case", "[registry]") {
    std::set<std::string> with_grad, with_forward;
    for (const auto& c : case_list().grad) with_grad.insert(c.op);
    for (const auto& c : case_list().forward) with_forward.insert(c.op);
    // straight_through's gradient is a definition (the identity), not the derivative of its
    // piecewise-constant forward, which finite differences would see as 0: its forward case
    // checks the gradient analytically.
    const std::set<std::string> defined_gradient = {"straight_through"};
    for (const auto& op : registry().all()) {
        INFO("op " << op.signature());
        if (op.differentiable && !defined_gradient.count(op.name)) CHECK(with_grad.count(op.name) == 1);
        else CHECK(with_forward.count(op.name) == 1);
    }
    for (const auto& name : with_grad) {
        INFO("gradient case for an op the registry does not know: " << name);
        CHECK(registry().find(name) != nullptr);
    }
    for (const auto& name : with_forward) {
        INFO("forward case for an op the registry does not know: " << name);
        CHECK(registry().find(name) != nullptr);
    }
}

TEST_CASE("gradient checks in f64 for every case", "[gradcheck]") {
    for (const auto& c : case_list().grad) {
        DYNAMIC_SECTION(c.op << ": " << c.label) {
            GradCheckResult r = gradcheck(c.f, c.inputs, c.needs_grad, c.options);
            INFO(r.message);
            CHECK(r.ok);
        }
    }
}

TEST_CASE("forward cases for ops without a gradient", "[forward]") {
    for (const auto& c : case_list().forward) {
        DYNAMIC_SECTION(c.op << ": " << c.label) { c.check(); }
    }
}
