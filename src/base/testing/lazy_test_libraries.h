// Libraries for base/lazy_library_test.cc, each defined in a file of its own (one per file).
#pragma once

#include "base/lazy_library.h"

extern "C" int vmbackup_absent_function();

VMBACKUP_DECLARE_LAZY_LIBRARY(test_absent)
VMBACKUP_DECLARE_LAZY_LIBRARY(test_libc)
