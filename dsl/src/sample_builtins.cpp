// sampler(...): how `wengert sample` reads a generative model (Note [Samplers]).
#include <fmt/format.h>

#include <algorithm>

#include "builtins.hpp"

namespace wengert::dsl {

// Note [Samplers]
// A model file says how `wengert sample` draws from it with one top-level declaration,
//     sampling = sampler(decode = decode, image = (28, 28), range = (0, 1), encode = encode)
// (any name; the file has at most one). `decode` is a def from codes z (N, d) to images, its
// argument annotated with the code size (`z: f32[N, 20]`); its first return value holds
// N * H * W [* C] values, which are drawn as H x W grey (C = 1, or no C) or RGB (C = 3)
// images, `range` = (lo, hi) mapping lo to black and hi to white. `encode`, a def from images
// to codes (its first return value: the mean of q(z|x) for a VAE), is what --reconstruct and
// --walk need. Both defs share the trained function's parameters by using the same named
// layers (models/vae.wg).
void install_sampling(std::map<std::string, Value>& t) {
    std::vector<BuiltinParam> sp = {{"decode", std::nullopt}, {"image", std::nullopt}, {"range", Value(TupleValue{Value(0), Value(1)})},
                                    {"encode", Value()}};
    auto f = builtin("sampler", "how `wengert sample` decodes codes into images", sp,
                     [sp](Interpreter&, CallArgs& args, const Signature& sig) {
        auto b = bind_builtin(sig, sp, args);
        auto def_name = [&](const char* key) {
            const Value& v = b[key];
            if (!v.is<std::shared_ptr<Function>>() || !v.get<std::shared_ptr<Function>>()->is_def) {
                throw EvalError(arg_loc(args, sp, key), fmt::format("sampler: {} must name a def, got {}", key, describe(v)));
            }
            return Value(v.get<std::shared_ptr<Function>>()->name);
        };
        auto numbers = [&](const char* key, std::size_t lo_count, std::size_t hi_count) {
            const Value& v = b[key];
            if (!v.is<std::shared_ptr<TupleValue>>()) {
                throw EvalError(arg_loc(args, sp, key), fmt::format("sampler: {} must be a tuple, got {}", key, describe(v)));
            }
            const TupleValue& t = *v.get<std::shared_ptr<TupleValue>>();
            if (t.size() < lo_count || t.size() > hi_count || !std::all_of(t.begin(), t.end(), [](const Value& e) { return e.is_number(); })) {
                throw EvalError(arg_loc(args, sp, key), fmt::format("sampler: {} must hold {} numbers, got {}", key,
                                                                    lo_count == hi_count ? fmt::format("{}", lo_count)
                                                                                         : fmt::format("{} to {}", lo_count, hi_count),
                                                                    describe(v)));
            }
            return t;
        };
        auto r = std::make_shared<Record>();
        r->kind = "sampler";
        r->name = "sampler";
        r->loc = args.loc;
        r->fields["decode"] = def_name("decode");
        r->fields["encode"] = b["encode"].is_none() ? Value() : def_name("encode");
        const TupleValue image = numbers("image", 2, 3);
        for (std::size_t i = 0; i < image.size(); ++i) {
            if (!image[i].is<std::int64_t>() || image[i].get<std::int64_t>() < 1 || (i == 2 && image[i].get<std::int64_t>() != 1 && image[i].get<std::int64_t>() != 3)) {
                throw EvalError(arg_loc(args, sp, "image"), fmt::format("sampler: image must be (height, width) or (height, width, "
                                                                        "channels) with positive sizes and 1 or 3 channels, got {}",
                                                                        describe(b["image"])));
            }
        }
        const TupleValue range = numbers("range", 2, 2);
        if (!(range[0].number() < range[1].number())) {
            throw EvalError(arg_loc(args, sp, "range"), fmt::format("sampler: range must be (lo, hi) with lo < hi, got {}", describe(b["range"])));
        }
        r->fields["image"] = b["image"];
        r->fields["range"] = b["range"];
        return Value(r);
    });
    define_builtin(t, "sampler") = Value(f);
}

}  // namespace wengert::dsl
