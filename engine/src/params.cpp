// PLACEHOLDER: filled in by its owner.
#include "wengert/params.hpp"
