// libcurl (libcurl4-openssl-dev): HTTP(S) for S3 and vSphere.
// Loaded when first used (base/lazy_library.h): most commands never need it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)    \
  X(curl_easy_cleanup)  \
  X(curl_easy_getinfo)  \
  X(curl_easy_init)     \
  X(curl_easy_perform)  \
  X(curl_easy_setopt)   \
  X(curl_easy_strerror) \
  X(curl_global_init)   \
  X(curl_slist_append)  \
  X(curl_slist_free_all)
VMBACKUP_LAZY_LIBRARY(curl, "libcurl.so.4", "libcurl4", FUNCTIONS)
