#include "files/disk_browser.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <tsk/libtsk.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "base/lazy_library.h"
#include "base/strings.h"

VMBACKUP_DECLARE_LAZY_LIBRARY(tsk)

namespace vmbackup::files {
namespace {

// TSK casts the external image to TSK_IMG_INFO, which must come first. It embeds a read cache
// of about 2 MiB: allocated zeroed on the heap (calloc), freed by TSK through ImgClose.
struct ExternalImage {
  TSK_IMG_INFO img;
  DiskBrowser::ReadFn* read;
  Status* last_error;
};

ssize_t ImgRead(TSK_IMG_INFO* img, TSK_OFF_T off, char* buf, size_t len) {
  auto* self = reinterpret_cast<ExternalImage*>(img);
  if (off < 0 || off >= img->size) return 0;
  len = size_t(std::min<TSK_OFF_T>(TSK_OFF_T(len), img->size - off));
  Status s = (*self->read)(uint64_t(off), {reinterpret_cast<uint8_t*>(buf), len});
  if (!s.ok()) {
    *self->last_error = s;
    tsk_error_reset();
    tsk_error_set_errno(TSK_ERR_IMG_READ);
    tsk_error_set_errstr("%s", s.message().c_str());
    return -1;
  }
  return ssize_t(len);
}
void ImgClose(TSK_IMG_INFO* img) { std::free(img); }
void ImgStat(TSK_IMG_INFO* img, FILE* f) {
  std::fprintf(f, "restore point disk, %lld bytes\n", (long long)img->size);
}

std::string TskError(const std::string& what) {
  const char* e = tsk_error_get();
  std::string msg = what + ": " + (e && *e ? e : "unknown error");
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  tsk_error_reset();
  return msg;
}

char TypeOf(const TSK_FS_META* m) {
  switch (m->type) {
    case TSK_FS_META_TYPE_REG: return '-';
    case TSK_FS_META_TYPE_DIR: return 'd';
    case TSK_FS_META_TYPE_LNK: return 'l';
    default: return 'o';
  }
}

struct FileCloser {
  void operator()(TSK_FS_FILE* f) const { tsk_fs_file_close(f); }
};
struct DirCloser {
  void operator()(TSK_FS_DIR* d) const { tsk_fs_dir_close(d); }
};
using FilePtr = std::unique_ptr<TSK_FS_FILE, FileCloser>;
using DirPtr = std::unique_ptr<TSK_FS_DIR, DirCloser>;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

struct DiskBrowser::Impl {
  ReadFn read;
  Status last_error;
  TSK_IMG_INFO* img = nullptr;
  TSK_VS_INFO* vs = nullptr;
  std::map<int, TSK_FS_INFO*> fs;  // volume number -> open file system

  ~Impl() {
    for (auto& [n, f] : fs) tsk_fs_close(f);
    if (vs) tsk_vs_close(vs);
    if (img) tsk_img_close(img);
  }
  // The read error behind a TSK failure, when there was one: it says more than TSK's text.
  Status Error(const std::string& what) {
    if (!last_error.ok()) {
      Status s = last_error;
      last_error = Status::Ok();
      tsk_error_reset();
      return Status(s.code(), what + ": " + s.message());
    }
    return IOError(TskError(what));
  }
  bool Skip(TSK_FS_INFO* f, const TSK_FS_FILE* file) const {
    if (!file->name || !file->meta) return true;
    const std::string_view n = file->name->name ? file->name->name : "";
    if (n == "." || n == "..") return true;
    if (file->name->flags & TSK_FS_NAME_FLAG_UNALLOC) return true;
    if (file->meta->type == TSK_FS_META_TYPE_VIRT || file->meta->type == TSK_FS_META_TYPE_VIRT_DIR)
      return true;
    // NTFS's metadata files ($MFT, $Bitmap, $Extend...) sit in the reserved records.
    if (TSK_FS_TYPE_ISNTFS(f->ftype) && !n.empty() && n[0] == '$' && file->meta->addr < 32)
      return true;
    // FAT's volume label is a directory entry; TSK shows it as a file.
    if (TSK_FS_TYPE_ISFAT(f->ftype) && n.ends_with("(Volume Label Entry)")) return true;
    return false;
  }
  Entry ToEntry(const TSK_FS_FILE* file, const std::string& path) const {
    Entry e;
    const TSK_FS_META* m = file->meta;
    e.path = path;
    e.type = TypeOf(m);
    e.size = m->size > 0 ? uint64_t(m->size) : 0;
    e.mode = uint32_t(m->mode) & 07777;
    e.uid = uint32_t(m->uid);
    e.gid = uint32_t(m->gid);
    e.mtime = int64_t(m->mtime);
    e.atime = int64_t(m->atime);
    e.mtime_nsec = m->mtime_nano;
    e.atime_nsec = m->atime_nano;
    if (e.type == 'l' && m->link) e.link = m->link;
    return e;
  }
};

DiskBrowser::DiskBrowser(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DiskBrowser::~DiskBrowser() = default;

Result<std::unique_ptr<DiskBrowser>> DiskBrowser::Open(uint64_t size, ReadFn read) {
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::tsk));
  auto impl = std::make_unique<Impl>();
  impl->read = std::move(read);
  auto* ext = static_cast<ExternalImage*>(std::calloc(1, sizeof(ExternalImage)));
  if (!ext) return IOError("no memory for the disk image");
  ext->read = &impl->read;
  ext->last_error = &impl->last_error;
  impl->img = tsk_img_open_external(ext, TSK_OFF_T(size), 512, ImgRead, ImgClose, ImgStat);
  if (!impl->img) {
    std::free(ext);
    return impl->Error("open the disk");
  }
  std::unique_ptr<DiskBrowser> b(new DiskBrowser(std::move(impl)));
  Impl& m = *b->impl_;
  m.vs = tsk_vs_open(m.img, 0, TSK_VS_TYPE_DETECT);
  if (!m.vs) {
    if (!m.last_error.ok()) return m.Error("read the partition table");
    tsk_error_reset();
    // No partition table: a file system on the whole disk, or nothing TSK knows.
    Volume v;
    v.length = size;
    v.description = "whole disk";
    if (TSK_FS_INFO* f = tsk_fs_open_img(m.img, 0, TSK_FS_TYPE_DETECT)) {
      m.fs[0] = f;
      v.fs_type = tsk_fs_type_toname(f->ftype);
    } else {
      if (!m.last_error.ok()) return m.Error("read the disk");
      tsk_error_reset();
    }
    b->volumes_.push_back(v);
    return b;
  }
  b->table_ = tsk_vs_type_toname(m.vs->vstype);
  const bool gpt = m.vs->vstype == TSK_VS_TYPE_GPT, dos = m.vs->vstype == TSK_VS_TYPE_DOS;
  int sequential = 0, logical = 4;
  for (TSK_PNUM_T i = 0; i < m.vs->part_count; ++i) {
    const TSK_VS_PART_INFO* part = tsk_vs_part_get(m.vs, i);
    if (!part || !(part->flags & TSK_VS_PART_FLAG_ALLOC)) continue;
    Volume v;
    ++sequential;
    if (gpt) {
      v.number = part->slot_num + 1;
    } else if (dos) {
      v.number = part->table_num == 0 ? part->slot_num + 1 : ++logical;
    } else {
      v.number = sequential;
    }
    v.offset = uint64_t(part->start) * m.vs->block_size;
    v.length = uint64_t(part->len) * m.vs->block_size;
    v.description = part->desc ? part->desc : "";
    if (TSK_FS_INFO* f = tsk_fs_open_vol(part, TSK_FS_TYPE_DETECT)) {
      m.fs[v.number] = f;
      v.fs_type = tsk_fs_type_toname(f->ftype);
    } else {
      if (!m.last_error.ok()) return m.Error(StrFormat("read partition %d", v.number));
      tsk_error_reset();
    }
    b->volumes_.push_back(v);
  }
  return b;
}

Result<const Volume*> DiskBrowser::Pick(int number) const {
  if (number >= 0) {
    for (const auto& v : volumes_) {
      if (v.number != number) continue;
      if (v.fs_type.empty()) {
        return NotSupportedError(StrFormat(
            "partition %d (%s) holds no file system this reader knows (it reads FAT, ext2/3/4, "
            "NTFS, HFS+, ISO9660; not XFS, btrfs or LVM)",
            number, v.description.c_str()));
      }
      return &v;
    }
    return NotFoundError(
        StrFormat("the disk has no partition %d (it has %zu)", number, volumes_.size()));
  }
  const Volume* only = nullptr;
  int readable = 0;
  for (const auto& v : volumes_) {
    if (v.fs_type.empty()) continue;
    only = &v;
    ++readable;
  }
  if (readable == 1) return only;
  if (readable == 0) return NotSupportedError("the disk holds no file system this reader knows");
  return InvalidArgumentError(
      StrFormat("the disk holds %d file systems: choose one with --partition N (see files ls "
                "without a path)",
                readable));
}

Result<std::vector<Entry>> DiskBrowser::List(int volume, const std::string& raw_path,
                                             bool recursive) {
  VMBACKUP_ASSIGN_OR_RETURN(const Volume* v, Pick(volume));
  TSK_FS_INFO* f = impl_->fs.at(v->number);
  const std::string path = NormalizeFsPath(raw_path);
  FilePtr top(tsk_fs_file_open(f, nullptr, path.c_str()));
  if (!top || !top->meta) {
    if (!impl_->last_error.ok()) return impl_->Error("read " + path);
    tsk_error_reset();
    return NotFoundError(StrFormat("no %s in partition %d", path.c_str(), v->number));
  }
  std::vector<Entry> out;
  if (top->meta->type != TSK_FS_META_TYPE_DIR) {
    out.push_back(impl_->ToEntry(top.get(), path));
    return out;
  }
  // Depth first, each folder's entries before the folders below it; a folder already seen
  // (a damaged file system can loop) is not entered again.
  std::vector<std::pair<TSK_INUM_T, std::string>> todo = {{top->meta->addr, path}};
  std::vector<TSK_INUM_T> seen;
  while (!todo.empty()) {
    auto [addr, dir_path] = todo.back();
    todo.pop_back();
    if (std::find(seen.begin(), seen.end(), addr) != seen.end()) continue;
    seen.push_back(addr);
    DirPtr dir(tsk_fs_dir_open_meta(f, addr));
    if (!dir) return impl_->Error("read folder " + dir_path);
    std::vector<std::pair<TSK_INUM_T, std::string>> subdirs;
    for (size_t i = 0; i < tsk_fs_dir_getsize(dir.get()); ++i) {
      FilePtr file(tsk_fs_dir_get(dir.get(), i));
      if (!file || impl_->Skip(f, file.get())) continue;
      const std::string name = file->name->name;
      if (!SafeName(name)) continue;
      const std::string p = JoinFsPath(dir_path, name);
      out.push_back(impl_->ToEntry(file.get(), p));
      if (recursive && file->meta->type == TSK_FS_META_TYPE_DIR)
        subdirs.emplace_back(file->meta->addr, p);
    }
    todo.insert(todo.end(), subdirs.rbegin(), subdirs.rend());
  }
  return out;
}

namespace {

struct Extractor {
  DiskBrowser::Impl& impl;
  TSK_FS_INFO* fs;
  ExtractStats stats;
  std::vector<TSK_INUM_T> open_dirs;  // against loops in a damaged file system

  static Status CreateError(const std::string& path, int err) {
    if (err == EEXIST)
      return AlreadyExistsError(path + " is in the target folder already (nothing is overwritten)");
    return PosixError("create " + path, err);
  }

  static Status SetTimes(int dirfd, const char* name, int fd, const TSK_FS_META* m) {
    timespec ts[2] = {{time_t(m->atime), long(m->atime_nano)},
                      {time_t(m->mtime), long(m->mtime_nano)}};
    const int rc = fd >= 0 ? ::futimens(fd, ts) : ::utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
    return rc == 0 ? Status::Ok() : PosixError(std::string("set the times of ") + name, errno);
  }

  Status File(TSK_FS_FILE* file, int dirfd, const std::string& name, const std::string& path) {
    Fd out{
        ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600)};
    if (out.fd < 0) return CreateError(path, errno);
    std::vector<char> buf(1 << 20);
    const TSK_OFF_T size = file->meta->size;
    for (TSK_OFF_T off = 0; off < size;) {
      const size_t want = size_t(std::min<TSK_OFF_T>(TSK_OFF_T(buf.size()), size - off));
      const ssize_t got = tsk_fs_file_read(file, off, buf.data(), want, TSK_FS_FILE_READ_FLAG_NONE);
      if (got <= 0) return impl.Error("read " + path);
      for (ssize_t done = 0; done < got;) {
        const ssize_t w = ::write(out.fd, buf.data() + done, size_t(got - done));
        if (w < 0) {
          if (errno == EINTR) continue;
          return PosixError("write " + path, errno);
        }
        done += w;
      }
      off += got;
    }
    stats.bytes += uint64_t(size);
    ++stats.files;
    if (::fchmod(out.fd, mode_t(uint32_t(file->meta->mode) & 07777)) != 0)
      return PosixError("set the mode of " + path, errno);
    return SetTimes(-1, name.c_str(), out.fd, file->meta);
  }

  Status Folder(TSK_FS_FILE* file, int dirfd, const std::string& name, const std::string& path) {
    const TSK_INUM_T addr = file->meta->addr;
    if (std::find(open_dirs.begin(), open_dirs.end(), addr) != open_dirs.end())
      return CorruptionError("folder " + path + " contains itself (a damaged file system)");
    if (::mkdirat(dirfd, name.c_str(), 0700) != 0) return CreateError(path, errno);
    Fd sub{::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (sub.fd < 0) return PosixError("open " + path, errno);
    ++stats.folders;
    DirPtr dir(tsk_fs_dir_open_meta(fs, addr));
    if (!dir) return impl.Error("read folder " + path);
    open_dirs.push_back(addr);
    for (size_t i = 0; i < tsk_fs_dir_getsize(dir.get()); ++i) {
      FilePtr child(tsk_fs_dir_get(dir.get(), i));
      if (!child || impl.Skip(fs, child.get())) continue;
      const std::string n = child->name->name;
      if (!SafeName(n)) {
        ++stats.skipped;
        continue;
      }
      VMBACKUP_RETURN_IF_ERROR(One(child.get(), sub.fd, n, JoinFsPath(path, n)));
    }
    open_dirs.pop_back();
    // Mode and times last: writing the children changed the folder's times.
    if (::fchmod(sub.fd, mode_t(uint32_t(file->meta->mode) & 07777)) != 0)
      return PosixError("set the mode of " + path, errno);
    return SetTimes(-1, name.c_str(), sub.fd, file->meta);
  }

  Status One(TSK_FS_FILE* file, int dirfd, const std::string& name, const std::string& path) {
    switch (file->meta->type) {
      case TSK_FS_META_TYPE_REG: return File(file, dirfd, name, path);
      case TSK_FS_META_TYPE_DIR: return Folder(file, dirfd, name, path);
      case TSK_FS_META_TYPE_LNK: {
        const char* target = file->meta->link ? file->meta->link : "";
        if (::symlinkat(target, dirfd, name.c_str()) != 0) return CreateError(path, errno);
        ++stats.links;
        return SetTimes(dirfd, name.c_str(), -1, file->meta);
      }
      default: ++stats.skipped; return Status::Ok();  // devices, fifos, sockets
    }
  }
};

}  // namespace

Result<ExtractStats> DiskBrowser::Extract(int volume, const std::string& raw_path,
                                          const std::string& to_dir) {
  VMBACKUP_ASSIGN_OR_RETURN(const Volume* v, Pick(volume));
  TSK_FS_INFO* f = impl_->fs.at(v->number);
  const std::string path = NormalizeFsPath(raw_path);
  FilePtr file(tsk_fs_file_open(f, nullptr, path.c_str()));
  if (!file || !file->meta) {
    if (!impl_->last_error.ok()) return impl_->Error("read " + path);
    tsk_error_reset();
    return NotFoundError(StrFormat("no %s in partition %d", path.c_str(), v->number));
  }
  Fd dir{::open(to_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir.fd < 0) return PosixError("open the target folder " + to_dir, errno);
  std::string name = path == "/" ? "root" : path.substr(path.rfind('/') + 1);
  if (!SafeName(name))
    return InvalidArgumentError("cannot fetch " + path + ": name it by a file or folder, not ..");
  Extractor x{*impl_, f, {}, {}};
  VMBACKUP_RETURN_IF_ERROR(x.One(file.get(), dir.fd, name, path));
  return x.stats;
}

}  // namespace vmbackup::files
