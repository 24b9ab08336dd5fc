// The integrity check libcudart runs against the driver: an HMAC-MD2 over facts both sides know
// (versions, process and thread, the addresses of two private tables and of the check function,
// the time cudart chose, and every device's UUID and PCI location). Pure computation, no driver.
#pragma once

#include <cuda.h>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace rgpu::cuda {

using Md2Digest = std::array<uint8_t, 16>;

// MD2 (RFC 1319).
class Md2 {
 public:
  void update(std::span<const uint8_t> bytes);
  Md2Digest finish();

 private:
  void absorb(uint8_t byte);
  void compress();

  std::array<uint8_t, 48> state_{};
  std::array<uint8_t, 16> block_{};
  std::array<uint8_t, 16> checksum_{};
  uint8_t last_checksum_byte_ = 0;
  size_t filled_ = 0;
};

Md2Digest md2(std::span<const uint8_t> bytes);
// HMAC (RFC 2104) over MD2, whose block is 16 bytes; a longer key is hashed first.
Md2Digest hmac_md2(std::span<const uint8_t> key, std::span<const uint8_t> message);

struct IntegrityDevice {
  CUuuid uuid{};
  int32_t pci_domain = 0;
  int32_t pci_bus = 0;
  int32_t pci_device = 0;
};

struct IntegrityInputs {
  uint32_t driver_version = 0;   // what cuDriverGetVersion answers
  uint32_t runtime_request = 0;  // the version argument cudart passes
  uint32_t process_id = 0;
  uint32_t thread_id = 0;        // low 32 bits of pthread_self()
  uint64_t cudart_table = 0;     // address of the table cudart got for the cudart-interface UUID
  uint64_t integrity_table = 0;  // address of the integrity-check table
  uint64_t check_function = 0;   // address of the check function itself
  uint64_t unix_seconds = 0;     // the time argument cudart passes
  std::vector<IntegrityDevice> devices;
};

// The bytes the HMAC covers, in the order and widths cudart hashes them (little endian).
std::vector<uint8_t> integrity_message(const IntegrityInputs& inputs);
// Whether the answer to this request depends on the inputs at all (requests ending in 0 and 1
// expect fixed words).
bool integrity_answer_is_hashed(uint32_t runtime_request);
// The two 64-bit words the check writes back for these inputs.
std::array<uint64_t, 2> integrity_answer(const IntegrityInputs& inputs);

}  // namespace rgpu::cuda
