// What a vsphere:// source URI names, and datastore paths ("[datastore1] vm/disk.vmdk").
#pragma once

#include <map>
#include <string>

#include "base/result.h"

namespace vmbackup::hv::vsphere {

// vsphere://USER@HOST[:PORT][/DATACENTER][?thumbprint=SHA256:...][&ca=FILE][&datastore=NAME]
struct SourceUri {
  std::string user, host;
  int port = 443;
  std::string datacenter;  // "" = search every datacenter
  std::string thumbprint;  // normalized "AB:CD:..." or ""
  std::string ca_file;
  std::string datastore;        // where restores create new VMs ("" = the datacenter's only one)
  std::string BaseUrl() const;  // https://HOST:PORT
};
// kInvalidArgument naming the part that is wrong. A password in the URI is refused: it would
// be visible in the process list.
Result<SourceUri> ParseSourceUri(const std::string& uri);

// "[datastore1] folder/file.vmdk" -> {"datastore1", "folder/file.vmdk"}.
struct DatastorePath {
  std::string datastore, path;
  std::string Text() const { return "[" + datastore + "] " + path; }
};
// kCorruption for a path that is not of that form, or whose file part is absolute or climbs
// out with "..".
Result<DatastorePath> ParseDatastorePath(const std::string& text);

// --datastore-map "[ds1]=/mnt/ds1,[ds2]=/srv/ds2" (brackets optional). kInvalidArgument when
// malformed or when a folder is not absolute.
Result<std::map<std::string, std::string>> ParseDatastoreMap(const std::string& text);

}  // namespace vmbackup::hv::vsphere
