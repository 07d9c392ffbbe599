// The Sleuth Kit (libtsk-dev): partitions and file systems read in process.
// Loaded when first used (base/lazy_library.h): most commands never need it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)       \
  X(tsk_error_get)         \
  X(tsk_error_reset)       \
  X(tsk_error_set_errno)   \
  X(tsk_error_set_errstr)  \
  X(tsk_fs_close)          \
  X(tsk_fs_dir_close)      \
  X(tsk_fs_dir_get)        \
  X(tsk_fs_dir_getsize)    \
  X(tsk_fs_dir_open_meta)  \
  X(tsk_fs_file_close)     \
  X(tsk_fs_file_open)      \
  X(tsk_fs_file_read)      \
  X(tsk_fs_open_img)       \
  X(tsk_fs_open_vol)       \
  X(tsk_fs_type_toname)    \
  X(tsk_img_close)         \
  X(tsk_img_open_external) \
  X(tsk_vs_close)          \
  X(tsk_vs_open)           \
  X(tsk_vs_part_get)       \
  X(tsk_vs_type_toname)
VMBACKUP_LAZY_LIBRARY(tsk, "libtsk.so.19", "libtsk19", FUNCTIONS)
