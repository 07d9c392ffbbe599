// The hosted sparse extent header ("KDMV", FORMATS.md section 1.3) and stream markers
// (section 1.4): byte-exact encode/decode, no validation (see hosted_sparse.h for that).
#pragma once

#include <cstdint>

namespace vmbackup::vmdk {

inline constexpr uint32_t kSparseMagic = 0x564D444B;  // "KDMV" read as little-endian u32
inline constexpr uint32_t kCowdMagic = 0x44574F43;    // "COWD"
inline constexpr uint64_t kSeSparseMagic = 0xCAFEBABE;
inline constexpr uint64_t kGdAtEnd = 0xFFFFFFFFFFFFFFFFull;
inline constexpr uint32_t kGtesPerGt = 512;

// Header flag bits.
inline constexpr uint32_t kFlagNewlineCheck = 0x1;
inline constexpr uint32_t kFlagRedundantGd = 0x2;
inline constexpr uint32_t kFlagZeroedGrainGte = 0x4;
inline constexpr uint32_t kFlagCompressed = 0x10000;
inline constexpr uint32_t kFlagMarkers = 0x20000;

inline constexpr uint16_t kCompressionDeflate = 1;

// Stream marker types (a marker with size 0 is a metadata marker).
inline constexpr uint32_t kMarkerEos = 0;
inline constexpr uint32_t kMarkerGrainTable = 1;
inline constexpr uint32_t kMarkerGrainDirectory = 2;
inline constexpr uint32_t kMarkerFooter = 3;

struct SparseHeader {
  uint32_t magic = kSparseMagic;
  uint32_t version = 1;
  uint32_t flags = kFlagNewlineCheck | kFlagRedundantGd;
  uint64_t capacity = 0;      // sectors
  uint64_t grain_size = 128;  // sectors
  uint64_t descriptor_offset = 0;
  uint64_t descriptor_size = 0;
  uint32_t num_gtes_per_gt = kGtesPerGt;
  uint64_t rgd_offset = 0;
  uint64_t gd_offset = 0;
  uint64_t over_head = 0;
  uint8_t unclean_shutdown = 0;
  bool newline_check_ok = true;  // decode only: the four check bytes are intact
  uint16_t compress_algorithm = 0;
};

// Writes the 512-byte header (with the newline-check bytes) into `out`.
void EncodeSparseHeader(const SparseHeader& h, uint8_t* out);
SparseHeader DecodeSparseHeader(const uint8_t* in);

// A 512-byte metadata marker (size 0) of `type` announcing `sectors` sectors.
void EncodeMetadataMarker(uint64_t sectors, uint32_t type, uint8_t* out);

}  // namespace vmbackup::vmdk
