#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <lz4.h>

#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "frame.hpp"

namespace rgpu {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;

Bytes random_bytes(size_t size, uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  Bytes out(size);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// Repeating text: compresses well.
Bytes text_bytes(size_t size) {
  static constexpr std::string_view kText = "cuMemcpyHtoD(dst, src, 4096); vkQueueSubmit(queue, 1, &submit, fence);\n";
  Bytes out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(kText[i % kText.size()]);
  return out;
}

template <typename T>
void patch(Bytes& wire, size_t offset, T value) {
  std::memcpy(wire.data() + offset, &value, sizeof value);
}
template <typename T>
T peek(const Bytes& wire, size_t offset) {
  T value;
  std::memcpy(&value, wire.data() + offset, sizeof value);
  return value;
}
// Header field offsets (docs/protocol.md).
constexpr size_t kOffVersion = 4, kOffFlags = 8, kOffReserved = 10, kOffLen = 12;

Frame decode_one(const Bytes& wire, uint32_t max_payload = kMaxFramePayload) {
  FrameDecoder decoder(max_payload);
  decoder.feed(wire);
  auto frame = decoder.next();
  if (!frame) throw std::logic_error("decoder wants more bytes");
  EXPECT_EQ(decoder.buffered(), 0u);
  EXPECT_FALSE(decoder.next().has_value());
  return std::move(*frame);
}

template <typename F>
void expect_frame_error(F&& action, const std::string& needle) {
  try {
    action();
    ADD_FAILURE() << "no FrameError; expected one mentioning \"" << needle << "\"";
  } catch (const FrameError& e) {
    EXPECT_THAT(e.what(), HasSubstr(needle));
  }
}

void expect_decode_error(const Bytes& wire, const std::string& needle, uint32_t max_payload = kMaxFramePayload) {
  expect_frame_error([&] { decode_one(wire, max_payload); }, needle);
}

Bytes header_only(const FrameHeader& header) {
  Bytes out(kFrameHeaderSize);
  std::memcpy(out.data(), &header, sizeof header);
  return out;
}

bool compressed_on_wire(const Bytes& wire) { return (peek<uint16_t>(wire, kOffFlags) & kFrameCompressed) != 0; }

// ---- Round trips ----

TEST(FrameEncode, HeaderLayoutIsLittleEndian) {
  const Bytes payload{1, 2, 3};
  const Bytes wire = encode_frame(0x1234, 0x0102030405060708ull, payload, kFrameNoReply);
  ASSERT_EQ(wire.size(), kFrameHeaderSize + 3);
  const Bytes expected{'R', 'G', 'P', 'U', kProtocolVersion, 0, 0x34, 0x12, 2, 0, 0, 0, 3, 0, 0, 0,
                       8, 7, 6, 5, 4, 3, 2, 1, 1, 2, 3};
  EXPECT_EQ(wire, expected);
}

TEST(FrameRoundTrip, EmptyPayload) {
  const Bytes wire = encode_frame(18, 7, {});
  ASSERT_EQ(wire.size(), kFrameHeaderSize);
  const Frame frame = decode_one(wire);
  EXPECT_EQ(frame.header.type, 18);
  EXPECT_EQ(frame.header.request_id, 7u);
  EXPECT_EQ(frame.header.payload_len, 0u);
  EXPECT_TRUE(frame.payload.empty());
}

TEST(FrameRoundTrip, OneByte) {
  const Bytes payload{0xa5};
  const Frame frame = decode_one(encode_frame(1, 1, payload));
  EXPECT_EQ(frame.payload, payload);
  EXPECT_EQ(frame.header.payload_len, 1u);
}

TEST(FrameRoundTrip, SizesAroundCompressMinSize) {
  for (size_t size : {kCompressMinSize - 2, kCompressMinSize - 1, kCompressMinSize, kCompressMinSize + 1,
                      2 * kCompressMinSize, size_t{8191}, size_t{8192}, size_t{8193}}) {
    SCOPED_TRACE(size);
    const Bytes payload(size, 0);
    const Bytes wire = encode_frame(17, size, payload);
    if (size < kCompressMinSize) {
      EXPECT_FALSE(compressed_on_wire(wire));
      EXPECT_EQ(wire.size(), kFrameHeaderSize + size);
    } else {
      EXPECT_TRUE(compressed_on_wire(wire));
      EXPECT_LT(wire.size(), kFrameHeaderSize + size);
    }
    const Frame frame = decode_one(wire);
    EXPECT_EQ(frame.payload, payload);
    EXPECT_EQ(frame.header.payload_len, size);
    EXPECT_EQ(frame.header.flags, 0) << "the compressed flag is cleared once the payload is decompressed";
  }
}

TEST(FrameRoundTrip, RandomMebibyteIsSentAsIs) {
  const Bytes payload = random_bytes(1 << 20);
  const Bytes wire = encode_frame(0x101, 42, payload);
  EXPECT_FALSE(compressed_on_wire(wire));
  ASSERT_EQ(wire.size(), kFrameHeaderSize + payload.size());
  EXPECT_EQ(peek<uint32_t>(wire, kOffLen), payload.size());
  EXPECT_EQ(decode_one(wire).payload, payload);
}

TEST(FrameRoundTrip, RandomSmallPayloadIsNotCompressed) {
  for (size_t size : {size_t{600}, size_t{4096}, size_t{20000}}) {
    const Bytes wire = encode_frame(1, 1, random_bytes(size, size));
    EXPECT_FALSE(compressed_on_wire(wire)) << size;
    EXPECT_EQ(wire.size(), kFrameHeaderSize + size);
  }
}

TEST(FrameRoundTrip, CompressibleMebibyteIsCompressed) {
  const Bytes payload = text_bytes(1 << 20);
  const Bytes wire = encode_frame(0x101, 42, payload);
  EXPECT_TRUE(compressed_on_wire(wire));
  EXPECT_LT(wire.size(), payload.size() / 8);
  EXPECT_EQ(peek<uint32_t>(wire, kOffLen), wire.size() - kFrameHeaderSize);
  EXPECT_EQ(peek<uint32_t>(wire, kFrameHeaderSize), payload.size()) << "u32 original size leads the payload";
  const Frame frame = decode_one(wire);
  EXPECT_EQ(frame.payload, payload);
  EXPECT_EQ(frame.header.payload_len, payload.size());
}

TEST(FrameRoundTrip, CompressionNeverKeepsPayloadAsIs) {
  const Bytes payload = text_bytes(1 << 16);
  const Bytes wire = encode_frame(1, 1, payload, 0, Compression::Never);
  EXPECT_FALSE(compressed_on_wire(wire));
  EXPECT_EQ(wire.size(), kFrameHeaderSize + payload.size());
  EXPECT_EQ(decode_one(wire).payload, payload);
}

TEST(FrameRoundTrip, CallerCannotForceCompressedFlag) {
  const Bytes payload{1, 2, 3};
  const Bytes wire = encode_frame(1, 1, payload, kFrameCompressed);
  EXPECT_FALSE(compressed_on_wire(wire));
  EXPECT_EQ(decode_one(wire).payload, payload);
}

TEST(FrameRoundTrip, NoReplyFlagPreserved) {
  for (const Bytes& payload : {Bytes{9}, text_bytes(100000), random_bytes(100000)}) {
    const Bytes wire = encode_frame(0x201, 5, payload, kFrameNoReply);
    EXPECT_TRUE(peek<uint16_t>(wire, kOffFlags) & kFrameNoReply);
    const Frame frame = decode_one(wire);
    EXPECT_EQ(frame.header.flags, kFrameNoReply);
    EXPECT_EQ(frame.payload, payload);
  }
  EXPECT_EQ(decode_one(encode_frame(1, 1, Bytes{1})).header.flags, 0);
}

TEST(FrameRoundTrip, RequestIdsUpToMax) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, uint64_t{0xffffffff}, uint64_t{1} << 32, kMax - 1, kMax}) {
    const Frame frame = decode_one(encode_frame(0xffff, id, Bytes{1, 2}));
    EXPECT_EQ(frame.header.request_id, id);
    EXPECT_EQ(frame.header.type, 0xffff);
    EXPECT_EQ(frame.header.version, kProtocolVersion);
  }
}

TEST(FrameEncode, RejectsPayloadOverLimit) {
  const Bytes payload(size_t{kMaxFramePayload} + 1);
  expect_frame_error([&] { encode_frame(1, 1, payload); }, "over the frame limit");
}

// ---- Incremental decoding ----

struct Stream {
  Bytes wire;
  std::vector<Bytes> payloads;
};

Stream several_frames() {
  Stream s;
  const std::vector<Bytes> payloads{{}, {7}, text_bytes(5000), random_bytes(3000), Bytes(kCompressMinSize, 0),
                                    text_bytes(70000), {1, 2, 3}};
  for (size_t i = 0; i < payloads.size(); ++i) {
    const Bytes frame = encode_frame(static_cast<uint16_t>(i + 1), 1000 + i, payloads[i]);
    s.wire.insert(s.wire.end(), frame.begin(), frame.end());
  }
  s.payloads = payloads;
  return s;
}

void expect_stream(const std::vector<Frame>& frames, const Stream& s) {
  ASSERT_EQ(frames.size(), s.payloads.size());
  for (size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].header.type, i + 1);
    EXPECT_EQ(frames[i].header.request_id, 1000 + i);
    EXPECT_EQ(frames[i].payload, s.payloads[i]) << "frame " << i;
  }
}

TEST(FrameDecoder, ByteByByte) {
  const Stream s = several_frames();
  FrameDecoder decoder;
  std::vector<Frame> frames;
  for (uint8_t byte : s.wire) {
    decoder.feed({&byte, 1});
    while (auto frame = decoder.next()) frames.push_back(std::move(*frame));
  }
  expect_stream(frames, s);
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameDecoder, RandomChunkSplits) {
  const Stream s = several_frames();
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<size_t> chunk(1, seed % 2 ? 64 : 40000);
    FrameDecoder decoder;
    std::vector<Frame> frames;
    for (size_t pos = 0; pos < s.wire.size();) {
      const size_t n = std::min(chunk(rng), s.wire.size() - pos);
      decoder.feed({s.wire.data() + pos, n});
      pos += n;
      while (auto frame = decoder.next()) frames.push_back(std::move(*frame));
    }
    expect_stream(frames, s);
    EXPECT_EQ(decoder.buffered(), 0u);
  }
}

TEST(FrameDecoder, AllAtOnce) {
  const Stream s = several_frames();
  FrameDecoder decoder;
  decoder.feed(s.wire);
  std::vector<Frame> frames;
  while (auto frame = decoder.next()) frames.push_back(std::move(*frame));
  expect_stream(frames, s);
}

// Several MiB through one decoder, never drained completely: exercises the buffer compaction.
TEST(FrameDecoder, LongStreamKeepsFramesIntact) {
  std::vector<Bytes> payloads;
  Bytes wire;
  for (uint64_t i = 0; i < 24; ++i) {
    payloads.push_back(i % 3 ? random_bytes(300000 + i, i) : text_bytes(300000 + i));
    const Bytes frame = encode_frame(1, i, payloads.back());
    wire.insert(wire.end(), frame.begin(), frame.end());
  }
  FrameDecoder decoder;
  size_t got = 0;
  constexpr size_t kChunk = 100003;  // never on a frame boundary
  for (size_t pos = 0; pos < wire.size(); pos += kChunk) {
    decoder.feed({wire.data() + pos, std::min(kChunk, wire.size() - pos)});
    while (auto frame = decoder.next()) {
      ASSERT_LT(got, payloads.size());
      EXPECT_EQ(frame->header.request_id, got);
      EXPECT_EQ(frame->payload, payloads[got]);
      ++got;
    }
  }
  EXPECT_EQ(got, payloads.size());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameDecoder, PartialFrameWaitsForMore) {
  const Bytes wire = encode_frame(1, 1, random_bytes(100));
  FrameDecoder decoder;
  decoder.feed({wire.data(), kFrameHeaderSize - 1});
  EXPECT_FALSE(decoder.next());
  decoder.feed({wire.data() + kFrameHeaderSize - 1, 51});
  EXPECT_FALSE(decoder.next());
  EXPECT_EQ(decoder.buffered(), kFrameHeaderSize + 50);
  decoder.feed({wire.data() + kFrameHeaderSize + 50, 50});
  EXPECT_TRUE(decoder.next());
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameDecoder, OtherProtocolVersionIsNotRejected) {
  for (uint16_t version : {uint16_t{0}, uint16_t{2}, uint16_t{0xffff}}) {
    Bytes wire = encode_frame(1, 3, Bytes{4, 5});
    patch<uint16_t>(wire, kOffVersion, version);
    const Frame frame = decode_one(wire);
    EXPECT_EQ(frame.header.version, version);
    EXPECT_EQ(frame.payload, (Bytes{4, 5}));
  }
}

// ---- Malformed frames ----

TEST(FrameMalformed, BadMagic) {
  Bytes wire = encode_frame(1, 1, Bytes{1});
  wire[0] = 'X';
  expect_decode_error(wire, "bad frame magic 0x55504758");
  patch<uint32_t>(wire, 0, 0x52504755);  // byte-swapped "RGPU"
  expect_decode_error(wire, "magic");
}

TEST(FrameMalformed, UnknownFlagBits) {
  for (uint16_t bit = 2; bit < 16; ++bit) {
    Bytes wire = encode_frame(1, 1, Bytes{1});
    patch<uint16_t>(wire, kOffFlags, static_cast<uint16_t>(1u << bit));
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%04x", 1u << bit);
    expect_decode_error(wire, std::string("unknown flag bits ") + hex);
  }
}

TEST(FrameMalformed, LinkFlagsAreKnownOnlyToTheirLink) {
  Bytes wire = encode_frame(1, 1, Bytes{1});
  patch<uint16_t>(wire, kOffFlags, 1u << 2);
  expect_decode_error(wire, "unknown flag bits 0x0004");
  FrameDecoder decoder(kMaxFramePayload, 1u << 2);
  decoder.feed(wire);
  auto frame = decoder.next();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->header.flags, 1u << 2);
}

TEST(FrameMalformed, NonZeroReserved) {
  Bytes wire = encode_frame(1, 1, Bytes{1});
  patch<uint16_t>(wire, kOffReserved, 0x0100);
  expect_decode_error(wire, "reserved");
}

TEST(FrameMalformed, PayloadOverMaxDetectedFromHeaderAlone) {
  FrameHeader header;
  header.payload_len = kMaxFramePayload + 1;
  FrameDecoder decoder;
  decoder.feed(header_only(header));
  expect_frame_error([&] { decoder.next(); }, "over the limit of " + std::to_string(kMaxFramePayload));
  expect_frame_error([&] { validate_header(header); }, "over the limit");

  header.payload_len = kMaxFramePayload;  // at the limit: waits for the payload
  FrameDecoder at_limit;
  at_limit.feed(header_only(header));
  EXPECT_FALSE(at_limit.next());
}

TEST(FrameMalformed, PayloadOverDecoderLimit) {
  constexpr uint32_t kLimit = 4096;
  EXPECT_EQ(decode_one(encode_frame(1, 1, random_bytes(kLimit)), kLimit).payload.size(), kLimit);
  expect_decode_error(encode_frame(1, 1, random_bytes(kLimit + 1)), "over this link's limit of 4096", kLimit);

  FrameHeader header;
  header.payload_len = kLimit + 1;
  FrameDecoder decoder(kLimit);
  decoder.feed(header_only(header));
  expect_frame_error([&] { decoder.next(); }, "over this link's limit");
}

TEST(FrameMalformed, CompressedSizeOverDecoderLimit) {
  constexpr uint32_t kLimit = 4096;
  const Bytes wire = encode_frame(1, 1, Bytes(kLimit + 1, 0));
  ASSERT_TRUE(compressed_on_wire(wire));
  ASSERT_LT(wire.size(), kFrameHeaderSize + kLimit);  // small on the wire, too big once decompressed
  expect_decode_error(wire, "claims 4097 bytes, over the limit of 4096", kLimit);
  EXPECT_EQ(decode_one(encode_frame(1, 1, Bytes(kLimit, 0)), kLimit).payload.size(), kLimit);
}

TEST(FrameMalformed, CompressedSizeOverFrameMax) {
  Bytes wire = encode_frame(1, 1, Bytes(1000, 0));
  ASSERT_TRUE(compressed_on_wire(wire));
  patch<uint32_t>(wire, kFrameHeaderSize, kMaxFramePayload + 1);
  expect_decode_error(wire, "claims " + std::to_string(kMaxFramePayload + 1) + " bytes");
  expect_frame_error([&] { decompress_payload(Bytes(wire.begin() + kFrameHeaderSize, wire.end())); }, "claims");
}

// 628 bytes that claim 64 MiB: lz4 cannot encode that much in so few bytes, so the claim is
// refused before anything is allocated, at every stage.
TEST(FrameMalformed, CompressedClaimBeyondWhatLz4CanEncode) {
  Bytes payload(628, 0);
  const uint32_t claimed = 64u << 20;
  std::memcpy(payload.data(), &claimed, sizeof claimed);
  expect_frame_error([&] { decompress_payload(payload); }, "more than lz4 can encode");
  // A real block at the 255x bound still decodes.
  const Bytes zeros(255 * 1000, 0);
  const Bytes wire = encode_frame(1, 1, zeros);
  ASSERT_TRUE(compressed_on_wire(wire));
  EXPECT_EQ(decode_one(wire).payload, zeros);
}

// Before authentication nothing compressed is taken, whatever size it claims.
TEST(FrameMalformed, CompressedFrameRefusedWhereTheLinkTakesNone) {
  const Bytes wire = encode_frame(1, 1, Bytes(2000, 0));
  ASSERT_TRUE(compressed_on_wire(wire));
  FrameDecoder decoder;
  decoder.set_limits(kHandshakeLimits);
  decoder.feed(wire);
  expect_frame_error([&] { decoder.next(); }, "compressed frame before authentication");
}

TEST(FrameMalformed, CorruptLz4Block) {
  const Bytes wire = encode_frame(1, 1, text_bytes(4000));
  ASSERT_TRUE(compressed_on_wire(wire));
  // A block of 0xff bytes announces endless literal lengths.
  Bytes garbage = wire;
  std::fill(garbage.begin() + kFrameHeaderSize + 4, garbage.end(), 0xff);
  expect_decode_error(garbage, "corrupt");
  // A match offset pointing before the start of the output.
  Bytes bad_offset(kFrameHeaderSize);
  std::memcpy(bad_offset.data(), wire.data(), kFrameHeaderSize);
  const Bytes body{100, 0, 0, 0, 0x1f, 'a', 0xff, 0xff, 0x50};
  bad_offset.insert(bad_offset.end(), body.begin(), body.end());
  patch<uint32_t>(bad_offset, kOffLen, static_cast<uint32_t>(body.size()));
  expect_decode_error(bad_offset, "corrupt");
  // Cut short.
  Bytes truncated = wire;
  truncated.resize(truncated.size() - 5);
  patch<uint32_t>(truncated, kOffLen, static_cast<uint32_t>(truncated.size() - kFrameHeaderSize));
  expect_decode_error(truncated, "corrupt");
}

TEST(FrameMalformed, Lz4BlockDecodesToAnotherSize) {
  const Bytes payload = text_bytes(4000);
  for (int64_t delta : {-1, 1, -1000, 1000}) {
    Bytes wire = encode_frame(1, 1, payload);
    ASSERT_TRUE(compressed_on_wire(wire));
    patch<uint32_t>(wire, kFrameHeaderSize, static_cast<uint32_t>(int64_t{4000} + delta));
    expect_decode_error(wire, "does not decode to the " + std::to_string(4000 + delta) + " bytes announced");
  }
}

TEST(FrameMalformed, CompressedPayloadShorterThanSizeField) {
  for (uint32_t len = 0; len < 4; ++len) {
    SCOPED_TRACE(len);
    FrameHeader header;
    header.flags = kFrameCompressed;
    header.payload_len = len;
    Bytes wire = header_only(header);
    wire.resize(kFrameHeaderSize + len, 0);
    expect_decode_error(wire, "too short");
  }
}

TEST(FrameMalformed, EmptyLz4BlockAfterSize) {
  FrameHeader header;
  header.flags = kFrameCompressed;
  header.payload_len = 4;
  Bytes wire = header_only(header);
  const uint32_t original = 10;
  wire.resize(kFrameHeaderSize + 4);
  patch(wire, kFrameHeaderSize, original);
  expect_decode_error(wire, "corrupt");
}

TEST(FrameLz4, CompressIfWorthItRoundTrip) {
  const Bytes payload = text_bytes(50000);
  const auto compressed = compress_if_worth_it(payload);
  ASSERT_TRUE(compressed);
  EXPECT_LT(compressed->size(), payload.size() / 4);
  EXPECT_EQ(decompress_payload(*compressed), payload);
  EXPECT_FALSE(compress_if_worth_it(random_bytes(50000)));
  EXPECT_FALSE(compress_if_worth_it(Bytes(kCompressMinSize - 1, 0)));
}

}  // namespace
}  // namespace rgpu
