#include "format/vmdk/sparse_header.h"

#include <cstring>

#include "base/endian.h"

namespace vmbackup::vmdk {
namespace {
constexpr uint8_t kNewlineCheck[4] = {'\n', ' ', '\r', '\n'};
}

void EncodeSparseHeader(const SparseHeader& h, uint8_t* out) {
  std::memset(out, 0, 512);
  StoreLE32(out + 0, h.magic);
  StoreLE32(out + 4, h.version);
  StoreLE32(out + 8, h.flags);
  StoreLE64(out + 12, h.capacity);
  StoreLE64(out + 20, h.grain_size);
  StoreLE64(out + 28, h.descriptor_offset);
  StoreLE64(out + 36, h.descriptor_size);
  StoreLE32(out + 44, h.num_gtes_per_gt);
  StoreLE64(out + 48, h.rgd_offset);
  StoreLE64(out + 56, h.gd_offset);
  StoreLE64(out + 64, h.over_head);
  out[72] = h.unclean_shutdown;
  std::memcpy(out + 73, kNewlineCheck, 4);
  StoreLE16(out + 77, h.compress_algorithm);
}

SparseHeader DecodeSparseHeader(const uint8_t* in) {
  SparseHeader h;
  h.magic = LoadLE32(in + 0);
  h.version = LoadLE32(in + 4);
  h.flags = LoadLE32(in + 8);
  h.capacity = LoadLE64(in + 12);
  h.grain_size = LoadLE64(in + 20);
  h.descriptor_offset = LoadLE64(in + 28);
  h.descriptor_size = LoadLE64(in + 36);
  h.num_gtes_per_gt = LoadLE32(in + 44);
  h.rgd_offset = LoadLE64(in + 48);
  h.gd_offset = LoadLE64(in + 56);
  h.over_head = LoadLE64(in + 64);
  h.unclean_shutdown = in[72];
  h.newline_check_ok = std::memcmp(in + 73, kNewlineCheck, 4) == 0;
  h.compress_algorithm = LoadLE16(in + 77);
  return h;
}

void EncodeMetadataMarker(uint64_t sectors, uint32_t type, uint8_t* out) {
  std::memset(out, 0, 512);
  StoreLE64(out + 0, sectors);
  StoreLE32(out + 8, 0);
  StoreLE32(out + 12, type);
}

}  // namespace vmbackup::vmdk
