// libguestfs (libguestfs-dev): file systems The Sleuth Kit does not read, in its appliance.
// Loaded when first used (base/lazy_library.h): most commands never need it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)              \
  X(guestfs_add_drive_opts)       \
  X(guestfs_close)                \
  X(guestfs_create)               \
  X(guestfs_download)             \
  X(guestfs_find)                 \
  X(guestfs_free_statns)          \
  X(guestfs_fsck)                 \
  X(guestfs_last_error)           \
  X(guestfs_launch)               \
  X(guestfs_list_filesystems)     \
  X(guestfs_ls)                   \
  X(guestfs_lstatns)              \
  X(guestfs_mount)                \
  X(guestfs_mount_ro)             \
  X(guestfs_readlink)             \
  X(guestfs_set_backend_settings) \
  X(guestfs_set_error_handler)    \
  X(guestfs_shutdown)             \
  X(guestfs_statns)               \
  X(guestfs_tune2fs)              \
  X(guestfs_umount_all)           \
  X(guestfs_vfs_type)             \
  X(guestfs_xfs_repair)
VMBACKUP_LAZY_LIBRARY(guestfs, "libguestfs.so.0", "libguestfs0", FUNCTIONS)
