// A library no system has (base/lazy_library_test.cc).
#include "base/testing/lazy_test_libraries.h"

#define ABSENT_FUNCTIONS(X) X(vmbackup_absent_function)
VMBACKUP_LAZY_LIBRARY(test_absent, "libvmbackup-absent.so.7", "vmbackup-absent-package",
                      ABSENT_FUNCTIONS)
