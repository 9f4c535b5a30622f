// The training progress bar's line: fields dropped by priority so that it fits the terminal.
#pragma once

#include <string>
#include <vector>

namespace wengert::dsl {

// Note [A bar that fits]
// The bar is redrawn in place ("\r\033[K" then the line), so it must never wrap: a wrapped
// line leaves its first row behind at every redraw, and an 80-column terminal fills with
// copies. The line is made of fields, each with a priority (0 most important); while the line
// is wider than the terminal less one column (a character in the last column makes some
// terminals wrap at once), the least important field is dropped, the later of two equal ones
// first. The fields keep their order. The first field (epoch and step) is never dropped, and is
// cut at the width if it alone is too wide.
struct ProgressField {
    std::string text;
    int priority = 0;
};
std::string fit_progress(const std::vector<ProgressField>& fields, int width);

// The width of the terminal on `fd` (TIOCGWINSZ), else $COLUMNS, else 80.
int terminal_width(int fd);

}  // namespace wengert::dsl
