// libssl (libssl3): TLS for the HTTPS range reader and the vSphere and S3 clients.
// Loaded when first used (base/lazy_library.h): most commands talk to no server over TLS.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)                     \
  X(SSL_CTX_ctrl)                        \
  X(SSL_CTX_free)                        \
  X(SSL_CTX_get_ex_data)                 \
  X(SSL_CTX_load_verify_locations)       \
  X(SSL_CTX_new)                         \
  X(SSL_CTX_set_default_read_buffer_len) \
  X(SSL_CTX_set_default_verify_paths)    \
  X(SSL_CTX_set_ex_data)                 \
  X(SSL_CTX_set_options)                 \
  X(SSL_CTX_set_verify)                  \
  X(SSL_connect)                         \
  X(SSL_ctrl)                            \
  X(SSL_free)                            \
  X(SSL_get0_param)                      \
  X(SSL_get1_peer_certificate)           \
  X(SSL_get_SSL_CTX)                     \
  X(SSL_get_error)                       \
  X(SSL_get_ex_data_X509_STORE_CTX_idx)  \
  X(SSL_get_verify_result)               \
  X(SSL_new)                             \
  X(SSL_pending)                         \
  X(SSL_read)                            \
  X(SSL_set1_host)                       \
  X(SSL_set_fd)                          \
  X(SSL_set_verify)                      \
  X(SSL_shutdown)                        \
  X(SSL_write)                           \
  X(TLS_client_method)
VMBACKUP_LAZY_LIBRARY(ssl, "libssl.so.3", "libssl3", FUNCTIONS)
