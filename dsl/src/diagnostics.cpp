#include "wengert/dsl/diagnostics.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "wengert/registry.hpp"

namespace wengert::dsl {

const char* severity_name(Severity severity) {
    switch (severity) {
        case Severity::error: return "error";
        case Severity::warning: return "warning";
        case Severity::note: return "note";
    }
    return "?";
}

namespace {

bool is_continuation_byte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// Source lines longer than this many bytes are shown as a window around the column.
constexpr std::size_t kMaxExcerpt = 160;

void append_caret(std::string& out, std::string_view line, const Location& loc);

std::string headline(const Location& loc, const char* severity, const std::string& message) {
    if (loc.file == nullptr) return fmt::format("{}: {}", severity, message);
    if (loc.line < 1) return fmt::format("{}: {}: {}", loc.file->path(), severity, message);
    return fmt::format("{}:{}:{}: {}: {}", loc.file->path(), loc.line, loc.column, severity, message);
}

// The source line, then a caret under loc.column, underlined with '~' up to loc.length
// characters (never past the end of the line, except for the caret itself, which may sit
// just after the last character).
void append_excerpt(std::string& out, const Location& loc) {
    if (loc.file == nullptr || loc.line < 1 || loc.line > loc.file->line_count()) return;
    std::string_view line = loc.file->line(loc.line);
    Location at = loc;
    if (line.size() > kMaxExcerpt) {
        // a window of the line around the column, so that a long line (a 500 KB one) is not
        // printed whole with every error on it
        std::size_t caret = 0;
        for (int column = 1; caret < line.size() && column < loc.column; ++caret) {
            if (!is_continuation_byte(line[caret])) ++column;
        }
        std::size_t begin = caret > kMaxExcerpt / 2 ? caret - kMaxExcerpt / 2 : 0;
        while (begin > 0 && is_continuation_byte(line[begin])) --begin;
        std::size_t end = std::min(line.size(), begin + kMaxExcerpt);
        while (end < line.size() && is_continuation_byte(line[end])) ++end;
        std::string window = begin > 0 ? "..." : "";
        at.column = count_chars(line.substr(begin, caret - begin)) + 1 + (begin > 0 ? 3 : 0);
        window.append(line.substr(begin, end - begin));
        if (end < line.size()) window += "...";
        out.append(window);
        out += '\n';
        append_caret(out, window, at);
        return;
    }
    out.append(line);
    out += '\n';
    append_caret(out, line, at);
}

// The caret line under `line` for loc.column (and loc.length).
void append_caret(std::string& out, std::string_view line, const Location& loc) {
    int column = 1;
    std::size_t i = 0;
    for (; i < line.size() && column < loc.column; ++i) {
        if (is_continuation_byte(line[i])) continue;
        out += line[i] == '\t' ? '\t' : ' ';
        ++column;
    }
    out += '^';
    int remaining_chars = count_chars(line.substr(i)) - 1;
    int tildes = std::min(loc.length - 1, remaining_chars);
    if (tildes > 0) out.append(static_cast<std::size_t>(tildes), '~');
    out += '\n';
}

std::string did_you_mean(const std::vector<std::string>& suggestions) {
    std::string text = "did you mean ";
    for (std::size_t i = 0; i < suggestions.size(); ++i) {
        if (i > 0) text += i + 1 == suggestions.size() ? " or " : ", ";
        text += fmt::format("'{}'", suggestions[i]);
    }
    return text + "?";
}

}  // namespace

std::string format_headline(const Diagnostic& diagnostic) {
    return headline(diagnostic.loc, severity_name(diagnostic.severity), diagnostic.message);
}

std::string format_diagnostic(const Diagnostic& diagnostic) {
    std::string out = format_headline(diagnostic) + '\n';
    append_excerpt(out, diagnostic.loc);
    for (const Note& note : diagnostic.notes) {
        out += headline(note.loc, severity_name(Severity::note), note.message) + '\n';
        append_excerpt(out, note.loc);
    }
    if (!diagnostic.suggestions.empty()) out += "help: " + did_you_mean(diagnostic.suggestions) + '\n';
    return out;
}

Diagnostic& DiagnosticSink::report(Diagnostic diagnostic) {
    diagnostics_.push_back(std::move(diagnostic));
    return diagnostics_.back();
}

Diagnostic& DiagnosticSink::error(Location loc, std::string message) {
    return report(Diagnostic{Severity::error, loc, std::move(message), {}, {}});
}

Diagnostic& DiagnosticSink::report(const EvalError& e, const MessageFilter& filter) {
    std::string message = filter ? filter(e.what()) : std::string(e.what());
    auto [it, first] = evaluated_.try_emplace({e.loc.file, e.loc.line, e.loc.column, message}, diagnostics_.size());
    if (!first) return diagnostics_[it->second];
    return report(Diagnostic{Severity::error, e.loc, std::move(message), e.notes, e.suggestions});
}

void DiagnosticSink::discard_from(std::size_t count) {
    if (count >= diagnostics_.size()) return;
    diagnostics_.resize(count);
    std::erase_if(evaluated_, [count](const auto& entry) { return entry.second >= count; });
}

std::size_t DiagnosticSink::error_count() const {
    return static_cast<std::size_t>(std::count_if(diagnostics_.begin(), diagnostics_.end(),
                                                  [](const Diagnostic& d) { return d.severity == Severity::error; }));
}

std::string DiagnosticSink::format_all() const {
    std::string out;
    std::size_t shown = 0, hidden = 0;
    for (const Diagnostic& diagnostic : diagnostics_) {
        if (shown == kMaxShownDiagnostics) {
            ++hidden;
            continue;
        }
        out += format_diagnostic(diagnostic);
        ++shown;
    }
    if (hidden > 0) out += fmt::format("... and {} more (the first {} are shown)\n", hidden, kMaxShownDiagnostics);
    return out;
}

std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates) {
    std::size_t max_distance = std::max<std::size_t>(1, name.size() / 3);
    std::size_t best = max_distance + 1;
    std::vector<std::string> closest;
    for (const std::string& candidate : candidates) {
        if (candidate == name) continue;
        // every edit changes the length by at most one: names too long or short are not close
        std::size_t gap = candidate.size() > name.size() ? candidate.size() - name.size() : name.size() - candidate.size();
        if (gap > max_distance || gap > best) continue;
        std::size_t distance = wengert::edit_distance(name, candidate);   // Note [Edit distance]
        if (distance >= name.size() || distance > max_distance || distance > best) continue;
        if (distance < best) {
            best = distance;
            closest.clear();
        }
        closest.push_back(candidate);
    }
    std::sort(closest.begin(), closest.end());
    closest.erase(std::unique(closest.begin(), closest.end()), closest.end());
    return closest;
}

}  // namespace wengert::dsl
