// Repository benchmark (issue "The backup repository"): a deterministic 2 GiB image (1 MiB
// pieces: random, random, zeros, text) ingested as a full point; then 5% of it changed in
// scattered 64 KiB blocks and ingested as an incremental point given the changed extents; then
// the incremental point restored to a raw file. Prints time, throughput, repository growth and
// peak memory. Usage: repo_bench REPO_DIR OUT_FILE [GiB] [threads]
// REPO_DIR on a disk file system shows the real thing: packs go to it with O_DIRECT. On tmpfs,
// every byte written costs fresh memory, which is slow on a VM.
// REPO_BENCH_FULL_ONLY=1 stops after the full ingest (for profiling it).
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

double Seconds(Clock::time_point a) {
  return std::chrono::duration<double>(Clock::now() - a).count();
}

void Die(const Status& s) {
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
  auto backend = storage::LocalBackend::Create(dir);
  if (!backend) Die(backend.error());
  repo::InitOptions io;
  if (!repo::Repository::Init(**backend, io).ok()) Die(InternalError("init"));
  auto repo = repo::Repository::Open(std::move(*backend), io.key);
  if (!repo) Die(repo.error());
  const uint64_t cs = (*repo)->chunk_size();

  // Full.
  std::vector<uint64_t> all;
  for (uint64_t c = 0; c < size / cs; ++c) all.push_back(c);
  auto t0 = Clock::now();
  repo::Point meta;
  meta.vm_name = "bench";
  auto w = repo::PointWriter::Start(**repo, meta);
  repo::PointDisk disk;
  disk.key = 2000;
  disk.capacity = size;
  if (!(*w)->AddDisk(disk)) Die(InternalError("disk"));
  Ingest(**w, image, all, cs, threads);
  auto full = (*w)->Commit();
  if (!full) Die(full.error());
  double full_s = Seconds(t0);
  uint64_t after_full = DirBytes(dir);
  if (std::getenv("REPO_BENCH_FULL_ONLY")) {  // for profiling the ingest alone
    std::printf("full ingest: %.3f s  %.2f GB/s\n", full_s, double(size) / 1e9 / full_s);
    return 0;
  }

  // 5% changed in scattered 64 KiB blocks.
  uint64_t blocks = size / 65536, changes = blocks / 20;
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
  t0 = Clock::now();
  meta.parent = full->id;
  auto w2 = repo::PointWriter::Start(**repo, meta);
  if (!(*w2)->AddDisk(disk)) Die(InternalError("disk"));
  Ingest(**w2, image, changed, cs, threads);
  auto inc = (*w2)->Commit();
  if (!inc) Die(inc.error());
  double inc_s = Seconds(t0);
  uint64_t growth = DirBytes(dir) - after_full;

  // Restore the incremental point.

  t0 = Clock::now();
  // Windows of 8 MiB go to the threads in turn; each thread has its own reader.
  // Written around the page cache (O_DIRECT, aligned buffers), as vmbackup restores.
  int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, off_t(size)) != 0) Die(InternalError("create " + out));
  {
    const uint64_t window = 8 << 20;
    std::atomic<uint64_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        auto r = repo::PointDiskReader::Open(**repo, *inc, 0);
        if (!r) Die(r.error());
        std::unique_ptr<uint8_t, decltype(&std::free)> wbuf(
            static_cast<uint8_t*>(std::aligned_alloc(4096, window)), &std::free);
        for (uint64_t pos; (pos = next.fetch_add(window)) < size;) {
          auto alloc = (*r)->Allocated(pos, window);
          if (!alloc) Die(alloc.error());
          for (const Extent& e : *alloc) {
            std::span<uint8_t> part(wbuf.get(), e.length);
            Status s = (*r)->Read(e.offset, part);
            if (!s.ok()) Die(s);
            if (pwrite(fd, part.data(), part.size(), off_t(e.offset)) != ssize_t(part.size())) {
              Die(IOError("write " + out));
            }
          }
        }
      });
    }
    for (auto& th : pool) th.join();
  }
  ::close(fd);
  double restore_s = Seconds(t0);

  // Check the restore.
  FILE* g = std::fopen(out.c_str(), "rb");
  bool same = true;
  std::vector<uint8_t> buf(8 << 20);
  for (uint64_t pos = 0; pos < size && same; pos += buf.size()) {
    same = std::fread(buf.data(), 1, buf.size(), g) == buf.size() &&
           std::memcmp(buf.data(), image.data() + pos, buf.size()) == 0;
  }
  std::fclose(g);

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double gb = double(size) / 1e9;
  uint64_t changed_bytes = changes * 65536;
  std::printf("repository benchmark: %llu GiB image, chunk %llu, %d threads\n",
              (unsigned long long)gib, (unsigned long long)cs, threads);
  std::printf("  full ingest:        %7.3f s  %6.2f GB/s  repository %llu MB\n", full_s,
              gb / full_s, (unsigned long long)(after_full / 1000000));
  std::printf("  incremental ingest: %7.3f s  (%llu changed bytes, growth %llu bytes = %.2fx)\n",
              inc_s, (unsigned long long)changed_bytes, (unsigned long long)growth,
              double(growth) / double(changed_bytes));
  std::printf("  restore:            %7.3f s  %6.2f GB/s  %s\n", restore_s, gb / restore_s,
              same ? "identical" : "DIFFERENT");
  std::printf("  peak RSS:           %ld MiB (the image itself holds %llu MiB)\n",
              ru.ru_maxrss / 1024, (unsigned long long)(size >> 20));
  return same ? 0 : 1;
}
