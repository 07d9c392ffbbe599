// Output files written in a private temporary folder beside their final place and moved into
// place when complete, so that an interrupted or failed command never leaves a partial result
// under a final name (a restored disk image, say; a VMDK may be several files). The temporary
// folder of a killed process is removed by the next PartialFile in the same folder.
#pragma once

#include <string>

#include "base/result.h"

namespace vmbackup::cli {

class PartialFile {
 public:
  // kAlreadyExists when `final_path` exists. Removes the temporaries of dead processes in its
  // folder first, then makes this one's (mode 0700).
  static Result<PartialFile> Start(const std::string& final_path);
  PartialFile(PartialFile&& other) noexcept;
  PartialFile& operator=(PartialFile&&) = delete;
  ~PartialFile();  // removes the temporary folder and what is left in it

  // Where to write the final file (inside the temporary folder, under its final name).
  std::string path() const;
  // A helper file in the temporary folder (`role` "raw", say), never moved into place.
  std::string Helper(const std::string& role) const;
  // Moves the final file, and the other files written beside it (a VMDK's extents; not the
  // helpers), into the final folder, the final file last. Never replaces an existing file.
  Status Commit();

 private:
  PartialFile(std::string final_path, std::string temp_dir)
      : final_(std::move(final_path)), temp_dir_(std::move(temp_dir)) {}
  std::string final_, temp_dir_;
};

}  // namespace vmbackup::cli
