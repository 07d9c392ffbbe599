#include "files/guest_browser.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/strings.h"
#include "files/appliance.h"

namespace vmbackup::files {

GuestBrowser::GuestBrowser(std::unique_ptr<Appliance> h) : h_(std::move(h)) {}
GuestBrowser::~GuestBrowser() = default;

Result<std::unique_ptr<GuestBrowser>> GuestBrowser::Launch(const std::string& socket) {
  VMBACKUP_ASSIGN_OR_RETURN(auto a, LaunchAppliance({socket}));
  return std::unique_ptr<GuestBrowser>(new GuestBrowser(std::move(a)));
}

Status GuestBrowser::Mount(int number) {
  if (mounted_ == number) return Status::Ok();
  if (mounted_ >= 0 && guestfs_umount_all(h_->g) != 0) return h_->Error("unmount");
  mounted_ = -1;
  const std::string dev = number == 0 ? "/dev/sda" : StrFormat("/dev/sda%d", number);
  // mount_ro on a read-only drive: libguestfs's overlay takes whatever the kernel writes
  // (an XFS log replay), never the export.
  if (guestfs_mount_ro(h_->g, dev.c_str(), "/") != 0)
    return h_->Error(StrFormat("mount partition %d", number));
  mounted_ = number;
  return Status::Ok();
}

Result<std::string> GuestBrowser::FsType(int number) {
  const std::string dev = number == 0 ? "/dev/sda" : StrFormat("/dev/sda%d", number);
  char* t = guestfs_vfs_type(h_->g, dev.c_str());
  if (!t) return h_->Error(StrFormat("the file system of partition %d", number));
  std::string out = t;
  std::free(t);
  return out;
}

Result<Entry> GuestBrowser::Stat(int number, const std::string& p) {
  struct guestfs_statns* st = guestfs_lstatns(h_->g, p.c_str());
  if (!st) return NotFoundError(StrFormat("no %s in partition %d", p.c_str(), number));
  Entry e;
  e.path = p;
  const auto fmt = st->st_mode & S_IFMT;
  e.type = fmt == S_IFREG ? '-' : fmt == S_IFDIR ? 'd' : fmt == S_IFLNK ? 'l' : 'o';
  e.size = uint64_t(std::max<int64_t>(0, st->st_size));
  e.mode = uint32_t(st->st_mode & 07777);
  e.uid = uint32_t(st->st_uid);
  e.gid = uint32_t(st->st_gid);
  e.mtime = st->st_mtime_sec;
  e.mtime_nsec = uint32_t(st->st_mtime_nsec);
  e.atime = st->st_atime_sec;
  e.atime_nsec = uint32_t(st->st_atime_nsec);
  guestfs_free_statns(st);
  if (e.type == 'l') {
    if (char* l = guestfs_readlink(h_->g, p.c_str())) {
      e.link = l;
      std::free(l);
    }
  }
  return e;
}

Result<std::vector<Entry>> GuestBrowser::List(int number, const std::string& raw_path,
                                              bool recursive) {
  VMBACKUP_RETURN_IF_ERROR(Mount(number));
  const std::string path = NormalizeFsPath(raw_path);
  VMBACKUP_ASSIGN_OR_RETURN(Entry top, Stat(number, path));
  std::vector<Entry> out;
  if (top.type != 'd') {
    out.push_back(top);
    return out;
  }
  StringList names;
  names.v = recursive ? guestfs_find(h_->g, path.c_str()) : guestfs_ls(h_->g, path.c_str());
  if (!names.v) return h_->Error("list " + path);
  for (char** n = names.v; *n; ++n) {
    // find answers "/a/b" for a folder's a/b (and "a/b" for the root's): relative either way.
    std::string_view rel = *n;
    while (!rel.empty() && rel.front() == '/') rel.remove_prefix(1);
    // Every component must be a name that can exist here.
    bool safe = !rel.empty();
    for (const auto& part : Split(rel, '/')) safe = safe && SafeName(part);
    if (!safe) continue;
    VMBACKUP_ASSIGN_OR_RETURN(Entry e, Stat(number, JoinFsPath(path, std::string(rel))));
    out.push_back(std::move(e));
  }
  return out;
}

Result<ExtractStats> GuestBrowser::Extract(int number, const std::string& raw_path,
                                           const std::string& to_dir) {
  const std::string path = NormalizeFsPath(raw_path);
  VMBACKUP_RETURN_IF_ERROR(Mount(number));
  VMBACKUP_ASSIGN_OR_RETURN(Entry top, Stat(number, path));
  std::vector<Entry> all = {top};
  if (top.type == 'd') {
    VMBACKUP_ASSIGN_OR_RETURN(std::vector<Entry> below, List(number, path, true));
    all.insert(all.end(), below.begin(), below.end());
  }
  const std::string name = path == "/" ? "root" : path.substr(path.rfind('/') + 1);
  if (!SafeName(name))
    return InvalidArgumentError("cannot fetch " + path + ": name it by a file or folder, not ..");
  std::string tmpl = to_dir + "/.vmbackup-files-XXXXXX";
  if (!::mkdtemp(tmpl.data())) return PosixError("create a folder in " + to_dir, errno);
  const std::string work = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;  // nothing to report: the work folder only holds our copies
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{work};
  ExtractStats stats;
  const std::string base = work + "/" + name;
  auto local = [&](const Entry& e) {
    return e.path == path ? base : base + e.path.substr(path == "/" ? 0 : path.size());
  };
  for (const Entry& e : all) {
    const std::string dest = local(e);
    switch (e.type) {
      case 'd':
        if (::mkdir(dest.c_str(), 0700) != 0) return PosixError("create " + dest, errno);
        ++stats.folders;
        break;
      case '-':
        if (guestfs_download(h_->g, e.path.c_str(), dest.c_str()) != 0)
          return h_->Error("fetch " + e.path);
        if (::chmod(dest.c_str(), e.mode) != 0) return PosixError("set the mode of " + dest, errno);
        stats.bytes += e.size;
        ++stats.files;
        break;
      case 'l':
        if (::symlink(e.link.c_str(), dest.c_str()) != 0)
          return PosixError("create " + dest, errno);
        ++stats.links;
        break;
      default: ++stats.skipped; continue;
    }
  }
  // Times last, deepest first: creating children changes a folder's times.
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->type == 'o') continue;
    const std::string dest = local(*it);
    if (it->type == 'd' && ::chmod(dest.c_str(), it->mode) != 0)
      return PosixError("set the mode of " + dest, errno);
    timespec ts[2] = {{time_t(it->atime), long(it->atime_nsec)},
                      {time_t(it->mtime), long(it->mtime_nsec)}};
    if (::utimensat(AT_FDCWD, dest.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0)
      return PosixError("set the times of " + dest, errno);
  }
  if (::renameat2(AT_FDCWD, base.c_str(), AT_FDCWD, (to_dir + "/" + name).c_str(),
                  RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST)
      return AlreadyExistsError(path + " is in the target folder already (nothing is overwritten)");
    return PosixError("move " + name + " into " + to_dir, errno);
  }
  return stats;
}

}  // namespace vmbackup::files
