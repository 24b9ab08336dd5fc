// Fat binaries as the double's module images: the kernels an nvcc-built fat binary defines (the
// global functions in the symbol tables of its uncompressed ELF cubins) stand for the double's
// kernels of the same names, run on the host. Other kernels are left out of the module, so they
// are not found; PTX-only and compressed entries contribute nothing.
#include <elf.h>

#include <cstring>
#include <set>
#include <string>

#include "test_double.hpp"

namespace rgpu::cuda_double {

namespace {
constexpr uint32_t kFatbinMagic = 0xBA55ED50;
constexpr uint32_t kFatbinWrapperMagic = 0x466243B1;

struct FatbinHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t header_size;
  uint64_t fat_size;
};
struct FatbinEntryHeader {
  uint16_t kind;
  uint16_t unknown;
  uint32_t header_size;
  uint64_t size;
};
struct FatbinWrapper {
  int32_t magic;
  int32_t version;
  const void* data;
  void* unused;
};

template <typename T>
bool read(const uint8_t* base, size_t size, size_t offset, T& value) {
  if (offset > size || sizeof(T) > size - offset) return false;
  std::memcpy(&value, base + offset, sizeof(T));
  return true;
}

// Global function symbols of one ELF image; false when it is not a well-formed ELF64.
bool elf_functions(const uint8_t* elf, size_t size, std::set<std::string>& names) {
  Elf64_Ehdr header;
  if (!read(elf, size, 0, header) || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 ||
      header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_shentsize != sizeof(Elf64_Shdr))
    return false;
  for (size_t i = 0; i < header.e_shnum; ++i) {
    Elf64_Shdr symtab;
    if (!read(elf, size, header.e_shoff + i * sizeof(Elf64_Shdr), symtab)) return false;
    if (symtab.sh_type != SHT_SYMTAB) continue;
    Elf64_Shdr strtab;
    if (!read(elf, size, header.e_shoff + symtab.sh_link * sizeof(Elf64_Shdr), strtab)) return false;
    if (strtab.sh_offset > size || strtab.sh_size > size - strtab.sh_offset) return false;
    for (size_t at = 0; at + sizeof(Elf64_Sym) <= symtab.sh_size; at += sizeof(Elf64_Sym)) {
      Elf64_Sym symbol;
      if (!read(elf, size, symtab.sh_offset + at, symbol)) return false;
      if (ELF64_ST_TYPE(symbol.st_info) != STT_FUNC || ELF64_ST_BIND(symbol.st_info) != STB_GLOBAL) continue;
      if (symbol.st_name >= strtab.sh_size) return false;
      const char* name = reinterpret_cast<const char*>(elf + strtab.sh_offset + symbol.st_name);
      names.insert(std::string(name, strnlen(name, strtab.sh_size - symbol.st_name)));
    }
  }
  return true;
}
}  // namespace

bool is_fatbin(const void* image) {
  if (strnlen(static_cast<const char*>(image), sizeof(uint32_t)) < sizeof(uint32_t)) return false;  // short text
  uint32_t magic;
  std::memcpy(&magic, image, sizeof magic);
  return magic == kFatbinMagic || magic == kFatbinWrapperMagic;
}

CUresult parse_fatbin(const void* image, Image& parsed) {
  uint32_t magic;
  std::memcpy(&magic, image, sizeof magic);
  if (magic == kFatbinWrapperMagic) image = static_cast<const FatbinWrapper*>(image)->data;
  FatbinHeader header;
  std::memcpy(&header, image, sizeof header);
  if (header.magic != kFatbinMagic || header.header_size < sizeof header) return CUDA_ERROR_INVALID_IMAGE;
  const auto* entries = static_cast<const uint8_t*>(image) + header.header_size;
  std::set<std::string> names;
  for (size_t at = 0; at < header.fat_size;) {
    FatbinEntryHeader entry;
    if (!read(entries, header.fat_size, at, entry) || entry.header_size < sizeof entry) return CUDA_ERROR_INVALID_IMAGE;
    const size_t payload = at + entry.header_size;
    if (payload > header.fat_size || entry.size > header.fat_size - payload) return CUDA_ERROR_INVALID_IMAGE;
    if (entry.size >= SELFMAG && std::memcmp(entries + payload, ELFMAG, SELFMAG) == 0 &&
        !elf_functions(entries + payload, entry.size, names))
      return CUDA_ERROR_INVALID_IMAGE;
    at = payload + entry.size;
  }
  for (const std::string& name : names)
    if (const Kernel* kernel = find_kernel(name)) parsed.kernels.push_back(kernel);
  return CUDA_SUCCESS;
}

}  // namespace rgpu::cuda_double
