// wengert: errors are values with fields, formatted once.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace wengert {

class Shape;

// Base of every error the engine reports for bad input. `what()` is the full message.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A shape or argument rule failed in op `op`. message: "op: detail".
class ShapeError : public Error {
public:
    ShapeError(std::string op, const std::string& detail)
        : Error(op + ": " + detail), op_(std::move(op)), detail_(detail) {}
    const std::string& op() const { return op_; }
    const std::string& detail() const { return detail_; }

private:
    std::string op_;
    std::string detail_;
};

// A file could not be read or written, or its contents are malformed.
class IOError : public Error {
public:
    IOError(std::string path, const std::string& detail)
        : Error(path + ": " + detail), path_(std::move(path)) {}
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Misuse of the tape: backward through a tensor modified in place, a non-scalar backward
// without an output gradient, mixing tapes.
class AutogradError : public Error {
public:
    using Error::Error;
};

std::string fmt_dtype_mismatch(const char* want, const char* have);
std::string fmt_count_mismatch(std::size_t count, const Shape& shape);

}  // namespace wengert
