// wengert language: diagnostics are values with fields, formatted once.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <tuple>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "wengert/dsl/source.hpp"

namespace wengert::dsl {

enum class Severity { error, warning, note };

const char* severity_name(Severity severity);

// A secondary message attached to a diagnostic, usually pointing elsewhere in the source
// ("to match this '('").
struct Note {
    Location loc;
    std::string message;
};

struct Diagnostic {
    Severity severity = Severity::error;
    Location loc;
    std::string message;
    std::vector<Note> notes;
    // Names close to the one that was not understood, printed as "did you mean 'a' or 'b'?".
    std::vector<std::string> suggestions;
};

// The compiler-style rendering, every line ending in '\n':
//
//   model.wg:12:15: error: expected ')' after arguments
//       h = relu(dense(256)(x)
//                             ^
//   model.wg:12:13: note: to match this '('
//       h = relu(dense(256)(x)
//               ^
//   help: did you mean 'dense'?
//
// The caret line keeps the source line's tabs so the caret stays under the column; a known
// length is underlined as `^~~~`. A line longer than 160 bytes is shown as a window of it
// around the column, with "..." where it was cut. A location without a file prints no position or source.
std::string format_diagnostic(const Diagnostic& diagnostic);

// Only the first line of format_diagnostic, without the line break.
std::string format_headline(const Diagnostic& diagnostic);

// An error while evaluating, at a place in the source, thrown where it is found and turned
// into a diagnostic (DiagnosticSink::report) where it is caught: the CLI formats it like a
// compiler's.
class EvalError : public std::runtime_error {
public:
    EvalError(Location loc, const std::string& message, std::vector<std::string> suggestions = {})
        : std::runtime_error(message), loc(loc), suggestions(std::move(suggestions)) {}
    Location loc;
    std::vector<std::string> suggestions;
    std::vector<Note> notes;
};

// Rewrites a message before it is reported (`wengert check` prints sizes symbolically).
using MessageFilter = std::function<std::string(const std::string&)>;

// Collects diagnostics in the order they are reported.
class DiagnosticSink {
public:
    // The returned reference is valid until the next report: use it to add notes and
    // suggestions right away.
    Diagnostic& report(Diagnostic diagnostic);
    Diagnostic& error(Location loc, std::string message);
    // The one conversion of an EvalError: its place, its message (through `filter` when
    // given), its suggestions and notes. The same error at the same place is reported once
    // (`wengert check` meets a call the static check reported when it runs the model).
    Diagnostic& report(const EvalError& e, const MessageFilter& filter = {});

    const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }
    std::size_t error_count() const;
    // Drops every diagnostic reported since there were `count` (a trial that is tried again).
    void discard_from(std::size_t count);
    bool has_errors() const { return error_count() > 0; }

    // Every diagnostic, formatted, in order: the first kMaxShownDiagnostics, then a line saying
    // how many more there are.
    std::string format_all() const;
    static constexpr std::size_t kMaxShownDiagnostics = 50;
    // Whether a diagnostic reported now is one format_all shows: what only serves the printed
    // text ("did you mean", measured against every name in scope) is worked out for those alone,
    // so that 10k unknown names cost 50 searches, not 10k.
    bool shows_next() const { return diagnostics_.size() < kMaxShownDiagnostics; }

private:
    std::vector<Diagnostic> diagnostics_;
    // where each EvalError was reported: (file, line, column, message) -> its diagnostic
    std::map<std::tuple<const SourceFile*, int, int, std::string>, std::size_t> evaluated_;
};

// The candidates closest to `name` by edit distance (insertions, deletions, substitutions
// and swaps of neighbours each count one), if they are close enough to be a plausible typo:
// at most a third of the name's length (but at least one edit) and fewer edits than the name
// has characters. Sorted, without `name` itself.
std::vector<std::string> closest_names(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace wengert::dsl
