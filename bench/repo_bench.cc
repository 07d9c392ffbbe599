// Repository benchmark (issue "The backup repository"): a deterministic 2 GiB image (1 MiB
// pieces: random, random, zeros, text) ingested as a full point; then 5% of it changed in
// scattered 64 KiB blocks and ingested as an incremental point given the changed extents; then
// the incremental point restored to a raw file. Prints time, throughput, repository growth and
// peak memory. Usage: repo_bench REPO_DIR OUT_FILE [GiB] [threads]
// REPO_DIR on a disk file system shows the real thing: packs go to it with O_DIRECT. On tmpfs,
// every byte written costs fresh memory, which is slow on a VM.
// REPO_BENCH_ENCRYPT=1 makes an encrypted repository (key file OUT_FILE.key).
// REPO_BENCH_FULL_ONLY=1 stops after the full ingest (for profiling it); REPO_BENCH_REUSE=1
// with a REPO_DIR left by an earlier run restores its incremental point alone (for profiling
// the restore). The repository is read into the page cache before the restore (the issue's
// benchmark runs with the data cached); REPO_BENCH_COLD=1 restores from the disk instead.
#include <fcntl.h>
#include <ftw.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "repo/point.h"
#include "storage/local_backend.h"

using namespace vmbackup;
using Clock = std::chrono::steady_clock;

namespace {

uint64_t g_bytes = 0;
int AddSize(const char*, const struct stat* st, int type, struct FTW*) {
  if (type == FTW_F) g_bytes += uint64_t(st->st_size);
  return 0;
}
uint64_t DirBytes(const std::string& dir) {
  g_bytes = 0;
  nftw(dir.c_str(), AddSize, 16, FTW_PHYS);
  return g_bytes;
}

// Reads every file under a folder through the page cache, so that it is cached (the issue's
// benchmark runs with the data in the page cache; packs are written around it).
int ReadThrough(const char* path, const struct stat*, int type, struct FTW*) {
  if (type != FTW_F) return 0;
  int fd = ::open(path, O_RDONLY);
  if (fd < 0) return 0;
  static std::vector<char> buf(8 << 20);
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  ::close(fd);
  return 0;
}

double Seconds(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

[[noreturn]] void Die(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  std::exit(1);
}

// Writes the chunks `chunks` of `image` with `threads` threads.
void Ingest(repo::PointWriter& w, const std::vector<uint8_t>& image,
            const std::vector<uint64_t>& chunks, uint64_t cs, int threads) {
  std::vector<std::thread> pool;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < chunks.size();) {
        uint64_t off = chunks[i] * cs;
        Status s = w.WriteChunk(0, off, {image.data() + off, cs});
        if (!s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
          failed = true;
          return;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  if (failed) std::exit(1);
}

// A point of one 2000-keyed disk holding `image`, from the chunks `chunks` (the rest comes from
// `parent`).
repo::Point WritePoint(repo::Repository& repo, const std::string& parent,
                       const std::vector<uint8_t>& image, const std::vector<uint64_t>& chunks,
                       int threads, double* seconds) {
  auto t0 = Clock::now();
  repo::Point meta;
  meta.vm_name = "bench";
  meta.parent = parent;
  auto w = repo::PointWriter::Start(repo, meta);
  if (!w) Die(w.error());
  repo::PointDisk disk;
  disk.key = 2000;
  disk.capacity = image.size();
  if (!(*w)->AddDisk(disk)) Die(InternalError("disk"));
  Ingest(**w, image, chunks, repo.chunk_size(), threads);
  auto point = (*w)->Commit();
  if (!point) Die(point.error());
  *seconds = Seconds(t0);
  return *point;
}

// Changes `changes` scattered 64 KiB blocks of `image` to random data; returns the chunks hit.
std::vector<uint64_t> ApplyChanges(std::vector<uint8_t>& image, uint64_t changes, uint64_t cs) {
  uint64_t blocks = image.size() / 65536;
  std::vector<uint64_t> changed;
  std::mt19937_64 crng(7);
  std::vector<bool> hit(blocks);
  while (changed.size() < changes) {
    uint64_t b = crng() % blocks;
    if (hit[b]) continue;
    hit[b] = true;
    for (uint64_t i = 0; i < 65536; i += 8) {
      uint64_t v = crng();
      std::memcpy(image.data() + b * 65536 + i, &v, 8);
    }
    changed.push_back(b * 65536 / cs);
  }
  std::sort(changed.begin(), changed.end());
  changed.erase(std::unique(changed.begin(), changed.end()), changed.end());
  return changed;
}

// The point with a parent in a repository an earlier run left.
repo::Point FindIncremental(repo::Repository& repo) {
  auto ids = repo::ListPoints(repo);
  if (!ids) Die(ids.error());
  for (const std::string& id : *ids) {
    auto p = repo::LoadPoint(repo, id);
    if (!p) Die(p.error());
    if (!p->parent.empty()) return *p;
  }
  Die(NotFoundError("no incremental point in the repository"));
  return {};
}

struct RestoreFigures {
  double seconds = 0;
  uint64_t read_ns = 0, write_ns = 0;  // summed over the threads
};

// Restores disk 0 of `point` in windows of 8 MiB handed to `threads` threads in turn, each
// with its own reader: into `memory` when `fd` < 0, else to `fd` through an aligned buffer
// (vmbackup restores files with O_DIRECT).
RestoreFigures Restore(repo::Repository& repo, const repo::Point& point, int threads,
                       std::span<uint8_t> memory, int fd) {
  std::atomic<uint64_t> read_ns{0}, write_ns{0};
  const uint64_t size = point.disks[0].capacity, window = 8 << 20;
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> pool;
  static const bool prefetch = std::getenv("REPO_BENCH_NO_PREFETCH") == nullptr;
  auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      auto r = repo::PointDiskReader::Open(repo, point, 0);
      if (!r) Die(r.error());
      std::unique_ptr<uint8_t, decltype(&std::free)> wbuf(
          static_cast<uint8_t*>(std::aligned_alloc(4096, window)), &std::free);
      for (uint64_t pos; (pos = next.fetch_add(window)) < size;) {
        if (prefetch) (void)(*r)->Prefetch(pos + uint64_t(threads) * window, window);
        auto alloc = (*r)->Allocated(pos, window);
        if (!alloc) Die(alloc.error());
        for (const Extent& e : *alloc) {
          std::span<uint8_t> part = fd < 0 ? memory.subspan(e.offset, e.length)
                                           : std::span<uint8_t>(wbuf.get(), e.length);
          auto t1 = Clock::now();
          Status s = (*r)->Read(e.offset, part);
          if (!s.ok()) Die(s);
          auto t2 = Clock::now();
          if (fd >= 0 &&
              pwrite(fd, part.data(), part.size(), off_t(e.offset)) != ssize_t(part.size())) {
            Die(IOError("write the restored file"));
          }
          read_ns += uint64_t(std::chrono::nanoseconds(t2 - t1).count());
          write_ns += uint64_t(std::chrono::nanoseconds(Clock::now() - t2).count());
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return {Seconds(t0), read_ns, write_ns};
}

bool FileEquals(const std::string& path, const std::vector<uint8_t>& image) {
  std::FILE* g = std::fopen(path.c_str(), "rb");
  if (!g) return false;
  bool same = true;
  std::vector<uint8_t> buf(8 << 20);
  for (uint64_t pos = 0; pos < image.size() && same; pos += buf.size()) {
    same = std::fread(buf.data(), 1, buf.size(), g) == buf.size() &&
           std::memcmp(buf.data(), image.data() + pos, buf.size()) == 0;
  }
  std::fclose(g);
  return same;
}

// Seconds to write the allocated extents of the point's disk from `image` to a new file the
// way Restore does (O_DIRECT, the same windows and threads), with nothing read or decoded.
double WriteAlone(repo::Repository& repo, const repo::Point& point, int threads,
                  const std::vector<uint8_t>& image, const std::string& path) {
  auto r = repo::PointDiskReader::Open(repo, point, 0);
  if (!r) Die(r.error());
  auto alloc = (*r)->Allocated(0, image.size());
  if (!alloc) Die(alloc.error());
  std::vector<Extent> extents;
  const uint64_t window = 8 << 20;
  for (const Extent& e : *alloc) {  // cut at the windows, as Restore does
    for (uint64_t o = e.offset; o < e.offset + e.length;) {
      uint64_t end = std::min(e.offset + e.length, (o / window + 1) * window);
      extents.push_back({o, end - o});
      o = end;
    }
  }
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0 || ftruncate(fd, off_t(image.size())) != 0) Die(InternalError("create " + path));
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  auto t0 = Clock::now();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::unique_ptr<uint8_t, decltype(&std::free)> wbuf(
          static_cast<uint8_t*>(std::aligned_alloc(4096, window)), &std::free);
      std::memset(wbuf.get(), 0, window);
      for (size_t i; (i = next.fetch_add(1)) < extents.size();) {
        std::memcpy(wbuf.get(), image.data() + extents[i].offset, extents[i].length);
        if (pwrite(fd, wbuf.get(), extents[i].length, off_t(extents[i].offset)) !=
            ssize_t(extents[i].length))
          Die(IOError("write " + path));
      }
    });
  }
  for (auto& th : pool) th.join();
  double seconds = Seconds(t0);
  ::close(fd);
  ::unlink(path.c_str());
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: repo_bench REPO_DIR OUT_FILE [GiB] [threads]\n");
    return 2;
  }
  std::string dir = argv[1], out = argv[2];

  uint64_t gib = argc > 3 ? std::stoull(argv[3]) : 2;
  int threads = argc > 4 ? std::stoi(argv[4]) : 2;
  const uint64_t size = gib << 30, piece = 1 << 20;
  std::vector<uint8_t> image(size);
  std::mt19937_64 rng(2026);
  for (uint64_t p = 0; p < size / piece; ++p) {
    uint8_t* d = image.data() + p * piece;
    if (p % 4 < 2) {
      for (uint64_t i = 0; i < piece; i += 8) {
        uint64_t v = rng();
        std::memcpy(d + i, &v, 8);
      }
    } else if (p % 4 == 3) {
      char line[64];
      int n =
          std::snprintf(line, sizeof line, "2026-11-22T06:00:%02d host kernel: event %08llu ok\n",
                        int(p % 60), (unsigned long long)p);
      for (uint64_t i = 0; i < piece; ++i) d[i] = uint8_t(line[i % uint64_t(n)]);
    }
  }
  const bool reuse = std::getenv("REPO_BENCH_REUSE") != nullptr;
  repo::InitOptions io;
  const bool encrypt = std::getenv("REPO_BENCH_ENCRYPT") != nullptr;
  if (encrypt) {  // AES-256-GCM with a key file beside the output file
    io.encrypt = true;
    io.key.key_file = out + ".key";
    if (!reuse) ::unlink(io.key.key_file.c_str());
  }
  auto backend = reuse ? storage::LocalBackend::Open(dir) : storage::LocalBackend::Create(dir);
  if (!backend) Die(backend.error());
  if (!reuse && !repo::Repository::Init(**backend, io).ok()) Die(InternalError("init"));
  auto repo = repo::Repository::Open(std::move(*backend), io.key);
  if (!repo) Die(repo.error());
  const uint64_t cs = (*repo)->chunk_size();
  double full_s = 0, inc_s = 0;
  uint64_t after_full = 0, growth = 0;
  std::optional<repo::Point> inc;
  std::string full_id;

  if (!reuse) {
    std::vector<uint64_t> all;
    for (uint64_t c = 0; c < size / cs; ++c) all.push_back(c);
    repo::Point full = WritePoint(**repo, "", image, all, threads, &full_s);
    full_id = full.id;
    after_full = DirBytes(dir);
    if (std::getenv("REPO_BENCH_FULL_ONLY")) {  // for profiling the ingest alone
      repo::RepoStats st = (*repo)->stats();
      std::printf(
          "full ingest: %.3f s  %.2f GB/s  (thread-seconds: hashing %.3f, compressing "
          "%.3f, writing packs %.3f)\n",
          full_s, double(size) / 1e9 / full_s, double(st.hash_ns) / 1e9, double(st.encode_ns) / 1e9,
          double(st.pack_write_ns) / 1e9);
      return 0;
    }
  }
  const uint64_t changes = size / 65536 / 20;
  std::vector<uint64_t> changed = ApplyChanges(image, changes, cs);
  if (reuse) {
    inc = FindIncremental(**repo);
  } else {
    inc = WritePoint(**repo, full_id, image, changed, threads, &inc_s);
    growth = DirBytes(dir) - after_full;
  }

  // Restore the incremental point: into memory (what the repository code delivers), to a raw
  // file on the disk (what a user gets here), and the same bytes written to the disk with
  // nothing else running (what the disk allows).
  const bool warm = std::getenv("REPO_BENCH_COLD") == nullptr;
  if (warm) nftw(dir.c_str(), ReadThrough, 16, FTW_PHYS);
  std::vector<uint8_t> restored(size, 0);  // touched now: fresh memory is slow on a VM
  RestoreFigures to_memory = Restore(**repo, *inc, threads, restored, -1);
  const bool memory_same = restored == image;
  if (!warm) {
    sync();
    std::FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w");  // cold again, when root
    if (f) std::fputs("3", f), std::fclose(f);
  }
  ::unlink(out.c_str());  // a restore writes a new file
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, off_t(size)) != 0) Die(InternalError("create " + out));
  RestoreFigures to_file = Restore(**repo, *inc, threads, {}, fd);
  ::close(fd);
  const bool file_same = FileEquals(out, image);
  double device_s = WriteAlone(**repo, *inc, threads, image, out + ".alone");

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double gb = double(size) / 1e9;
  uint64_t changed_bytes = changes * 65536;
  std::printf("repository benchmark: %llu GiB image, chunk %llu, %d threads%s\n",
              (unsigned long long)gib, (unsigned long long)cs, threads,
              encrypt ? ", encrypted" : "");
  if (!reuse) {
    std::printf("  full ingest:        %7.3f s  %6.2f GB/s  repository %llu MB\n", full_s,
                gb / full_s, (unsigned long long)(after_full / 1000000));
    std::printf("  incremental ingest: %7.3f s  (%llu changed bytes, growth %llu bytes = %.2fx)\n",
                inc_s, (unsigned long long)changed_bytes, (unsigned long long)growth,
                double(growth) / double(changed_bytes));
  }
  std::printf("  restore to memory:  %7.3f s  %6.2f GB/s  %s (repository %s)\n", to_memory.seconds,
              gb / to_memory.seconds, memory_same ? "identical" : "DIFFERENT",
              warm ? "in the page cache" : "cold");
  std::printf(
      "  restore to a file:  %7.3f s  %6.2f GB/s  %s (thread-seconds: reading %.3f, "
      "writing %.3f)\n",
      to_file.seconds, gb / to_file.seconds, file_same ? "identical" : "DIFFERENT",
      double(to_file.read_ns) / 1e9, double(to_file.write_ns) / 1e9);
  std::printf("  the disk alone:     %7.3f s  %6.2f GB/s  (the same writes with nothing to read)\n",
              device_s, gb / device_s);
  std::printf("  peak RSS:           %ld MiB (the image itself holds %llu MiB)\n",
              ru.ru_maxrss / 1024, (unsigned long long)(size >> 20));
  return memory_same && file_same ? 0 : 1;
}
