// libvirt's client library (libvirt-dev).
// Loaded when first used (base/lazy_library.h): most commands never need it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)                 \
  X(virConnectClose)                 \
  X(virConnectListAllDomains)        \
  X(virConnectOpen)                  \
  X(virDomainAbortJob)               \
  X(virDomainBackupBegin)            \
  X(virDomainBackupGetXMLDesc)       \
  X(virDomainBlockCopy)              \
  X(virDomainBlockJobAbort)          \
  X(virDomainCheckpointDelete)       \
  X(virDomainCheckpointFree)         \
  X(virDomainCheckpointGetName)      \
  X(virDomainCheckpointLookupByName) \
  X(virDomainCreate)                 \
  X(virDomainDefineXML)              \
  X(virDomainDestroy)                \
  X(virDomainFSFreeze)               \
  X(virDomainFSThaw)                 \
  X(virDomainFree)                   \
  X(virDomainGetBlockInfo)           \
  X(virDomainGetBlockJobInfo)        \
  X(virDomainGetMetadata)            \
  X(virDomainGetName)                \
  X(virDomainGetState)               \
  X(virDomainGetUUIDString)          \
  X(virDomainGetXMLDesc)             \
  X(virDomainIsActive)               \
  X(virDomainListAllCheckpoints)     \
  X(virDomainLookupByName)           \
  X(virDomainLookupByUUIDString)     \
  X(virDomainResume)                 \
  X(virDomainSetMetadata)            \
  X(virDomainUndefineFlags)          \
  X(virGetLastError)                 \
  X(virInitialize)                   \
  X(virSetErrorFunc)                 \
  X(virStoragePoolFree)              \
  X(virStoragePoolIsActive)          \
  X(virStoragePoolLookupByName)      \
  X(virStorageVolCreateXML)          \
  X(virStorageVolDelete)             \
  X(virStorageVolDownload)           \
  X(virStorageVolFree)               \
  X(virStorageVolGetPath)            \
  X(virStorageVolLookupByPath)       \
  X(virStorageVolUpload)             \
  X(virStreamAbort)                  \
  X(virStreamFinish)                 \
  X(virStreamFree)                   \
  X(virStreamNew)                    \
  X(virStreamRecvFlags)              \
  X(virStreamRecvHole)               \
  X(virStreamSend)                   \
  X(virStreamSendHole)               \
  X(virTypedParamsAddULLong)         \
  X(virTypedParamsFree)
VMBACKUP_LAZY_LIBRARY(libvirt, "libvirt.so.0", "libvirt0", FUNCTIONS)
