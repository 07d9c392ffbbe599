#include "repo/index.h"

#include <xxhash.h>

#include <cstring>

#include "base/endian.h"
#include "base/strings.h"

namespace vmbackup::repo {
namespace {

constexpr char kIndexMagic[8] = {'V', 'M', 'B', 'K', 'I', 'X', '0', '1'};
constexpr size_t kEntrySize = Index::FileEntries::kEntrySize;
constexpr uint32_t kMaxBlob = 64u << 20;
constexpr char kAad[] = "vmbackup index";

std::span<const uint8_t> Aad() {
  return {reinterpret_cast<const uint8_t*>(kAad), sizeof(kAad) - 1};
}

void PutEntry(uint8_t* p, const Id& id, const BlobLocation& loc) {
  std::memcpy(p, id.bytes.data(), 32);
  std::memcpy(p + 32, loc.pack.bytes.data(), 32);
  p[64] = uint8_t(loc.type);
  StoreLE64(p + 65, loc.offset);
  StoreLE32(p + 73, loc.stored_length);
  StoreLE32(p + 77, loc.raw_length);
}

BlobLocation LocationOf(const uint8_t* p) {
  BlobLocation loc;
  std::memcpy(loc.pack.bytes.data(), p + 32, 32);
  loc.type = BlobType(p[64]);
  loc.offset = LoadLE64(p + 65);
  loc.stored_length = LoadLE32(p + 73);
  loc.raw_length = LoadLE32(p + 77);
  return loc;
}

Id IdOf(const uint8_t* p) {
  Id id;
  std::memcpy(id.bytes.data(), p, 32);
  return id;
}

}  // namespace

Index::Index() {
  std::vector<uint8_t> r = RandomBytes(sizeof(seed_));
  std::memcpy(&seed_, r.data(), sizeof(seed_));
  bodies_.emplace_back();
}

const uint8_t* Index::Entry(uint64_t slot) const {
  return bodies_[(slot >> kBodyShift) - 1].data() +
         (slot & ((uint64_t(1) << kBodyShift) - 1)) * kEntrySize;
}

size_t Index::Home(const uint8_t* id) const {
  // Seeded: ids are hashes, but an index file could be made to pile entries on one slot.
  return size_t(XXH3_64bits_withSeed(id, 32, seed_)) & (slots_.size() - 1);
}

size_t Index::Probe(const uint8_t* id) const {
  for (size_t i = Home(id);; i = (i + 1) & (slots_.size() - 1)) {
    if (slots_[i] == 0 || std::memcmp(Entry(slots_[i]), id, 32) == 0) return i;
  }
}

void Index::Reserve(size_t entries) {
  size_t want = slots_.empty() ? 64 : slots_.size();
  while (entries > want / 4 * 3) want *= 2;
  if (want == slots_.size()) return;
  std::vector<uint64_t> old = std::exchange(slots_, std::vector<uint64_t>(want, 0));
  for (uint64_t s : old) {
    if (s != 0) slots_[Probe(Entry(s))] = s;
  }
}

void Index::Insert(size_t body, size_t number) {
  const uint64_t slot = SlotOf(body, number);
  uint64_t& at = slots_[Probe(Entry(slot))];
  if (at != 0) return;  // the first location given stays
  at = slot;
  ++count_;
}

void Index::Add(const Id& id, const BlobLocation& loc) {
  std::lock_guard<std::mutex> l(mu_);
  Reserve(count_ + 1);
  uint64_t& at = slots_[Probe(id.bytes.data())];
  if (at != 0) return;  // the first location given stays
  std::vector<uint8_t>& added = bodies_[0];
  added.resize(added.size() + kEntrySize);
  PutEntry(added.data() + added.size() - kEntrySize, id, loc);
  at = SlotOf(0, added.size() / kEntrySize - 1);
  ++count_;
}

void Index::Remove(const Id& id) {
  std::lock_guard<std::mutex> l(mu_);
  if (slots_.empty()) return;
  size_t hole = Probe(id.bytes.data());
  if (slots_[hole] == 0) return;
  slots_[hole] = 0;
  --count_;
  // Backward shift: a later entry of the run moves into the hole when its home does not lie
  // between the hole and it (cyclically), so every entry stays reachable from its home.
  const size_t mask = slots_.size() - 1;
  for (size_t i = (hole + 1) & mask; slots_[i] != 0; i = (i + 1) & mask) {
    const size_t home = Home(Entry(slots_[i]));
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      slots_[hole] = std::exchange(slots_[i], 0);
      hole = i;
    }
  }
}

std::optional<BlobLocation> Index::Find(const Id& id) const {
  std::lock_guard<std::mutex> l(mu_);
  if (slots_.empty()) return std::nullopt;
  const uint64_t s = slots_[Probe(id.bytes.data())];
  if (s == 0) return std::nullopt;
  return LocationOf(Entry(s));
}

size_t Index::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return count_;
}

void Index::ForEach(const std::function<void(const Id&, const BlobLocation&)>& fn) const {
  std::lock_guard<std::mutex> l(mu_);
  for (uint64_t s : slots_) {
    if (s != 0) fn(IdOf(Entry(s)), LocationOf(Entry(s)));
  }
}

void Index::AddAll(FileEntries&& entries, const KeepFn& keep) {
  std::lock_guard<std::mutex> l(mu_);
  Reserve(count_ + entries.size());
  const size_t body = bodies_.size();
  bodies_.push_back(std::move(entries.body_));
  const size_t n = bodies_[body].size() / kEntrySize;
  for (size_t i = 0; i < n; ++i) {
    if (!keep) {
      Insert(body, i);
      continue;
    }
    const uint8_t* p = bodies_[body].data() + i * kEntrySize;
    if (keep(PackEntry{IdOf(p), LocationOf(p)})) Insert(body, i);
  }
}

std::vector<uint8_t> Index::EncodeFile(const BlobCodec& codec,
                                       const std::vector<PackEntry>& entries) {
  std::vector<uint8_t> body(entries.size() * kEntrySize);
  for (size_t i = 0; i < entries.size(); ++i)
    PutEntry(body.data() + i * kEntrySize, entries[i].id, entries[i].loc);
  std::vector<uint8_t> out(kIndexMagic, kIndexMagic + 8);
  std::vector<uint8_t> blob = codec.Encode(body, Aad());
  out.insert(out.end(), blob.begin(), blob.end());
  return out;
}

Result<Index::FileEntries> Index::DecodeEntries(const BlobCodec& codec,
                                                std::span<const uint8_t> file) {
  return DecodeEntries(codec, std::vector<uint8_t>(file.begin(), file.end()));
}

Result<Index::FileEntries> Index::DecodeEntries(const BlobCodec& codec,
                                                std::vector<uint8_t>&& file) {
  if (file.size() < 9 || std::memcmp(file.data(), kIndexMagic, 8) != 0) {
    return CorruptionError("index file: bad magic");
  }
  // An index body is at most a few bytes per blob more than its stored form.
  const size_t max_raw = std::max<size_t>(file.size() * 64, 1 << 20);
  FileEntries out;
  VMBACKUP_ASSIGN_OR_RETURN(out.body_, codec.Decode(std::move(file), 8, Aad(), max_raw));
  if (out.body_.size() % kEntrySize != 0) return CorruptionError("index file: truncated entry");
  if (out.size() >= (size_t(1) << kBodyShift))
    return CorruptionError("index file: more entries than an index holds");
  for (size_t i = 0; i < out.size(); ++i) {
    const uint8_t* p = out.body_.data() + i * kEntrySize;
    if (p[64] > 1)
      return CorruptionError(StrFormat("index file: entry %zu has blob type %u", i, p[64]));
    if (LoadLE32(p + 73) > kMaxBlob || LoadLE32(p + 77) > kMaxBlob) {
      return CorruptionError(StrFormat("index file: entry %zu has an absurd length", i));
    }
  }
  return out;
}

PackEntry Index::FileEntries::at(size_t i) const {
  const uint8_t* p = body_.data() + i * kEntrySize;
  return PackEntry{IdOf(p), LocationOf(p)};
}

Result<std::vector<PackEntry>> Index::DecodeFile(const BlobCodec& codec,
                                                 std::span<const uint8_t> file) {
  VMBACKUP_ASSIGN_OR_RETURN(FileEntries entries, DecodeEntries(codec, file));
  std::vector<PackEntry> out;
  out.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) out.push_back(entries.at(i));
  return out;
}

}  // namespace vmbackup::repo
