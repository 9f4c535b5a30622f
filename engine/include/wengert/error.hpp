// wengert: errors are values with fields, formatted once.
#pragma once

#include <cstddef>
#include <new>
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

// Memory for a tensor could not be had: what was being allocated, in `what()` ("out of memory:
// cannot allocate 800000000 bytes for a f32 tensor of shape [100000000, 2]"). A std::bad_alloc,
// not an Error: it is the machine's limit, not a mistake in the input, so a handler of bad
// input (which turns an Error into a located model error) lets it pass.
class OutOfMemory : public std::bad_alloc {
public:
    explicit OutOfMemory(std::string message) : message_(std::move(message)) {}
    const char* what() const noexcept override { return message_.c_str(); }

private:
    std::string message_;
};

std::string fmt_dtype_mismatch(const char* want, const char* have);
std::string fmt_count_mismatch(std::size_t count, const Shape& shape);

}  // namespace wengert
