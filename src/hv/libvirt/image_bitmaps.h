// The persistent dirty bitmaps of qcow2 images, and the removal of ours that no checkpoint
// names any more (private to the libvirt driver).
#pragma once

#include <libvirt/libvirt.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "hv/libvirt/libvirt_xml.h"

namespace vmbackup::hv::libvirt {

struct ImageBitmap {
  std::string name;
  bool in_use = false;   // QEMU has the image open, or did not close it (a crash)
  bool enabled = false;  // recording writes
};

// The bitmaps stored in the image at `path`, read without its lock (`qemu-img info -U`): for a
// running domain, those QEMU loaded at start and has not removed since.
Result<std::vector<ImageBitmap>> ReadImageBitmaps(const std::string& path);

// Removes the bitmaps named like ours (kCheckpointPrefix) from the qcow2 `disks` of `dom` that
// none of libvirt's checkpoints names: left when the domain was defined anew (libvirt forgot
// its checkpoints; the images kept the bitmaps, which QEMU then updates on every guest write
// for ever) or by a run that died. Offline with `qemu-img bitmap --remove`; online through
// QEMU's monitor (libvirt has no call for it, and marks the domain "custom-monitor" tainted in
// its log; only done when there is such a bitmap). Returns the names removed, as "vdb:NAME".
Result<std::vector<std::string>> RemoveStaleBitmaps(virDomainPtr dom, const std::string& vm_name,
                                                    const std::vector<DomainDisk>& disks,
                                                    bool offline);

}  // namespace vmbackup::hv::libvirt
