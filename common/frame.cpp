#include "frame.hpp"

#include <lz4.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "wire.hpp"

namespace rgpu {

namespace {
// A compressed payload must save at least an eighth of the bytes to be sent compressed.
bool saves_enough(size_t original, size_t compressed) { return compressed <= original - original / 8; }

// Random (GPU-like) data does not compress; find out on a sample before paying for the whole payload.
constexpr size_t kSampleSize = 4096;
bool sample_compresses(std::span<const uint8_t> payload) {
  if (payload.size() <= 2 * kSampleSize) return true;
  char out[LZ4_COMPRESSBOUND(kSampleSize)];
  int n = LZ4_compress_default(reinterpret_cast<const char*>(payload.data()), out, kSampleSize, sizeof out);
  return n > 0 && saves_enough(kSampleSize, static_cast<size_t>(n));
}
}  // namespace

std::optional<std::vector<uint8_t>> compress_if_worth_it(std::span<const uint8_t> payload) {
  if (payload.size() < kCompressMinSize || payload.size() > kMaxFramePayload) return std::nullopt;
  if (!sample_compresses(payload)) return std::nullopt;
  const int bound = LZ4_compressBound(static_cast<int>(payload.size()));
  std::vector<uint8_t> out(sizeof(uint32_t) + static_cast<size_t>(bound));
  const uint32_t original = static_cast<uint32_t>(payload.size());
  std::memcpy(out.data(), &original, sizeof original);
  const int n = LZ4_compress_default(reinterpret_cast<const char*>(payload.data()),
                                     reinterpret_cast<char*>(out.data() + sizeof original),
                                     static_cast<int>(payload.size()), bound);
  if (n <= 0 || !saves_enough(payload.size(), sizeof original + static_cast<size_t>(n))) return std::nullopt;
  out.resize(sizeof original + static_cast<size_t>(n));
  return out;
}

std::vector<uint8_t> decompress_payload(std::span<const uint8_t> wire_payload, uint32_t max_size) {
  WireReader reader(wire_payload, "compressed payload");
  if (reader.remaining() < sizeof(uint32_t))
    throw FrameError("compressed payload of " + std::to_string(wire_payload.size()) +
                     " bytes is too short for its size field");
  const uint32_t original = reader.get<uint32_t>();
  const uint32_t limit = std::min(max_size, kMaxFramePayload);
  if (original > limit)
    throw FrameError("compressed payload claims " + std::to_string(original) + " bytes, over the limit of " +
                     std::to_string(limit));
  auto block = reader.rest();
  // An lz4 block grows by at most 255 times (a match costs one byte per 255 bytes it repeats):
  // a claim beyond that is a lie, refused before the memory is allocated.
  if (original > block.size() * 255 + 16)
    throw FrameError("compressed payload claims " + std::to_string(original) + " bytes from an lz4 block of " +
                     std::to_string(block.size()) + ", more than lz4 can encode");
  std::vector<uint8_t> out(original);
  const int n = LZ4_decompress_safe(reinterpret_cast<const char*>(block.data()), reinterpret_cast<char*>(out.data()),
                                    static_cast<int>(block.size()), static_cast<int>(original));
  if (n < 0 || static_cast<uint32_t>(n) != original)
    throw FrameError("compressed payload is corrupt (lz4 block does not decode to the " + std::to_string(original) +
                     " bytes announced)");
  return out;
}

std::vector<uint8_t> encode_frame(uint16_t type, uint64_t request_id, std::span<const uint8_t> payload,
                                  uint16_t flags, Compression compression) {
  if (payload.size() > kMaxFramePayload)
    throw FrameError("payload of " + std::to_string(payload.size()) + " bytes is over the frame limit");
  std::optional<std::vector<uint8_t>> compressed;
  if (compression == Compression::IfWorthIt) compressed = compress_if_worth_it(payload);
  std::span<const uint8_t> body = compressed ? std::span<const uint8_t>(*compressed) : payload;

  FrameHeader header;
  header.type = type;
  header.flags = static_cast<uint16_t>((flags & ~kFrameCompressed) | (compressed ? kFrameCompressed : 0));
  header.request_id = request_id;
  header.payload_len = static_cast<uint32_t>(body.size());

  std::vector<uint8_t> out(kFrameHeaderSize + body.size());
  std::memcpy(out.data(), &header, kFrameHeaderSize);
  if (!body.empty()) std::memcpy(out.data() + kFrameHeaderSize, body.data(), body.size());
  return out;
}

void validate_header(const FrameHeader& header, uint16_t link_flags) {
  if (header.magic != kFrameMagic) {
    char text[64];
    std::snprintf(text, sizeof text, "bad frame magic 0x%08x (not an RGPU peer?)", header.magic);
    throw FrameError(text);
  }
  if (const uint16_t unknown = header.flags & ~(kFrameKnownFlags | link_flags); unknown != 0) {
    char text[64];
    std::snprintf(text, sizeof text, "frame has unknown flag bits 0x%04x", unknown);
    throw FrameError(text);
  }
  if (header.reserved != 0) throw FrameError("frame header's reserved field is not zero");
  if (header.payload_len > kMaxFramePayload)
    throw FrameError("frame payload of " + std::to_string(header.payload_len) + " bytes is over the limit of " +
                     std::to_string(kMaxFramePayload));
}

void FrameDecoder::feed(std::span<const uint8_t> bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > (1u << 20) && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

std::optional<FrameHeader> FrameDecoder::peek_header() const {
  if (buffered() < kFrameHeaderSize) return std::nullopt;
  FrameHeader header;
  std::memcpy(&header, buffer_.data() + consumed_, kFrameHeaderSize);
  validate_header(header, link_flags_);
  auto stage = [&] { return limits_.stage ? std::string(" ") + limits_.stage : std::string(); };
  if (header.payload_len > limits_.max_payload)
    throw FrameError("frame payload of " + std::to_string(header.payload_len) + " bytes is over this link's limit of " +
                     std::to_string(limits_.max_payload) + stage());
  if ((header.flags & kFrameCompressed) && !limits_.compressed)
    throw FrameError("compressed frame" + (limits_.stage ? stage() : std::string(" where none is taken")));
  return header;
}

size_t FrameDecoder::take_into(std::span<uint8_t> payload) {
  const size_t here = std::min(buffered() - kFrameHeaderSize, payload.size());
  if (here > 0) std::memcpy(payload.data(), buffer_.data() + consumed_ + kFrameHeaderSize, here);
  consumed_ += kFrameHeaderSize + here;
  return here;
}

std::vector<uint8_t> FrameDecoder::take_rest() {
  std::vector<uint8_t> rest(buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_), buffer_.end());
  buffer_.clear();
  consumed_ = 0;
  return rest;
}

std::optional<Frame> FrameDecoder::next() {
  const std::optional<FrameHeader> peeked = peek_header();
  if (!peeked) return std::nullopt;
  const FrameHeader header = *peeked;
  if (buffered() < kFrameHeaderSize + header.payload_len) return std::nullopt;

  std::span<const uint8_t> body(buffer_.data() + consumed_ + kFrameHeaderSize, header.payload_len);
  Frame frame;
  frame.header = header;
  if (header.flags & kFrameCompressed) {
    frame.payload = decompress_payload(body, limits_.max_payload);
    frame.header.flags &= static_cast<uint16_t>(~kFrameCompressed);
    frame.header.payload_len = static_cast<uint32_t>(frame.payload.size());
  } else {
    frame.payload.assign(body.begin(), body.end());
  }
  consumed_ += kFrameHeaderSize + header.payload_len;
  return frame;
}

}  // namespace rgpu
