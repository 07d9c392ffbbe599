// libnbd (libnbd-dev): the NBD client.
// Loaded when first used (base/lazy_library.h): most commands never need it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)                       \
  X(nbd_add_meta_context)                  \
  X(nbd_block_status)                      \
  X(nbd_can_flush)                         \
  X(nbd_can_meta_context)                  \
  X(nbd_can_multi_conn)                    \
  X(nbd_can_zero)                          \
  X(nbd_close)                             \
  X(nbd_connect_command)                   \
  X(nbd_connect_systemd_socket_activation) \
  X(nbd_connect_tcp)                       \
  X(nbd_connect_unix)                      \
  X(nbd_connect_uri)                       \
  X(nbd_create)                            \
  X(nbd_flush)                             \
  X(nbd_get_errno)                         \
  X(nbd_get_error)                         \
  X(nbd_get_size)                          \
  X(nbd_is_read_only)                      \
  X(nbd_pread)                             \
  X(nbd_pwrite)                            \
  X(nbd_set_export_name)                   \
  X(nbd_set_tls)                           \
  X(nbd_set_tls_certificates)              \
  X(nbd_set_tls_username)                  \
  X(nbd_set_tls_verify_peer)               \
  X(nbd_set_uri_allow_local_file)          \
  X(nbd_shutdown)                          \
  X(nbd_zero)
VMBACKUP_LAZY_LIBRARY(nbd, "libnbd.so.0", "libnbd0", FUNCTIONS)
