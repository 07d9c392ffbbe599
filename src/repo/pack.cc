#include "repo/pack.h"

#include <cstring>

#include "base/endian.h"
#include "base/strings.h"

namespace vmbackup::repo {
namespace {

constexpr char kPackMagic[8] = {'V', 'M', 'B', 'K', 'P', 'K', '0', '1'};
constexpr char kPackEndMagic[8] = {'V', 'M', 'B', 'K', 'P', 'K', 'E', '1'};
constexpr size_t kPackEntrySize = 1 + 32 + 8 + 4 + 4;

std::span<const uint8_t> Text(const char* s) {
  return {reinterpret_cast<const uint8_t*>(s), std::strlen(s)};
}
std::span<const uint8_t> Text(const char* s, size_t n) {
  return {reinterpret_cast<const uint8_t*>(s), n};
}

}  // namespace

std::vector<uint8_t> BlobAad(BlobType type, const Id& id) {
  std::vector<uint8_t> aad(33);
  aad[0] = uint8_t(type);
  std::memcpy(aad.data() + 1, id.bytes.data(), 32);
  return aad;
}

PackBuilder::PackBuilder(const BlobCodec& codec) : codec_(codec) {
  data_.append(Text(kPackMagic, 8));
}

void PackBuilder::Recycle(AlignedBuffer&& bytes) {
  if (spares_.size() < 4) spares_.push_back(std::move(bytes));
}

void PackBuilder::StreamSegments(size_t segment, std::function<void(AlignedBuffer&&)> sink) {
  segment_ = segment;
  sink_ = std::move(sink);
  reserve_ = segment;
  data_.reserve(segment);
}

AlignedBuffer PackBuilder::NextBuffer() {
  AlignedBuffer b;
  if (!spares_.empty()) {
    b = std::move(spares_.back());
    spares_.pop_back();
  }
  b.clear();
  b.reserve(reserve_);
  return b;
}

void PackBuilder::Put(std::span<const uint8_t> bytes) {
  while (segment_ != 0 && data_.size() + bytes.size() >= segment_) {
    const size_t n = segment_ - data_.size();
    data_.append(bytes.first(n));
    bytes = bytes.subspan(n);
    streamed_ += segment_;
    sink_(std::exchange(data_, NextBuffer()));
  }
  data_.append(bytes);
}

void PackBuilder::AddEntry(BlobType type, const Id& id, size_t stored_size, uint32_t raw_length) {
  PackEntry e;
  e.id = id;
  e.loc.type = type;
  e.loc.offset = bytes();
  e.loc.stored_length = uint32_t(stored_size);
  e.loc.raw_length = raw_length;
  entries_.push_back(e);
}

void PackBuilder::Add(BlobType type, const Id& id, std::span<const uint8_t> stored,
                      uint32_t raw_length) {
  AddEntry(type, id, stored.size(), raw_length);
  Put(stored);
}

void PackBuilder::Add(BlobType type, const Id& id, const EncodedBlob& blob, uint32_t raw_length) {
  AddEntry(type, id, blob.size(), raw_length);
  blob.AppendTo([&](std::span<const uint8_t> piece) { Put(piece); });
}

PackBuilder::Finished PackBuilder::Finish() {
  std::vector<uint8_t> trailer(entries_.size() * kPackEntrySize);
  for (size_t i = 0; i < entries_.size(); ++i) {
    uint8_t* p = trailer.data() + i * kPackEntrySize;
    const PackEntry& e = entries_[i];
    p[0] = uint8_t(e.loc.type);
    std::memcpy(p + 1, e.id.bytes.data(), 32);
    StoreLE64(p + 33, e.loc.offset);
    StoreLE32(p + 41, e.loc.stored_length);
    StoreLE32(p + 45, e.loc.raw_length);
  }
  std::vector<uint8_t> blob = codec_.Encode(trailer, Text("vmbackup pack trailer"));
  Put(blob);
  uint8_t tail[12];
  StoreLE32(tail, uint32_t(blob.size()));
  std::memcpy(tail + 4, kPackEndMagic, 8);
  Put({tail, 12});
  Finished f;
  f.id = Sha256(blob);
  f.bytes = std::exchange(data_, NextBuffer());
  f.entries = std::move(entries_);
  f.whole = streamed_ == 0;
  for (PackEntry& e : f.entries) e.loc.pack = f.id;
  data_.append(Text(kPackMagic, 8));
  streamed_ = 0;
  entries_.clear();
  return f;
}

Result<std::vector<PackEntry>> ReadPackEntries(storage::Backend& backend, const BlobCodec& codec,
                                               const Id& pack) {
  storage::ObjectRef ref{storage::ObjectType::kPack, pack.Hex()};
  VMBACKUP_ASSIGN_OR_RETURN(storage::ObjectInfo info, backend.Stat(ref));
  const std::string name = "pack " + pack.Hex();
  if (info.size < 8 + 12) return CorruptionError(name + ": too short");
  VMBACKUP_ASSIGN_OR_RETURN(auto tail, backend.LoadRange(ref, info.size - 12, 12));
  if (std::memcmp(tail.data() + 4, kPackEndMagic, 8) != 0)
    return CorruptionError(name + ": no end magic");
  uint32_t tlen = LoadLE32(tail.data());
  if (uint64_t(tlen) + 8 + 12 > info.size)
    return CorruptionError(name + ": trailer length past the start");
  VMBACKUP_ASSIGN_OR_RETURN(auto blob, backend.LoadRange(ref, info.size - 12 - tlen, tlen));
  auto trailer = codec.Decode(blob, Text("vmbackup pack trailer"), info.size);
  if (!trailer) return trailer.error().WithContext(name + ": trailer");
  if (trailer->size() % kPackEntrySize != 0) return CorruptionError(name + ": trailer size");
  std::vector<PackEntry> out;
  for (size_t i = 0; i < trailer->size() / kPackEntrySize; ++i) {
    const uint8_t* p = trailer->data() + i * kPackEntrySize;
    PackEntry e;
    e.loc.pack = pack;
    e.loc.type = BlobType(p[0]);
    std::memcpy(e.id.bytes.data(), p + 1, 32);
    e.loc.offset = LoadLE64(p + 33);
    e.loc.stored_length = LoadLE32(p + 41);
    e.loc.raw_length = LoadLE32(p + 45);
    if (p[0] > 1 || e.loc.offset < 8 ||
        e.loc.offset + e.loc.stored_length > info.size - 12 - tlen) {
      return CorruptionError(
          StrFormat("%s: trailer entry %zu points outside the blobs", name.c_str(), i));
    }
    out.push_back(e);
  }
  return out;
}

}  // namespace vmbackup::repo
