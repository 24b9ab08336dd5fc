// The frame: a fixed 24-byte little-endian header followed by the payload (docs/protocol.md).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace rgpu {

inline constexpr uint32_t kFrameMagic = 0x55504752;  // "RGPU" in little-endian byte order
inline constexpr uint16_t kProtocolVersion = 4;
inline constexpr size_t kFrameHeaderSize = 24;
// Largest payload on the wire (after decompression too). Bulk copies are cut into chunks below it.
inline constexpr uint32_t kMaxFramePayload = 64u << 20;
// Payloads shorter than this are never compressed: the saving cannot pay for the work.
inline constexpr size_t kCompressMinSize = 512;

// What a link takes from its peer at one stage of a connection. Before authentication a stranger
// may send only small, uncompressed frames: nothing it sends makes us allocate or inflate much.
struct FrameLimits {
  uint32_t max_payload = kMaxFramePayload;
  bool compressed = true;        // whether compressed frames are taken at all
  const char* stage = nullptr;   // for errors ("before authentication"); nullptr: not named
};
inline constexpr FrameLimits kHandshakeLimits{4096, false, "before authentication"};
// The server's main process after authentication: requests that open sessions and ask about
// them; bulk data goes to the session's worker.
inline constexpr FrameLimits kControlLimits{64u << 10, true, "on the server's control connection"};

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

// Payload bytes received straight into memory the receiver provided (FrameLink::set_bulk_sink).
// `owner` keeps that memory alive and gives it back where it came from once dropped.
struct BulkPayload {
  std::span<uint8_t> bytes;
  std::shared_ptr<void> owner;
};

struct Frame {
  FrameHeader header;
  std::vector<uint8_t> payload;  // the uncompressed payload, unless `bulk` holds it
  BulkPayload bulk;
  std::span<const uint8_t> body() const {
    return bulk.owner ? std::span<const uint8_t>(bulk.bytes) : std::span<const uint8_t>(payload);
  }
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

// Validates a received header: magic, flags, reserved bits and the length limit. `link_flags` are
// flag bits the link defines on top of the frame's own (kFrameRing between an application and its
// daemon). The protocol version is not checked here; the handshake answers a peer of another
// version with a clear error.
void validate_header(const FrameHeader& header, uint16_t link_flags = 0);

// lz4 helpers, exposed for the benchmarks and tests.
std::optional<std::vector<uint8_t>> compress_if_worth_it(std::span<const uint8_t> payload);
// Throws FrameError (never WireError) for a payload that is too short, announces more than max_size
// (or kMaxFramePayload) bytes or more than its lz4 block could hold (checked before anything is
// allocated), or does not decode to exactly the announced size.
std::vector<uint8_t> decompress_payload(std::span<const uint8_t> wire_payload,
                                        uint32_t max_size = kMaxFramePayload);

// Incremental decoder for a byte stream: feed bytes as they arrive, take whole frames out.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_payload = kMaxFramePayload, uint16_t link_flags = 0)
      : limits_{max_payload, true, nullptr}, link_flags_(link_flags) {}
  // From the next frame on (see FrameLimits).
  void set_limits(FrameLimits limits) { limits_ = limits; }
  const FrameLimits& limits() const { return limits_; }
  void feed(std::span<const uint8_t> bytes);
  // The next whole frame, or nullopt when more bytes are needed. Throws FrameError.
  std::optional<Frame> next();
  size_t buffered() const { return buffer_.size() - consumed_; }
  // The header of the next frame once it is here (validated; throws FrameError), its payload
  // perhaps not yet.
  std::optional<FrameHeader> peek_header() const;
  // Takes the peeked frame out of the stream: its header and the payload bytes already here,
  // copied to `payload` (its size is the frame's payload length). Returns how many were copied.
  size_t take_into(std::span<uint8_t> payload);
  // Everything buffered and not yet taken, as raw bytes; the decoder is empty afterwards.
  std::vector<uint8_t> take_rest();

 private:
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
  FrameLimits limits_;
  uint16_t link_flags_;
};

}  // namespace rgpu
