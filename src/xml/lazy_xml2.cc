// libxml2 (libxml2): XML for SOAP (vSphere) and libvirt's domain descriptions.
// Loaded when first used (base/lazy_library.h): a backup from vmhost never parses XML, and
// libxml2 brings ICU and liblzma with it (2 ms of every program start).

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link). xmlFree, a variable,
// is read through xmlMemGet.
#define FUNCTIONS(X)        \
  X(xmlBufferContent)       \
  X(xmlBufferCreate)        \
  X(xmlBufferFree)          \
  X(xmlBufferLength)        \
  X(xmlCtxtGetLastError)    \
  X(xmlCtxtReadMemory)      \
  X(xmlDocGetRootElement)   \
  X(xmlEncodeSpecialChars)  \
  X(xmlFreeDoc)             \
  X(xmlFreeNode)            \
  X(xmlFreeParserCtxt)      \
  X(xmlMemGet)              \
  X(xmlNewChild)            \
  X(xmlNewParserCtxt)       \
  X(xmlNodeDump)            \
  X(xmlNodeGetContent)      \
  X(xmlNodeListGetString)   \
  X(xmlNodeSetContent)      \
  X(xmlSetGenericErrorFunc) \
  X(xmlSetProp)             \
  X(xmlUnlinkNode)          \
  X(xmlUnsetProp)
VMBACKUP_LAZY_LIBRARY(xml2, "libxml2.so.2", "libxml2", FUNCTIONS)
