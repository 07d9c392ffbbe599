// libc's dprintf through a trampoline: a varargs function with doubles (base/lazy_library_test.cc).
#include <cstdio>

#include "base/testing/lazy_test_libraries.h"

#define LIBC_FUNCTIONS(X) X(dprintf)
VMBACKUP_LAZY_LIBRARY(test_libc, "libc.so.6", "libc6", LIBC_FUNCTIONS)
