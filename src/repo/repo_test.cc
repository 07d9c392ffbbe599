#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "repo/blob_codec.h"
#include "repo/crypto.h"
#include "repo/index.h"
#include "repo/pack.h"

namespace vmbackup::repo {
namespace {

std::span<const uint8_t> Str(const char* s) {
  return {reinterpret_cast<const uint8_t*>(s), std::strlen(s)};
}

TEST(Crypto, KnownVectors) {
  EXPECT_EQ(Sha256(Str("abc")).Hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2, with the key zero-padded to 32 bytes (HMAC pads keys the same way).
  std::array<uint8_t, 32> key{};
  std::memcpy(key.data(), "Jefe", 4);
  EXPECT_EQ(HmacSha256(key, Str("what do ya want for nothing?")).Hex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  auto hex = FromHex("00ff 10\nAb");
  ASSERT_TRUE(hex);
  EXPECT_EQ(ToHex(*hex), "00ff10ab");
  EXPECT_FALSE(FromHex("abc"));
  EXPECT_FALSE(FromHex("zz"));
  EXPECT_EQ(Id::FromHex(Sha256(Str("x")).Hex())->Hex(), Sha256(Str("x")).Hex());
  EXPECT_FALSE(Id::FromHex("00"));
  EXPECT_TRUE(Id{}.is_zero());
}

TEST(Crypto, ScryptRfc7914Vector) {
  // RFC 7914 section 12, second vector.
  auto salt = Str("NaCl");
  auto k = Scrypt("password", salt, 1024, 8, 16, 64);
  ASSERT_TRUE(k);
  EXPECT_EQ(ToHex(*k).substr(0, 32), "fdbabe1c9d3472007856e7190d01e9fe");
}

TEST(Crypto, AesGcmDetectsTamperingWrongKeyAndAad) {
  std::array<uint8_t, 32> key{}, other{};
  key[0] = 1;
  other[0] = 2;
  auto sealed = AesGcmSeal(key, Str("secret disk bytes"), Str("aad"));
  ASSERT_TRUE(sealed);
  EXPECT_EQ(sealed->size(), 17 + kGcmNonceSize + kGcmTagSize);
  auto open = AesGcmOpen(key, *sealed, Str("aad"));
  ASSERT_TRUE(open);
  EXPECT_EQ(std::string(open->begin(), open->end()), "secret disk bytes");
  EXPECT_EQ(AesGcmOpen(other, *sealed, Str("aad")).error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(AesGcmOpen(key, *sealed, Str("other")).error().code(), ErrorCode::kCorruption);
  auto tampered = *sealed;
  tampered[kGcmNonceSize + 3] ^= 1;
  EXPECT_EQ(AesGcmOpen(key, tampered, Str("aad")).error().code(), ErrorCode::kCorruption);
  auto again = AesGcmSeal(key, Str("secret disk bytes"), Str("aad"));
  EXPECT_NE(*again, *sealed);  // a fresh nonce every time
}

TEST(Crypto, AesGcmOpenIntoFillsExactlyItsBuffer) {
  std::array<uint8_t, 32> key{};
  key[5] = 7;
  auto sealed = AesGcmSeal(key, Str("secret disk bytes"), Str("aad"));
  ASSERT_TRUE(sealed);
  EXPECT_EQ(*AesGcmPlainSize(*sealed), 17u);
  std::vector<uint8_t> out(17), longer(18);
  ASSERT_TRUE(AesGcmOpenInto(key, *sealed, Str("aad"), out).ok());
  EXPECT_EQ(std::string(out.begin(), out.end()), "secret disk bytes");
  EXPECT_EQ(AesGcmOpenInto(key, *sealed, Str("aad"), longer).code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(AesGcmOpenInto(key, *sealed, Str("bad"), out).code(), ErrorCode::kCorruption);
  EXPECT_EQ(AesGcmPlainSize(std::span<const uint8_t>(sealed->data(), 27)).error().code(),
            ErrorCode::kCorruption);
}

std::vector<uint8_t> Text(size_t n) {
  std::string line = "2026-11-22 host kernel: all is well\n";
  std::vector<uint8_t> v;
  while (v.size() < n) v.insert(v.end(), line.begin(), line.end());
  v.resize(n);
  return v;
}

std::vector<uint8_t> Random(size_t n) {
  std::mt19937_64 rng(5);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// The warm-up runs beside callers of the generator: every caller gets bytes of its own (none
// repeated, none left zero), and the warm-up's thread is joined when it goes.
TEST(Crypto, RandomBytesWhileOpenSslWarmsUp) {
  std::vector<std::vector<uint8_t>> got(8);
  {
    CryptoWarmUp warm_up;
    std::vector<std::thread> callers;
    for (auto& g : got) callers.emplace_back([&g] { g = RandomBytes(32); });
    for (auto& t : callers) t.join();
  }
  std::set<std::vector<uint8_t>> distinct(got.begin(), got.end());
  EXPECT_EQ(distinct.size(), got.size());
  EXPECT_FALSE(distinct.count(std::vector<uint8_t>(32, 0)));
}

TEST(BlobCodec, PlainCompressesOnlyWhenItPays) {
  BlobCodec codec(std::nullopt);
  auto text = Text(65536), random = Random(65536);
  auto t = codec.Encode(text, {});
  EXPECT_EQ(t[0], kBlobCompressed | kBlobChecksummed);
  EXPECT_LT(t.size(), 4096u);
  auto r = codec.Encode(random, {});
  EXPECT_EQ(r[0], kBlobChecksummed);
  EXPECT_EQ(r.size(), random.size() + 1 + 8);
  EXPECT_EQ(*codec.Decode(t, {}, 65536), text);
  EXPECT_EQ(*codec.Decode(r, {}, 65536), random);
  EXPECT_EQ(codec.IdOf(text), Sha256(text));
  // Bounds: a frame that claims more than the index allows is refused before allocating.
  EXPECT_EQ(codec.Decode(t, {}, 1000).error().code(), ErrorCode::kCorruption);
}

// Decoding a whole file in place (after a header) gives what decoding a copy gives, keeps the
// file's memory for a plain blob, and still checks sizes and checksums.
TEST(BlobCodec, DecodesAFileInItsOwnMemory) {
  const std::vector<uint8_t> aad = {1, 2, 3};
  auto in_file = [](const std::vector<uint8_t>& blob) {  // a 4-byte header, then the blob
    std::vector<uint8_t> f(4 + blob.size(), 'h');
    std::copy(blob.begin(), blob.end(), f.begin() + 4);
    return f;
  };
  BlobCodec plain(std::nullopt);
  auto random = Random(100000), text = Text(100000);
  std::vector<uint8_t> file = in_file(plain.Encode(random, aad));
  const uint8_t* memory = file.data();
  auto got = plain.Decode(std::move(file), 4, aad, 1 << 20);
  ASSERT_TRUE(got) << got.error().ToString();
  EXPECT_EQ(*got, random);
  EXPECT_EQ(got->data(), memory);
  EXPECT_EQ(*plain.Decode(in_file(plain.Encode(text, aad)), 4, aad, 1 << 20), text);
  EXPECT_EQ(plain.Decode(in_file(plain.Encode(random, aad)), 4, aad, 1000).error().code(),
            ErrorCode::kCorruption);
  std::vector<uint8_t> damaged = in_file(plain.Encode(random, aad));
  damaged[5000] ^= 1;
  EXPECT_EQ(plain.Decode(std::move(damaged), 4, aad, 1 << 20).error().code(),
            ErrorCode::kCorruption);
  EXPECT_EQ(plain.Decode(in_file(plain.Encode(random, aad)), 4, {}, 1 << 20).error().code(),
            ErrorCode::kCorruption);  // another blob's aad
  EXPECT_FALSE(plain.Decode(std::vector<uint8_t>(3), 4, aad, 1 << 20));

  BlobCodec sealed(*MasterKey::FromBytes(RandomBytes(64)));
  EXPECT_EQ(*sealed.Decode(in_file(sealed.Encode(random, aad)), 4, aad, 1 << 20), random);
}

// The table against a std::map doing the same: adds (first location kept), removals from the
// middle of probe runs (a wrong backward shift loses entries behind the hole), growth, and
// files added whole, in a random order of operations.
TEST(Index, AgreesWithAMapThroughAddsRemovalsAndGrowth) {
  Index index;
  std::map<Id, BlobLocation> want;
  std::mt19937_64 rng(7);
  auto id = [](uint64_t n) { return Sha256(Str(("blob " + std::to_string(n)).c_str())); };
  auto loc = [](uint64_t n) {
    return BlobLocation{Sha256(Str(std::to_string(n).c_str())), BlobType(n % 2), n, uint32_t(n),
                        uint32_t(n / 2)};
  };
  BlobCodec codec(std::nullopt);
  for (int round = 0; round < 20000; ++round) {
    const uint64_t n = rng() % 3000;
    switch (rng() % 4) {
      case 0:
      case 1:
        index.Add(id(n), loc(n + round));
        want.emplace(id(n), loc(n + round));
        break;
      case 2:
        index.Remove(id(n));
        want.erase(id(n));
        break;
      default:
        if (round % 500 == 0) {  // a file of 200 entries, some known already
          std::vector<PackEntry> file;
          for (uint64_t i = 0; i < 200; ++i) file.push_back({id(n + i), loc(n + i + 7)});
          auto decoded = Index::DecodeEntries(codec, Index::EncodeFile(codec, file));
          ASSERT_TRUE(decoded);
          index.AddAll(std::move(*decoded), nullptr);
          for (const PackEntry& e : file) want.emplace(e.id, e.loc);
        }
    }
  }
  ASSERT_EQ(index.size(), want.size());
  size_t seen = 0;
  index.ForEach([&](const Id& i, const BlobLocation& l) {
    ++seen;
    auto it = want.find(i);
    ASSERT_NE(it, want.end());
    EXPECT_EQ(l.offset, it->second.offset);
  });
  EXPECT_EQ(seen, want.size());
  for (uint64_t n = 0; n < 3300; ++n) {
    auto got = index.Find(id(n));
    auto it = want.find(id(n));
    ASSERT_EQ(got.has_value(), it != want.end()) << n;
    if (got) {
      EXPECT_EQ(got->pack, it->second.pack);
      EXPECT_EQ(got->offset, it->second.offset);
      EXPECT_EQ(got->raw_length, it->second.raw_length);
    }
  }
  Index empty;
  EXPECT_FALSE(empty.Find(id(1)));
  empty.Remove(id(1));
  EXPECT_EQ(empty.size(), 0u);
}

// An index file loads all or nothing: one bad entry anywhere refuses the file. Entries already
// known keep their first location; the filter drops entries (damaged copies).
TEST(Index, FilesLoadWholeOrNotAtAll) {
  BlobCodec codec(std::nullopt);
  auto id = [](size_t i, const char* what) {
    return Sha256(Str((std::string(what) + std::to_string(i)).c_str()));
  };
  std::vector<PackEntry> entries(3000);
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].id = id(i, "blob");
    entries[i].loc = {id(i, "pack"), BlobType(i % 2), i * 1000, uint32_t(i), uint32_t(2 * i)};
  }
  Index index;
  const BlobLocation first{id(0, "other pack"), BlobType::kChunk, 7, 8, 9};
  index.Add(entries[5].id, first);
  auto file = Index::EncodeFile(codec, entries);
  auto decoded = Index::DecodeEntries(codec, file);
  ASSERT_TRUE(decoded) << decoded.error().ToString();
  ASSERT_EQ(decoded->size(), entries.size());
  index.AddAll(std::move(*decoded), [&](const PackEntry& e) { return e.id != entries[9].id; });
  EXPECT_EQ(index.size(), entries.size() - 1);
  EXPECT_FALSE(index.Find(entries[9].id));
  EXPECT_EQ(index.Find(entries[5].id)->offset, 7u);
  for (size_t i : {size_t(0), size_t(1), size_t(2999)}) {
    auto loc = index.Find(entries[i].id);
    ASSERT_TRUE(loc);
    EXPECT_EQ(loc->pack, entries[i].loc.pack);
    EXPECT_EQ(loc->type, entries[i].loc.type);
    EXPECT_EQ(loc->offset, entries[i].loc.offset);
    EXPECT_EQ(loc->stored_length, entries[i].loc.stored_length);
    EXPECT_EQ(loc->raw_length, entries[i].loc.raw_length);
  }
  EXPECT_EQ(Index::DecodeFile(codec, file)->size(), entries.size());

  entries.back().loc.type = BlobType(7);  // damage in the last entry only
  auto bad = Index::DecodeEntries(codec, Index::EncodeFile(codec, entries));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::kCorruption);
  entries.back().loc.type = BlobType::kChunk;
  entries.back().loc.raw_length = 1u << 30;
  EXPECT_FALSE(Index::DecodeEntries(codec, Index::EncodeFile(codec, entries)));
}

// The 4 KiB sample decides: a chunk that starts random is stored as it is (the price of not
// compressing every random chunk whole), one that starts compressible is compressed.
TEST(BlobCodec, ASampleDecidesWhetherToCompress) {
  BlobCodec codec(std::nullopt);
  auto random_head = Text(65536), text_head = Text(65536);
  auto noise = Random(4096);
  std::copy(noise.begin(), noise.end(), random_head.begin());
  std::copy(noise.begin(), noise.end(), text_head.end() - 4096);
  EXPECT_EQ(codec.Encode(random_head, {})[0], kBlobChecksummed);
  EXPECT_EQ(codec.Encode(text_head, {})[0], kBlobCompressed | kBlobChecksummed);
  EXPECT_EQ(*codec.Decode(codec.Encode(random_head, {}), {}, 65536), random_head);
  // Small blobs have no sample: compressed whole when it pays.
  EXPECT_EQ(codec.Encode(Text(8192), {})[0], kBlobCompressed | kBlobChecksummed);
}

// Version 2 blobs carry a checksum: a flipped byte anywhere fails the decode, even where
// neither zstd nor the format would notice (an uncompressed payload), and so does a blob
// decoded under another aad (another id).
TEST(BlobCodec, ChecksumCatchesEveryDamage) {
  BlobCodec codec(std::nullopt);
  auto random = Random(65536), text = Text(65536);
  for (const auto& plain : {random, text}) {
    auto blob = codec.Encode(plain, Str("chunk A"));
    std::vector<uint8_t> out(plain.size());
    bool bound = false;
    ASSERT_TRUE(codec.DecodeInto(blob, Str("chunk A"), out, &bound).ok());
    EXPECT_TRUE(bound);
    EXPECT_EQ(out, plain);
    for (size_t at : {size_t(1), blob.size() / 2, blob.size() - 3}) {
      auto bad = blob;
      bad[at] ^= 0x10;
      Status s = codec.DecodeInto(bad, Str("chunk A"), out);
      EXPECT_EQ(s.code(), ErrorCode::kCorruption) << "byte " << at;
    }
    EXPECT_EQ(codec.DecodeInto(blob, Str("chunk B"), out).code(), ErrorCode::kCorruption);
    EXPECT_EQ(codec.Decode(blob, Str("chunk B"), 65536).error().code(), ErrorCode::kCorruption);
    std::vector<uint8_t> small(plain.size() - 1);  // the index promised another size
    EXPECT_EQ(codec.DecodeInto(blob, Str("chunk A"), small).code(), ErrorCode::kCorruption);
  }
  // Too short to hold its checksum, and a checksum flag on an encrypted blob.
  EXPECT_EQ(codec.Decode(std::vector<uint8_t>{kBlobChecksummed, 1, 2}, {}, 10).error().code(),
            ErrorCode::kCorruption);
  BlobCodec encrypted(*MasterKey::FromBytes(RandomBytes(64)));
  auto sealed = encrypted.Encode(text, Str("a"));
  EXPECT_EQ(sealed[0] & kBlobChecksummed, 0);  // a plaintext checksum would leak content
  sealed[0] |= kBlobChecksummed;
  EXPECT_EQ(encrypted.Decode(sealed, Str("a"), 65536).error().code(), ErrorCode::kCorruption);
}

// Version 1 blobs have no checksum: they decode, but prove nothing (the reader re-hashes).
TEST(BlobCodec, VersionOneBlobsHaveNoChecksum) {
  BlobCodec v1(std::nullopt, /*checksums=*/false), v2(std::nullopt);
  auto random = Random(65536);
  auto blob = v1.Encode(random, Str("x"));
  EXPECT_EQ(blob[0], 0);
  EXPECT_EQ(blob.size(), random.size() + 1);
  std::vector<uint8_t> out(random.size());
  bool bound = true;
  ASSERT_TRUE(v2.DecodeInto(blob, Str("x"), out, &bound).ok());
  EXPECT_FALSE(bound);
  EXPECT_EQ(out, random);
}

TEST(BlobCodec, EncryptedRoundTripKeyedIdsAndNoPlaintext) {
  auto key = MasterKey::FromBytes(RandomBytes(64));
  ASSERT_TRUE(key);
  BlobCodec codec(*key), other(*MasterKey::FromBytes(RandomBytes(64))), plain(std::nullopt);
  auto text = Text(65536);
  auto blob = codec.Encode(text, Str("aad"));
  EXPECT_EQ(blob[0], kBlobCompressed | kBlobEncrypted);
  EXPECT_EQ(*codec.Decode(blob, Str("aad"), 65536), text);
  std::vector<uint8_t> out(text.size());
  bool bound = false;
  ASSERT_TRUE(codec.DecodeInto(blob, Str("aad"), out, &bound).ok());
  EXPECT_TRUE(bound);  // the GCM tag, over the aad, proves it
  EXPECT_EQ(out, text);
  EXPECT_EQ(codec.DecodeInto(blob, Str("other aad"), out).code(), ErrorCode::kCorruption);
  EXPECT_EQ(other.Decode(blob, Str("aad"), 65536).error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(plain.Decode(blob, Str("aad"), 65536).error().code(), ErrorCode::kCorruption);
  EXPECT_NE(codec.IdOf(text), Sha256(text));
  EXPECT_NE(codec.IdOf(text), other.IdOf(text));
  auto random = Random(65536);
  auto rb = codec.Encode(random, Str("aad"));
  std::string stored(rb.begin(), rb.end()), needle(random.begin() + 100, random.begin() + 132);
  EXPECT_EQ(stored.find(needle), std::string::npos);
  EXPECT_EQ(MasterKey::FromBytes(RandomBytes(10)).error().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace vmbackup::repo
