// The frame: a fixed 24-byte little-endian header followed by the payload (docs/protocol.md).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace rgpu {

inline constexpr uint32_t kFrameMagic = 0x55504752;  // "RGPU" in little-endian byte order
inline constexpr uint16_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 24;
// Largest payload on the wire (after decompression too). Bulk copies are cut into chunks below it.
inline constexpr uint32_t kMaxFramePayload = 64u << 20;
// Payloads shorter than this are never compressed: the saving cannot pay for the work.
inline constexpr size_t kCompressMinSize = 512;

enum FrameFlag : uint16_t {
  kFrameCompressed = 1u << 0,  // payload is u32 original size + one lz4 block
  kFrameNoReply = 1u << 1,     // pipelined call: the sender does not wait for an answer
  kFrameKnownFlags = kFrameCompressed | kFrameNoReply,
};

struct FrameHeader {
  uint32_t magic = kFrameMagic;
  uint16_t version = kProtocolVersion;
  uint16_t type = 0;
  uint16_t flags = 0;
  uint16_t reserved = 0;
  uint32_t payload_len = 0;
  uint64_t request_id = 0;
};
static_assert(sizeof(FrameHeader) == kFrameHeaderSize);

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;  // always the uncompressed payload
};

// A malformed frame; the connection it came from must be closed. what() names the defect.
class FrameError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Compression { Never, IfWorthIt };

// Header followed by the (possibly compressed) payload, ready to send.
std::vector<uint8_t> encode_frame(uint16_t type, uint64_t request_id, std::span<const uint8_t> payload,
                                  uint16_t flags = 0, Compression compression = Compression::IfWorthIt);

// Validates a received header: magic, flags, reserved bits and the length limit. The protocol
// version is not checked here; the handshake answers a peer of another version with a clear error.
// `allowed_flags`: the flag bits this link accepts (local links add kFrameRing).
void validate_header(const FrameHeader& header, uint16_t allowed_flags = kFrameKnownFlags);

// lz4 helpers, exposed for the benchmarks and tests.
std::optional<std::vector<uint8_t>> compress_if_worth_it(std::span<const uint8_t> payload);
// Throws FrameError (never WireError) for a payload that is too short, announces more than max_size
// (or kMaxFramePayload) bytes, or does not decode to exactly the announced size.
std::vector<uint8_t> decompress_payload(std::span<const uint8_t> wire_payload,
                                        uint32_t max_size = kMaxFramePayload);

// Incremental decoder for a byte stream: feed bytes as they arrive, take whole frames out.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_payload = kMaxFramePayload, uint16_t extra_flags = 0)
      : max_payload_(max_payload), allowed_flags_(kFrameKnownFlags | extra_flags) {}
  void feed(std::span<const uint8_t> bytes);
  // The next whole frame, or nullopt when more bytes are needed. Throws FrameError.
  std::optional<Frame> next();
  size_t buffered() const { return buffer_.size() - consumed_; }
  // Accepts these flag bits as well as kFrameKnownFlags (e.g. kFrameRing on local links).
  void allow_flags(uint16_t flags) { allowed_flags_ = kFrameKnownFlags | flags; }

 private:
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
  uint32_t max_payload_;
  uint16_t allowed_flags_;
};

}  // namespace rgpu
