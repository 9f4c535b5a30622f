// The progress bar's line (Note [A bar that fits]).
#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace wengert::dsl {

std::string fit_progress(const std::vector<ProgressField>& fields, int width) {
    const std::size_t room = static_cast<std::size_t>(std::max(1, width - 1));
    std::vector<bool> kept(fields.size(), true);
    auto line = [&] {
        std::string out;
        for (std::size_t i = 0; i < fields.size(); ++i) {
            if (!kept[i]) continue;
            if (!out.empty()) out += "  ";
            out += fields[i].text;
        }
        return out;
    };
    std::string text = line();
    while (text.size() > room) {
        // the least important kept field after the first, the later of equals
        std::size_t drop = 0;
        for (std::size_t i = 1; i < fields.size(); ++i) {
            if (kept[i] && (drop == 0 || fields[i].priority >= fields[drop].priority)) drop = i;
        }
        if (drop == 0) return text.substr(0, room);
        kept[drop] = false;
        text = line();
    }
    return text;
}

int terminal_width(int fd) {
    winsize size{};
    if (::ioctl(fd, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
    if (const char* columns = std::getenv("COLUMNS")) {
        int n = std::atoi(columns);
        if (n > 0) return n;
    }
    return 80;
}

}  // namespace wengert::dsl
