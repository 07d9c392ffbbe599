// Sparse-disk benchmark (issue "The backup repository"): ingests a disk of large capacity that
// holds little data (extents at random aligned offsets, generated on the fly, so the bench
// itself holds no image), then reads back its allocated map. Prints time and peak memory, to
// show that both follow the data, not the capacity.
// Usage: sparse_bench REPO_DIR CAPACITY_GiB DATA_MiB [EXTENT_KiB] [threads]
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "repo/point.h"
#include "storage/local_backend.h"

using namespace vmbackup;
using Clock = std::chrono::steady_clock;

namespace {

void Die(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  std::exit(1);
}

// Half random, half text, different for every chunk.
void FillChunk(uint64_t offset, std::span<uint8_t> out) {
  std::mt19937_64 rng(offset);
  if ((offset >> 20) % 2 == 0) {
    for (size_t i = 0; i + 8 <= out.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(out.data() + i, &v, 8);
    }
  } else {
    char line[64];
    int n = std::snprintf(line, sizeof line, "offset %016llx: a line of text\n",
                          (unsigned long long)offset);
    for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t(line[i % size_t(n)]);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: sparse_bench REPO_DIR CAPACITY_GiB DATA_MiB [EXTENT_KiB] [threads]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const uint64_t capacity = std::stoull(argv[2]) << 30, data = std::stoull(argv[3]) << 20;
  const uint64_t extent = (argc > 4 ? std::stoull(argv[4]) : 1024) << 10;
  const int threads = argc > 5 ? std::stoi(argv[5]) : 2;

  auto backend = storage::LocalBackend::Create(dir);
  if (!backend) Die(backend.error());
  repo::InitOptions io;
  if (!repo::Repository::Init(**backend, io).ok()) Die(InternalError("init"));
  auto repo = repo::Repository::Open(std::move(*backend), io.key);
  if (!repo) Die(repo.error());
  const uint64_t cs = (*repo)->chunk_size();

  // Distinct extents at random aligned offsets, in disk order (as a backup reads them).
  std::mt19937_64 rng(11);
  std::set<uint64_t> starts;
  while (starts.size() < data / extent) starts.insert(rng() % (capacity / extent) * extent);
  std::vector<uint64_t> chunks;
  for (uint64_t s : starts)
    for (uint64_t o = s; o < s + extent; o += cs) chunks.push_back(o);

  auto t0 = Clock::now();
  repo::Point meta;
  meta.vm_name = "sparse";
  auto w = repo::PointWriter::Start(**repo, meta);
  repo::PointDisk disk;
  disk.key = 2000;
  disk.capacity = capacity;
  if (!(*w)->AddDisk(disk)) Die(InternalError("disk"));
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<uint8_t> buf(cs);
      for (size_t i; (i = next.fetch_add(1)) < chunks.size();) {
        FillChunk(chunks[i], buf);
        Status s = (*w)->WriteChunk(0, chunks[i], buf);
        if (!s.ok()) Die(s);
      }
    });
  }
  for (auto& th : pool) th.join();
  auto point = (*w)->Commit();
  if (!point) Die(point.error());
  double ingest_s = std::chrono::duration<double>(Clock::now() - t0).count();

  t0 = Clock::now();
  auto reader = repo::PointDiskReader::Open(**repo, *point, 0);
  auto allocated = (*reader)->Allocated(0, capacity);
  if (!allocated) Die(allocated.error());
  double map_s = std::chrono::duration<double>(Clock::now() - t0).count();

  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("sparse benchmark: %llu GiB disk holding %llu MiB in %llu KiB extents, %d threads\n",
              (unsigned long long)(capacity >> 30), (unsigned long long)(data >> 20),
              (unsigned long long)(extent >> 10), threads);
  std::printf("  ingest:         %7.3f s  %6.2f GB/s of data\n", ingest_s,
              double(data) / 1e9 / ingest_s);
  std::printf("  allocated map:  %7.3f s  (%llu bytes allocated: %s)\n", map_s,
              (unsigned long long)allocated->total_bytes(),
              allocated->total_bytes() == data ? "exact" : "WRONG");
  std::printf("  peak RSS:       %ld MiB\n", ru.ru_maxrss / 1024);
  return allocated->total_bytes() == data ? 0 : 1;
}
