#include "integrity_check.hpp"

#include <cstring>

namespace rgpu::cuda {

namespace {
// RFC 1319's substitution table: a permutation of 0..255 drawn from the digits of pi.
constexpr uint8_t kPiSubstitution[256] = {
    0x29, 0x2e, 0x43, 0xc9, 0xa2, 0xd8, 0x7c, 0x01, 0x3d, 0x36, 0x54, 0xa1, 0xec, 0xf0, 0x06, 0x13,
    0x62, 0xa7, 0x05, 0xf3, 0xc0, 0xc7, 0x73, 0x8c, 0x98, 0x93, 0x2b, 0xd9, 0xbc, 0x4c, 0x82, 0xca,
    0x1e, 0x9b, 0x57, 0x3c, 0xfd, 0xd4, 0xe0, 0x16, 0x67, 0x42, 0x6f, 0x18, 0x8a, 0x17, 0xe5, 0x12,
    0xbe, 0x4e, 0xc4, 0xd6, 0xda, 0x9e, 0xde, 0x49, 0xa0, 0xfb, 0xf5, 0x8e, 0xbb, 0x2f, 0xee, 0x7a,
    0xa9, 0x68, 0x79, 0x91, 0x15, 0xb2, 0x07, 0x3f, 0x94, 0xc2, 0x10, 0x89, 0x0b, 0x22, 0x5f, 0x21,
    0x80, 0x7f, 0x5d, 0x9a, 0x5a, 0x90, 0x32, 0x27, 0x35, 0x3e, 0xcc, 0xe7, 0xbf, 0xf7, 0x97, 0x03,
    0xff, 0x19, 0x30, 0xb3, 0x48, 0xa5, 0xb5, 0xd1, 0xd7, 0x5e, 0x92, 0x2a, 0xac, 0x56, 0xaa, 0xc6,
    0x4f, 0xb8, 0x38, 0xd2, 0x96, 0xa4, 0x7d, 0xb6, 0x76, 0xfc, 0x6b, 0xe2, 0x9c, 0x74, 0x04, 0xf1,
    0x45, 0x9d, 0x70, 0x59, 0x64, 0x71, 0x87, 0x20, 0x86, 0x5b, 0xcf, 0x65, 0xe6, 0x2d, 0xa8, 0x02,
    0x1b, 0x60, 0x25, 0xad, 0xae, 0xb0, 0xb9, 0xf6, 0x1c, 0x46, 0x61, 0x69, 0x34, 0x40, 0x7e, 0x0f,
    0x55, 0x47, 0xa3, 0x23, 0xdd, 0x51, 0xaf, 0x3a, 0xc3, 0x5c, 0xf9, 0xce, 0xba, 0xc5, 0xea, 0x26,
    0x2c, 0x53, 0x0d, 0x6e, 0x85, 0x28, 0x84, 0x09, 0xd3, 0xdf, 0xcd, 0xf4, 0x41, 0x81, 0x4d, 0x52,
    0x6a, 0xdc, 0x37, 0xc8, 0x6c, 0xc1, 0xab, 0xfa, 0x24, 0xe1, 0x7b, 0x08, 0x0c, 0xbd, 0xb1, 0x4a,
    0x78, 0x88, 0x95, 0x8b, 0xe3, 0x63, 0xe8, 0x6d, 0xe9, 0xcb, 0xd5, 0xfe, 0x3b, 0x00, 0x1d, 0x39,
    0xf2, 0xef, 0xb7, 0x0e, 0x66, 0x58, 0xd0, 0xe4, 0xa6, 0x77, 0x72, 0xf8, 0xeb, 0x75, 0x4b, 0x0a,
    0x31, 0x44, 0x50, 0xb4, 0x8f, 0xed, 0x1f, 0x1a, 0xdb, 0x99, 0x8d, 0x33, 0x9f, 0x11, 0x83, 0x14,
};

constexpr size_t kBlock = 16;

template <typename T>
void append_le(std::vector<uint8_t>& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(value) >> (8 * i)));
}
}  // namespace

void Md2::compress() {
  for (size_t i = 0; i < kBlock; ++i) {
    state_[kBlock + i] = block_[i];
    state_[2 * kBlock + i] = static_cast<uint8_t>(block_[i] ^ state_[i]);
  }
  uint8_t t = 0;
  for (unsigned round = 0; round < 18; ++round) {
    for (uint8_t& byte : state_) t = byte ^= kPiSubstitution[t];
    t = static_cast<uint8_t>(t + round);
  }
}

void Md2::absorb(uint8_t byte) {
  block_[filled_] = byte;
  last_checksum_byte_ = checksum_[filled_] ^= kPiSubstitution[byte ^ last_checksum_byte_];
  if (++filled_ == kBlock) {
    compress();
    filled_ = 0;
  }
}

void Md2::update(std::span<const uint8_t> bytes) {
  for (uint8_t byte : bytes) absorb(byte);
}

Md2Digest Md2::finish() {
  const auto pad = static_cast<uint8_t>(kBlock - filled_);
  for (uint8_t i = 0; i < pad; ++i) absorb(pad);
  const std::array<uint8_t, 16> checksum = checksum_;
  update(checksum);
  Md2Digest digest;
  std::memcpy(digest.data(), state_.data(), digest.size());
  *this = Md2{};
  return digest;
}

Md2Digest md2(std::span<const uint8_t> bytes) {
  Md2 hash;
  hash.update(bytes);
  return hash.finish();
}

Md2Digest hmac_md2(std::span<const uint8_t> key, std::span<const uint8_t> message) {
  std::array<uint8_t, kBlock> padded_key{};
  if (key.size() > kBlock) {
    const Md2Digest hashed = md2(key);
    std::memcpy(padded_key.data(), hashed.data(), hashed.size());
  } else {
    std::memcpy(padded_key.data(), key.data(), key.size());
  }
  std::array<uint8_t, kBlock> pad;
  Md2 inner;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = padded_key[i] ^ 0x36;
  inner.update(pad);
  inner.update(message);
  const Md2Digest inner_digest = inner.finish();
  Md2 outer;
  for (size_t i = 0; i < kBlock; ++i) pad[i] = padded_key[i] ^ 0x5c;
  outer.update(pad);
  outer.update(inner_digest);
  return outer.finish();
}

std::vector<uint8_t> integrity_message(const IntegrityInputs& in) {
  std::vector<uint8_t> message;
  append_le(message, in.driver_version);
  append_le(message, in.runtime_request);
  append_le(message, in.process_id);
  append_le(message, in.thread_id);
  append_le(message, in.cudart_table);
  append_le(message, in.integrity_table);
  append_le(message, in.check_function);
  append_le(message, in.unix_seconds);
  for (const IntegrityDevice& device : in.devices) {
    message.insert(message.end(), std::begin(device.uuid.bytes), std::end(device.uuid.bytes));
    append_le(message, static_cast<uint32_t>(device.pci_domain));
    append_le(message, static_cast<uint32_t>(device.pci_bus));
    append_le(message, static_cast<uint32_t>(device.pci_device));
  }
  return message;
}

}  // namespace rgpu::cuda

namespace rgpu::cuda {

namespace {
// The HMAC key the driver and cudart share.
constexpr uint8_t kIntegrityKey[16] = {0x14, 0x6a, 0xdd, 0xae, 0x53, 0xa9, 0xa7, 0x52,
                                       0xaa, 0x08, 0x41, 0x36, 0x0b, 0xf5, 0x5a, 0x9f};
}  // namespace

bool integrity_answer_is_hashed(uint32_t runtime_request) { return runtime_request % 10 >= 2; }

std::array<uint64_t, 2> integrity_answer(const IntegrityInputs& inputs) {
  // The last decimal digit of cudart's request selects the scheme.
  switch (inputs.runtime_request % 10) {
    case 0: return {0x3341181c03cb675cull, 0x8ed383aa1f4cd1e8ull};
    case 1: return {0x1841181c03cb675cull, 0x8ed383aa1f4cd1e8ull};
    default: break;
  }
  const Md2Digest digest = hmac_md2(kIntegrityKey, integrity_message(inputs));
  std::array<uint64_t, 2> words{};
  for (size_t i = 0; i < 16; ++i) words[i / 8] |= uint64_t{digest[i]} << (8 * (i % 8));
  return words;
}

}  // namespace rgpu::cuda
