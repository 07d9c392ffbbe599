// The files of one virtual disk in a VM folder, VMware's naming:
//   <stem>.vmdk + <stem>-flat.vmdk + <stem>-ctk.vmdk           the base (an ESXi vmfs descriptor)
//   <stem>-000001.vmdk + <stem>-000001-ctk.vmdk, ...            snapshot deltas (hosted sparse)
// where the stem is "<vm>" for the first disk and "<vm>_<n>" for the others. Deltas form a
// tree through their descriptors' parentFileNameHint.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/result.h"

namespace vmbackup::host {

std::string DiskStem(const std::string& vm, size_t index);
std::string CtkFileFor(const std::string& layer_file);  // "x-000001.vmdk" -> "x-000001-ctk.vmdk"

struct LayerNode {
  std::string file;    // descriptor file name in the VM folder
  std::string parent;  // parent's file name; empty for the base
  bool is_base = false;
  std::string change_track_path;  // empty when the layer has no ctk
  std::string problem;            // why this layer could not be read, if it could not
};

// Every layer of the disk with stem `stem` found in `dir`, by file name. Layers that cannot
// be opened are listed with `problem` set rather than failing the scan.
Result<std::map<std::string, LayerNode>> ScanLayers(const std::string& dir,
                                                    const std::string& stem);

// The first unused delta name "<stem>-NNNNNN.vmdk" in `dir`.
Result<std::string> NextDeltaName(const std::string& dir, const std::string& stem);

// Removes a layer's files (descriptor, its ctk; never a base's flat file).
Status RemoveLayerFiles(const std::string& dir, const LayerNode& layer);

}  // namespace vmbackup::host
