// The private driver tables without a GPU: the integrity check's hash (MD2, HMAC-MD2 and the
// message cudart hashes) and the tables as cuGetExportTable hands them out.
#include <cuda.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "integrity_check.hpp"

namespace {

using rgpu::cuda::IntegrityDevice;
using rgpu::cuda::IntegrityInputs;

std::string hex(const rgpu::cuda::Md2Digest& digest) {
  std::string text;
  char byte[3];
  for (uint8_t b : digest) {
    std::snprintf(byte, sizeof byte, "%02x", b);
    text += byte;
  }
  return text;
}

std::span<const uint8_t> bytes_of(const char* text) {
  return {reinterpret_cast<const uint8_t*>(text), std::strlen(text)};
}

CUuuid uuid_of(const char* text) {  // 32 hex digits
  CUuuid id{};
  for (size_t i = 0; i < sizeof id.bytes; ++i)
    id.bytes[i] = static_cast<char>(std::stoul(std::string(text + 2 * i, 2), nullptr, 16));
  return id;
}

// RFC 1319's test suite.
TEST(Md2, MatchesTheRfcTestSuite) {
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of(""))), "8350e5a3e24c153df2275c9f80692773");
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of("a"))), "32ec01ec4a6dac72c0ab96fb34c0b5d1");
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of("abc"))), "da853b0d3f88d99b30283a69e6ded6bb");
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of("message digest"))), "ab4f496bfb2a530b219ff33031fe06b0");
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of("abcdefghijklmnopqrstuvwxyz"))), "4e8ddff3650292ab5a4108c3aa47940b");
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))),
            "da33def2a42df13975352846c30338cd");
  EXPECT_EQ(hex(rgpu::cuda::md2(bytes_of(
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890"))),
            "d5976f79d83d3a0dc9806c3c66f3efd8");
}

TEST(Md2, IncrementalUpdatesEqualOneShot) {
  const char* text = "message digest, fed in uneven pieces";
  rgpu::cuda::Md2 hash;
  hash.update(bytes_of("message "));
  hash.update(bytes_of("digest, fed in uneven "));
  hash.update(bytes_of("pieces"));
  EXPECT_EQ(hex(hash.finish()), hex(rgpu::cuda::md2(bytes_of(text))));
}

IntegrityInputs sample_inputs() {
  IntegrityInputs in;
  in.driver_version = 13000;
  in.runtime_request = 13002;
  in.process_id = 4242;
  in.thread_id = 0x9a1b2c3d;
  in.cudart_table = 0x7f0000001000;
  in.integrity_table = 0x7f0000002000;
  in.check_function = 0x7f0000003000;
  in.unix_seconds = 1700000000;
  IntegrityDevice first, second;
  for (int i = 0; i < 16; ++i) {
    first.uuid.bytes[i] = static_cast<char>(i);
    second.uuid.bytes[i] = static_cast<char>(16 + i);
  }
  first.pci_bus = 0x1b;
  second.pci_bus = 0x1c;
  in.devices = {first, second};
  return in;
}

TEST(IntegrityCheck, MessageLayout) {
  const auto message = rgpu::cuda::integrity_message(sample_inputs());
  ASSERT_EQ(message.size(), 48u + 2 * 28u);  // the fixed part, then 28 bytes a device
  EXPECT_EQ(message[0], 13000 & 0xff);       // driver version first, little endian
  EXPECT_EQ(message[4], 13002 & 0xff);       // then cudart's request
  EXPECT_EQ(message[16], 0x00);              // the cudart table's address at 16
  EXPECT_EQ(message[17], 0x10);
  EXPECT_EQ(message[48], 0);                 // the first device's UUID at 48
  EXPECT_EQ(message[48 + 20], 0x1b);         // its PCI bus after UUID and domain
  EXPECT_EQ(message[76], 16);                // the second device
}

// The value an independent MD2/HMAC implementation (written from RFC 1319 and RFC 2104) gives for
// sample_inputs() under the shared key.
TEST(IntegrityCheck, HashedAnswerMatchesAnIndependentComputation) {
  const auto words = rgpu::cuda::integrity_answer(sample_inputs());
  EXPECT_EQ(words[0], 0x8652748411793163ull);
  EXPECT_EQ(words[1], 0xd36c06501ca34731ull);
}

// Inputs and answers recorded from the CUDA 13.0 driver (580.159.04) on an H100.
TEST(IntegrityCheck, HashedAnswerMatchesTheDriver) {
  IntegrityInputs in;
  in.driver_version = 13000;
  in.process_id = 756;
  in.thread_id = 0x985e3740;
  in.cudart_table = 0x7f9e9804c680;
  in.integrity_table = 0x7f9e9804c660;
  in.check_function = 0x7f9e929ab350;
  in.unix_seconds = 1700000000;
  IntegrityDevice h100;
  h100.uuid = uuid_of("197138b878c3ddb26e4c13deb5ccbb3b");
  h100.pci_device = 6;
  in.devices = {h100};
  const struct {
    uint32_t request;
    uint64_t low, high;
  } recorded[] = {
      {13002, 0xb85907f15024d74full, 0xf1d854f4efa9b3feull},
      {13003, 0xc71fbae7d2873e85ull, 0x48c4a3923c854a03ull},
      {12082, 0x7a41747e54ffddb0ull, 0xb7edaa91d95185c9ull},
  };
  for (const auto& r : recorded) {
    in.runtime_request = r.request;
    const auto words = rgpu::cuda::integrity_answer(in);
    EXPECT_EQ(words[0], r.low) << r.request;
    EXPECT_EQ(words[1], r.high) << r.request;
  }
}

TEST(IntegrityCheck, RequestsEndingInZeroOrOneExpectFixedWords) {
  IntegrityInputs in = sample_inputs();
  for (uint32_t request : {12000u, 13000u}) {
    in.runtime_request = request;
    EXPECT_FALSE(rgpu::cuda::integrity_answer_is_hashed(request));
    const auto words = rgpu::cuda::integrity_answer(in);
    EXPECT_EQ(words[0], 0x3341181c03cb675cull);
    EXPECT_EQ(words[1], 0x8ed383aa1f4cd1e8ull);
  }
  in.runtime_request = 13001;
  EXPECT_EQ(rgpu::cuda::integrity_answer(in)[0], 0x1841181c03cb675cull);
  for (uint32_t request : {13002u, 13003u}) EXPECT_TRUE(rgpu::cuda::integrity_answer_is_hashed(request));
}

TEST(IntegrityCheck, EveryInputChangesTheHashedAnswer) {
  const auto base = rgpu::cuda::integrity_answer(sample_inputs());
  IntegrityInputs in = sample_inputs();
  in.thread_id ^= 1;
  EXPECT_NE(rgpu::cuda::integrity_answer(in), base);
  in = sample_inputs();
  in.devices[1].pci_bus = 0x1d;
  EXPECT_NE(rgpu::cuda::integrity_answer(in), base);
  in = sample_inputs();
  in.devices.pop_back();
  EXPECT_NE(rgpu::cuda::integrity_answer(in), base);
}

// The tables, through the library's own cuGetExportTable (no daemon or server needed).
struct TableCase {
  const char* uuid;
  size_t slots;        // from the size in the first slot
  size_t empty_slot;   // a slot left empty on purpose, 0 for none
};
constexpr TableCase kSizedTables[] = {
    {"6bd5fb6c5bf4e74a8987d93912fd9df9", 13, 10},  // cudart interface (10 is empty in the driver too)
    {"a094798c2e742e7493f20800200c0a66", 7, 0},    // tools runtime callback hooks
    {"42d85a8123f6cb478298f6e78a3aecdc", 3, 0},    // tools thread-local state
    {"263e88607cd2614392f6bbd5006dfa7e", 15, 0},   // context checks
    {"d4082055bde6704b8d34ba123c66e1f2", 3, 0},    // integrity check
    {"21318c60971432488ca641ff7324c8f2", 52, 0},   // context identity
    {"1734dc26800d47458726c0f1e7dd8bca", 6, 0},    // cluster
};

TEST(ExportTables, SizedTablesStartWithTheirSize) {
  for (const TableCase& c : kSizedTables) {
    const CUuuid id = uuid_of(c.uuid);
    const void* table = nullptr;
    ASSERT_EQ(cuGetExportTable(&table, &id), CUDA_SUCCESS) << c.uuid;
    ASSERT_NE(table, nullptr);
    const auto* slots = static_cast<const uintptr_t*>(table);
    EXPECT_EQ(slots[0], c.slots * sizeof(void*)) << c.uuid;
    for (size_t i = 1; i < c.slots; ++i) {
      if (i == c.empty_slot) {
        EXPECT_EQ(slots[i], 0u) << c.uuid << " slot " << i;
      } else {
        EXPECT_NE(slots[i], 0u) << c.uuid << " slot " << i;
      }
    }
    const void* again = nullptr;
    ASSERT_EQ(cuGetExportTable(&again, &id), CUDA_SUCCESS);
    EXPECT_EQ(again, table);  // the same table every time: cudart hashes its address
  }
}

// cuBLASLt calls slot 4 of the cluster table unchecked and takes its path without the table when
// the call fails; nvrtc's cache gives the table up when it is this small.
TEST(ExportTables, ClusterTableDeclinesWithAnError) {
  const CUuuid id = uuid_of("1734dc26800d47458726c0f1e7dd8bca");
  const void* table = nullptr;
  ASSERT_EQ(cuGetExportTable(&table, &id), CUDA_SUCCESS);
  const auto* slots = static_cast<const uintptr_t*>(table);
  EXPECT_LE(slots[0], 0x68u);
  using Bytes = CUresult (*)(const void**, size_t*);
  const void* data = nullptr;
  size_t size = 0;
  EXPECT_EQ(reinterpret_cast<Bytes>(slots[4])(&data, &size), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(data, nullptr);
}

TEST(ExportTables, UnknownAndOmittedUuidsAreInvalidValues) {
  for (const char* text : {"00112233445566778899aabbccddeeff", "f8cff95121468b4eb9e2fb469e7c0dd9"}) {
    const CUuuid id = uuid_of(text);
    const void* table = &table;
    EXPECT_EQ(cuGetExportTable(&table, &id), CUDA_ERROR_INVALID_VALUE);
    EXPECT_EQ(table, nullptr);
  }
  const CUuuid id = uuid_of(kSizedTables[0].uuid);
  const void* table = nullptr;
  EXPECT_EQ(cuGetExportTable(nullptr, &id), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGetExportTable(&table, nullptr), CUDA_ERROR_INVALID_VALUE);
}

using StoragePut = CUresult (*)(CUcontext, void*, void*, void (*)(CUcontext, void*, void*));
using StorageDelete = CUresult (*)(CUcontext, void*);
using StorageGet = CUresult (*)(void**, CUcontext, void*);

TEST(ExportTables, ContextLocalStorageKeepsValuesPerContextAndKey) {
  const CUuuid id = uuid_of("c693336e1121df11a8c368f355d89593");
  const void* table = nullptr;
  ASSERT_EQ(cuGetExportTable(&table, &id), CUDA_SUCCESS);
  const auto* slots = static_cast<void* const*>(table);
  ASSERT_NE(slots[0], nullptr);
  ASSERT_NE(slots[1], nullptr);
  ASSERT_NE(slots[2], nullptr);
  EXPECT_EQ(slots[3], nullptr);  // no size slot: the table ends with a null entry
  auto put = reinterpret_cast<StoragePut>(slots[0]);
  auto erase = reinterpret_cast<StorageDelete>(slots[1]);
  auto get = reinterpret_cast<StorageGet>(slots[2]);

  auto* context_a = reinterpret_cast<CUcontext>(uintptr_t{0x1000});
  auto* context_b = reinterpret_cast<CUcontext>(uintptr_t{0x2000});
  int key = 0, value_a = 0, value_b = 0;
  void* value = nullptr;
  EXPECT_EQ(get(&value, context_a, &key), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_EQ(put(context_a, &key, &value_a, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(put(context_b, &key, &value_b, nullptr), CUDA_SUCCESS);
  ASSERT_EQ(get(&value, context_a, &key), CUDA_SUCCESS);
  EXPECT_EQ(value, &value_a);
  ASSERT_EQ(get(&value, context_b, &key), CUDA_SUCCESS);
  EXPECT_EQ(value, &value_b);
  EXPECT_EQ(erase(context_a, &key), CUDA_SUCCESS);
  EXPECT_EQ(get(&value, context_a, &key), CUDA_ERROR_INVALID_HANDLE);
  EXPECT_EQ(get(&value, context_b, &key), CUDA_SUCCESS);
  // Without a context argument the current context is meant; before cuInit there is none.
  EXPECT_EQ(get(&value, nullptr, &key), CUDA_ERROR_NOT_INITIALIZED);
}

TEST(ExportTables, IntegrityCheckSlotAnswersFixedRequestsWithoutAServer) {
  setenv("RGPU_CLIENT_SOCKET", "/nonexistent/rgpu-test.sock", 1);
  const CUuuid id = uuid_of("d4082055bde6704b8d34ba123c66e1f2");
  const void* table = nullptr;
  ASSERT_EQ(cuGetExportTable(&table, &id), CUDA_SUCCESS);
  auto check = reinterpret_cast<CUresult (*)(uint32_t, uint64_t, uint64_t*)>(static_cast<void* const*>(table)[1]);
  uint64_t words[2] = {};
  ASSERT_EQ(check(13001, 1700000000, words), CUDA_SUCCESS);
  EXPECT_EQ(words[0], 0x1841181c03cb675cull);
  EXPECT_EQ(words[1], 0x8ed383aa1f4cd1e8ull);
}

}  // namespace
