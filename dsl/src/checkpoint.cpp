#include "checkpoint.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "wengert/io.hpp"
#include "wengert/random.hpp"

namespace wengert::dsl {

namespace fs = std::filesystem;

std::string text_hash(const std::string& text) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return fmt::format("{:016x}", h);
}

namespace {

Json shape_json(const Shape& s) {
    Json::Array a;
    for (auto d : s) a.push_back(Json(d));
    return Json(std::move(a));
}

// The files the manifest in `dir` names (none when it is missing or unreadable).
std::vector<std::string> named_files(const std::string& dir) {
    std::vector<std::string> files;
    std::ifstream in(fs::path(dir) / "manifest.json");
    if (!in) return files;
    std::stringstream ss;
    ss << in.rdbuf();
    try {
        Json m = Json::parse(ss.str());
        for (const char* key : {"params_file", "optimizer_file"}) {
            if (m.contains(key) && m.at(key).is_string()) files.push_back(m.at(key).as_string());
        }
    } catch (const Error&) {
    }
    return files;
}

}  // namespace

void save_checkpoint(const std::string& dir, const CheckpointInfo& info, const ParamStore& params, const Optimizer* optimizer) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw IOError(dir, fmt::format("cannot create the checkpoint folder: {}", ec.message()));
    std::string manifest_path = (fs::path(dir) / "manifest.json").string();
    // files of the checkpoint being replaced, removed once the new manifest is in place
    std::vector<std::string> old_files = named_files(dir);

    std::string params_file = fmt::format("params-{:08d}.npz", info.step);
    std::string optimizer_file = fmt::format("optimizer-{:08d}.npz", info.step);
    NamedTensors values;
    Json::Array param_list;
    for (const Parameter* p : params.all()) {
        values.emplace_back(p->name, p->value);
        Json entry;
        entry["name"] = p->name;
        entry["shape"] = shape_json(p->value.shape());
        entry["dtype"] = dtype_name(p->value.dtype());
        param_list.push_back(entry);
    }
    save_npz((fs::path(dir) / params_file).string(), values);
    if (optimizer) save_npz((fs::path(dir) / optimizer_file).string(), optimizer->state());

    Json m;
    m["format"] = "wengert-checkpoint";
    m["version"] = 1;
    m["run_id"] = info.run_id;
    m["function"] = info.function;
    m["batch"] = info.batch;
    m["model"] = info.model;
    m["model_hash"] = info.model_hash;
    if (!info.model_structure.empty()) m["model_structure"] = info.model_structure;
    if (!info.control.is_null()) m["control"] = info.control;
    m["step"] = info.step;
    m["epoch"] = info.epoch;
    if (info.steps_per_epoch > 0) m["steps_per_epoch"] = info.steps_per_epoch;
    if (info.total_steps > 0) m["total_steps"] = info.total_steps;
    m["seed"] = Json(static_cast<std::uint64_t>(info.seed));
    m["dtype"] = info.dtype;
    m["rng"]["seed"] = fmt::format("{}", info.rng_seed);
    m["rng"]["offset"] = fmt::format("{}", info.rng_offset);
    m["optimizer"] = info.optimizer;
    m["epoch_examples"] = info.epoch_examples;
    for (const auto& [name, sum] : info.epoch_sums) m["epoch_sums"][name] = sum;
    m["params_file"] = params_file;
    if (optimizer) m["optimizer_file"] = optimizer_file;
    m["params"] = Json(std::move(param_list));
    write_file_atomic(manifest_path, m.dump() + "\n");

    for (const auto& f : old_files) {
        if (f != params_file && f != optimizer_file) fs::remove(fs::path(dir) / f, ec);
    }
}

LoadedCheckpoint load_checkpoint(const std::string& dir) {
    std::string manifest_path = (fs::path(dir) / "manifest.json").string();
    if (!fs::is_directory(dir)) throw IOError(dir, "no such checkpoint folder");
    std::ifstream in(manifest_path);
    if (!in) throw IOError(manifest_path, "not found: this folder holds no checkpoint");
    std::stringstream ss;
    ss << in.rdbuf();
    LoadedCheckpoint out;
    try {
        Json m = Json::parse(ss.str());
        if (!m.contains("format") || m.at("format").as_string() != "wengert-checkpoint") {
            throw IOError(manifest_path, "not a wengert checkpoint manifest (no \"format\": \"wengert-checkpoint\")");
        }
        if (m.at("version").as_int() != 1) {
            throw IOError(manifest_path, fmt::format("checkpoint version {} is not supported (this wengert reads version 1)",
                                                     m.at("version").as_int()));
        }
        // a resumed run indexes the epoch's batches with these
        auto count = [&](const char* key) {
            std::int64_t n = m.at(key).as_int();
            if (n < 0) throw IOError(manifest_path, fmt::format("corrupt manifest: \"{}\" is {}, which is not a count", key, n));
            return n;
        };
        CheckpointInfo& info = out.info;
        if (m.contains("run_id")) info.run_id = m.at("run_id").as_string();
        if (m.contains("function")) info.function = m.at("function").as_string();
        if (m.contains("batch")) info.batch = count("batch");
        info.model = m.at("model").as_string();
        info.model_hash = m.at("model_hash").as_string();
        if (m.contains("model_structure")) info.model_structure = m.at("model_structure").as_string();
        if (m.contains("control")) info.control = m.at("control");
        info.step = count("step");
        info.epoch = count("epoch");
        if (m.contains("steps_per_epoch")) info.steps_per_epoch = count("steps_per_epoch");
        if (m.contains("total_steps")) info.total_steps = count("total_steps");
        // a seed is a count below 2^64 (a cast of any other double is undefined: found by fuzzing)
        const double seed = m.at("seed").as_number();
        if (!(seed >= 0.0 && seed < 18446744073709551616.0) || seed != std::floor(seed)) {
            throw IOError(manifest_path, fmt::format("corrupt manifest: \"seed\" is {}, which is not a seed", seed));
        }
        info.seed = static_cast<std::uint64_t>(seed);
        info.dtype = m.at("dtype").as_string();
        info.rng_seed = std::stoull(m.at("rng").at("seed").as_string());
        info.rng_offset = std::stoull(m.at("rng").at("offset").as_string());
        info.optimizer = m.at("optimizer").as_string();
        if (m.contains("epoch_examples")) info.epoch_examples = count("epoch_examples");
        if (m.contains("epoch_sums")) {
            for (const auto& [name, sum] : m.at("epoch_sums").as_object()) info.epoch_sums.emplace_back(name, sum.as_number());
        }
        out.params_path = (fs::path(dir) / m.at("params_file").as_string()).string();
        out.params = load_npz(out.params_path);
        if (m.contains("optimizer_file")) {
            out.optimizer_path = (fs::path(dir) / m.at("optimizer_file").as_string()).string();
            out.optimizer_state = load_npz(out.optimizer_path);
        } else if (!info.optimizer.empty()) {
            throw IOError(manifest_path, fmt::format("corrupt manifest: the run used optimizer '{}' but no \"optimizer_file\" "
                                                     "is named", info.optimizer));
        }
        // the manifest is checked whole against the parameter file it names
        if (m.contains("params")) {
            std::vector<std::string> listed, problems;
            for (const Json& entry : m.at("params").as_array()) {
                const std::string& name = entry.at("name").as_string();
                listed.push_back(name);
                auto it = std::find_if(out.params.begin(), out.params.end(), [&](const auto& nt) { return nt.first == name; });
                if (it == out.params.end()) {
                    problems.push_back(fmt::format("{} is listed but not in the file", name));
                    continue;
                }
                std::vector<std::int64_t> dims;
                for (const Json& d : entry.at("shape").as_array()) dims.push_back(d.as_int());
                Shape listed_shape{std::span<const std::int64_t>(dims)};
                if (!(listed_shape == it->second.shape())) {
                    problems.push_back(fmt::format("{} is listed as {} but the file has {}", name, listed_shape.str(),
                                                   it->second.shape().str()));
                }
                if (entry.at("dtype").as_string() != dtype_name(it->second.dtype())) {
                    problems.push_back(fmt::format("{} is listed as {} but the file has {}", name, entry.at("dtype").as_string(),
                                                   dtype_name(it->second.dtype())));
                }
            }
            for (const auto& [name, _] : out.params) {
                if (std::find(listed.begin(), listed.end(), name) == listed.end()) {
                    problems.push_back(fmt::format("{} is in the file but not listed", name));
                }
            }
            if (!problems.empty()) {
                throw IOError(out.params_path, fmt::format("does not match its manifest: {}", fmt::join(problems, "; ")));
            }
        }
    } catch (const IOError&) {
        throw;
    } catch (const std::exception& e) {
        throw IOError(manifest_path, fmt::format("corrupt manifest: {}", e.what()));
    }
    return out;
}

FolderLock::FolderLock(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw IOError(dir, fmt::format("cannot create the checkpoint folder: {}", ec.message()));
    std::string path = (fs::path(dir) / ".lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) throw IOError(path, fmt::format("cannot open the folder's lock file: {}", std::strerror(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        char pid[32] = {};
        ssize_t n = ::pread(fd_, pid, sizeof pid - 1, 0);
        ::close(fd_);
        fd_ = -1;
        if (err == EWOULDBLOCK) {
            std::string who = n > 0 ? fmt::format(" (process {})", std::string(pid, static_cast<std::size_t>(n))) : "";
            throw FolderInUse(dir, fmt::format("another run{} is training into this folder; wait for it, or give this run "
                                               "another --checkpoint folder",
                                               who));
        }
        throw IOError(path, fmt::format("cannot lock the folder: {}", std::strerror(err)));
    }
    std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
        // the lock holds without the note of who holds it
    }
}

FolderLock::~FolderLock() {
    if (fd_ >= 0) ::close(fd_);   // releases the lock
}

bool has_checkpoint(const std::string& dir) {
    std::error_code ec;
    return fs::exists(fs::path(dir) / "manifest.json", ec);
}

namespace {

bool is_checkpoint_file(const std::string& name) {
    auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
    bool npz = name.size() > 4 && name.compare(name.size() - 4, 4, ".npz") == 0;
    return npz && (starts("params-") || starts("optimizer-"));
}

}  // namespace

std::string best_checkpoint_dir(const std::string& dir) { return (fs::path(dir) / "best").string(); }

void remove_checkpoint(const std::string& dir) {
    if (has_checkpoint(best_checkpoint_dir(dir))) remove_checkpoint(best_checkpoint_dir(dir));
    std::vector<std::string> files = named_files(dir);
    std::error_code ec;
    fs::remove(fs::path(dir) / "manifest.json", ec);
    if (ec) throw IOError((fs::path(dir) / "manifest.json").string(), fmt::format("cannot remove: {}", ec.message()));
    for (const auto& f : files) fs::remove(fs::path(dir) / f, ec);
    clean_checkpoint_folder(dir);
}

void clean_checkpoint_folder(const std::string& dir) {
    std::error_code ec;
    if (fs::is_directory(best_checkpoint_dir(dir), ec)) clean_checkpoint_folder(best_checkpoint_dir(dir));
    std::vector<std::string> named = named_files(dir);
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        std::string name = entry.path().filename().string();
        bool temporary = name.find(".tmp-") != std::string::npos;
        bool orphan = is_checkpoint_file(name) && std::find(named.begin(), named.end(), name) == named.end();
        if (temporary || orphan) {
            std::error_code rm;
            fs::remove(entry.path(), rm);
        }
    }
}

std::string new_run_id() {
    auto now = std::chrono::system_clock::now().time_since_epoch().count();
    return text_hash(fmt::format("{}-{}", now, ::getpid()));
}

void assign_params(ParamStore& params, const NamedTensors& values, const std::string& source) {
    std::vector<std::string> missing, extra, misshapen, wrong_dtype;
    std::set<std::string> seen;
    for (const auto& [name, t] : values) {
        seen.insert(name);
        Parameter* p = params.find(name);
        if (!p) {
            extra.push_back(name);
        } else if (!is_floating(t.dtype())) {
            // an integer or boolean array is not a parameter's value: converting it would hide a mix-up
            wrong_dtype.push_back(fmt::format("{} (the file holds {}; parameters are f32 or f64)", name, dtype_name(t.dtype())));
        } else if (!(p->value.shape() == t.shape())) {
            misshapen.push_back(fmt::format("{} (model {}, file {})", name, p->value.shape().str(), t.shape().str()));
        }
    }
    for (const Parameter* p : params.all()) if (!seen.count(p->name)) missing.push_back(p->name);
    if (!missing.empty() || !extra.empty() || !misshapen.empty() || !wrong_dtype.empty()) {
        std::string msg = "parameters do not match the model:";
        if (!missing.empty()) msg += fmt::format("\n  missing from the file: {}", fmt::join(missing, ", "));
        if (!extra.empty()) msg += fmt::format("\n  not in the model: {}", fmt::join(extra, ", "));
        if (!misshapen.empty()) msg += fmt::format("\n  wrong shape: {}", fmt::join(misshapen, ", "));
        if (!wrong_dtype.empty()) msg += fmt::format("\n  not floating: {}", fmt::join(wrong_dtype, ", "));
        throw IOError(source, msg);
    }
    for (const auto& [name, t] : values) {
        Parameter* p = params.find(name);
        p->value.copy_from(t.to(p->value.dtype()));
    }
}

PartialLoad assign_params_partial(ParamStore& params, const NamedTensors& values) {
    PartialLoad out;
    std::set<std::string> seen;
    for (const auto& [name, t] : values) {
        seen.insert(name);
        Parameter* p = params.find(name);
        if (!p) {
            out.skipped.push_back(fmt::format("{} (not in the model)", name));
        } else if (!is_floating(t.dtype())) {
            out.skipped.push_back(fmt::format("{} (the file holds {})", name, dtype_name(t.dtype())));
        } else if (!(p->value.shape() == t.shape())) {
            out.skipped.push_back(fmt::format("{} (model {}, file {})", name, p->value.shape().str(), t.shape().str()));
        } else {
            p->value.copy_from(t.to(p->value.dtype()));
            out.loaded.push_back(name);
        }
    }
    for (const Parameter* p : params.all()) if (!seen.count(p->name)) out.left.push_back(p->name);
    return out;
}

NamedTensors load_init_params(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return load_checkpoint(path).params;
    return load_npz(path);
}

}  // namespace wengert::dsl
