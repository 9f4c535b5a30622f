// What a training run says as it goes: the bar, the epoch lines and the metrics log (reporter.hpp).
#include "reporter.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "progress.hpp"
#include "wengert/io.hpp"
#include "wengert/json.hpp"

namespace wengert::dsl {

namespace fs = std::filesystem;

namespace {

std::string format_duration(double seconds) {
    auto s = static_cast<std::int64_t>(seconds + 0.5);
    return s >= 3600 ? fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60) : fmt::format("{}:{:02d}", s / 60, s % 60);
}

// Keeps the records of the log at `path` up to step `step`: every step record, and every
// epoch record, at or before it, but a partial epoch record at it (where an earlier run
// stopped; an uninterrupted run writes none). Rewritten atomically.
void truncate_log(const std::string& path, std::int64_t step) {
    std::ifstream in(path);
    if (!in) throw IOError(path, fmt::format("cannot read the metrics log: {}", std::strerror(errno)));
    std::string kept, line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        Json rec;
        try {
            rec = Json::parse(line);
        } catch (const Error&) {
            break;   // a record cut short by a crash: nothing after it was written whole
        }
        if (!rec.contains("step") || !rec.at("step").is_number()) continue;
        std::int64_t at = rec.at("step").as_int();
        bool partial = rec.contains("partial") && rec.at("partial").is_bool() && rec.at("partial").as_bool();
        if (at > step || (at == step && partial)) continue;
        kept += line;
        kept += '\n';
    }
    write_file_atomic(path, kept);
}

}  // namespace

Reporter::Reporter(const RunPlan& plan, const std::string& log, bool resume, bool progress)
    : plan_(plan), log_path_(log), tty_(progress && ::isatty(STDERR_FILENO)) {
    if (log.empty()) return;
    fs::path lp(log);
    std::error_code ec;
    if (lp.has_parent_path()) fs::create_directories(lp.parent_path(), ec);
    if (ec) throw IOError(log, fmt::format("cannot create the metrics log's folder: {}", ec.message()));
    if (resume && fs::exists(lp, ec)) truncate_log(log, plan.start_step);
    log_.emplace(log, resume ? std::ios::app : std::ios::trunc);
    if (!*log_) throw IOError(log, fmt::format("cannot open the metrics log for writing: {}", std::strerror(errno)));
}

void Reporter::start() const {
    fmt::print(stderr, "training {} on {} ({} examples, batch {}, {} steps per epoch, {} steps)\n", plan_.target, plan_.data,
               plan_.examples, plan_.batch, plan_.steps_per_epoch, plan_.total_steps);
}

void Reporter::begin_epoch() { epoch_start_ = Clock::now(); }

void Reporter::step(const StepReport& r) {
    ++steps_this_run_;
    Json rec;
    rec["step"] = r.step + 1;
    rec["epoch"] = r.step / plan_.steps_per_epoch + 1;
    rec["lr"] = r.lr;
    for (const auto& [label, lr] : r.group_lrs) rec["group_lr"][label] = lr;
    for (const auto& [name, x] : r.schedules) {
        if (!rec.contains("schedules") || !rec.at("schedules").contains(name)) rec["schedules"][name] = x;
    }
    rec["loss"] = r.loss;
    for (const auto& [name, x] : r.losses) rec["losses"][name] = x;
    for (const auto& [name, x] : r.metrics) rec["metrics"][name] = x;
    if (log_) *log_ << rec.dump() << '\n';
    if (tty_) draw_bar(r);
    epoch_seconds_ = std::chrono::duration<double>(Clock::now() - epoch_start_).count();
}

// Note [A bar that fits]: the loss terms, then the ETA, the metrics and the speed go as the width requires
void Reporter::draw_bar(const StepReport& r) {
    const std::int64_t per_epoch = plan_.steps_per_epoch, total = plan_.total_steps;
    const double per_step = std::chrono::duration<double>(Clock::now() - run_start_).count() / static_cast<double>(steps_this_run_);
    std::vector<ProgressField> fields{
        {fmt::format("epoch {}/{}  step {}/{}", r.step / per_epoch + 1, (total + per_epoch - 1) / per_epoch, r.step % per_epoch + 1, per_epoch), 0}};
    for (const auto& [name, mean] : r.loss_means) fields.push_back({fmt::format("{} {:.4f}", name, mean), fields.size() == 1 ? 1 : 3});
    for (const auto& [name, mean] : r.metric_means) fields.push_back({fmt::format("{} {:.4f}", name, mean), 4});
    const double ex_s = static_cast<double>(r.epoch_examples) / std::max(1e-9, std::chrono::duration<double>(Clock::now() - epoch_start_).count());
    fields.push_back({fmt::format("{:.0f} ex/s", ex_s), 5});
    fields.push_back({fmt::format("ETA {}", format_duration(per_step * static_cast<double>(total - r.step - 1))), 2});
    fmt::print(stderr, "\r\033[K{}", fit_progress(fields, terminal_width(STDERR_FILENO)));
}

void Reporter::epoch(const EpochReport& r) {
    const double secs = epoch_seconds_;
    std::string line = fmt::format("epoch {}{}  loss {:.4f}", r.epoch,
                                   r.partial ? fmt::format(" (stopped after {} of {} steps)", *r.partial, plan_.steps_per_epoch) : "",
                                   r.loss);
    Json rec;
    rec["event"] = "epoch";
    rec["epoch"] = r.epoch;
    if (r.partial) rec["partial"] = true;
    rec["step"] = r.step;
    rec["seconds"] = secs;
    rec["train"]["loss"] = r.loss;
    for (const auto* terms : {&r.losses, &r.metrics}) {
        for (const auto& [name, v] : *terms) {
            line += fmt::format("  {} {:.4f}", name, v);
            rec["train"][name] = v;
        }
    }
    if (r.eval) {
        line += "  | eval";
        rec["eval"]["loss"] = r.eval->objective;
        for (const auto* terms : {&r.eval->losses, &r.eval->metrics}) {
            for (const auto& [name, v] : *terms) {
                line += fmt::format("  {} {:.4f}", name, v);
                rec["eval"][name] = v;
            }
        }
    }
    if (r.lr_reduced_to) rec["lr_reduced_to"] = *r.lr_reduced_to;
    if (r.best) {
        rec["best"] = true;
        line += "  (best)";
    }
    if (r.stopped_early) rec["stopped_early"] = true;
    line += fmt::format("  ({:.1f} s, {:.0f} ex/s)", secs, static_cast<double>(r.examples) / std::max(secs, 1e-9));
    if (tty_) fmt::print(stderr, "\r\033[K");
    fmt::print("{}\n", line);
    for (const auto& n : r.notices) fmt::print("  {}\n", n);
    std::fflush(stdout);
    if (log_) *log_ << rec.dump() << '\n';
}

// A failed write (a full disk) is an error, not a shorter log.
void Reporter::flush() {
    if (!log_) return;
    log_->flush();
    if (!*log_) throw IOError(log_path_, fmt::format("cannot write the metrics log: {}", errno ? std::strerror(errno) : "write failed"));
}

}  // namespace wengert::dsl
