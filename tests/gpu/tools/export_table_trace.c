// Diagnosis on a GPU host: which slots of the CUDA driver's and NVML's private tables
// (cuGetExportTable, nvmlInternalGetExportTable) a program calls, with what arguments, and what the
// real library answers. Preload it (LD_PRELOAD) into a program running
// on the real driver; it hands out copies of every table whose function slots log and forward.
// Output: $EXPORT_TABLE_TRACE (default stderr). Assumes slots take at most six integer arguments,
// which is what the slots seen so far take; a slot that takes more is logged and forwarded wrongly.
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum { kTables = 24, kSlots = 256, kLoggedCalls = 12 };

typedef uint64_t (*SlotFn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

static struct {
  CUuuid id;
  const void* original;
  void* copy[kSlots];
  SlotFn real[kSlots];
  unsigned calls[kSlots];
} tables[kTables];
static int table_count;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static FILE* out;

static FILE* output(void) {
  if (!out) {
    const char* path = getenv("EXPORT_TABLE_TRACE");
    out = path ? fopen(path, "a") : NULL;
    if (!out) out = stderr;
    setvbuf(out, NULL, _IOLBF, 0);
  }
  return out;
}

static void uuid_text(const CUuuid* id, char* text) {
  const unsigned char* b = (const unsigned char*)id->bytes;
  sprintf(text, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
          b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

// Reads 8 bytes at `address` without faulting on a value that is not a pointer.
static int peek(uint64_t address, uint64_t* value) {
  if (address < 0x10000) return 0;
  struct iovec local = {value, 8}, remote = {(void*)address, 8};
  return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == 8;
}

static const char* library_of(const void* address) {
  Dl_info info;
  return dladdr(address, &info) && info.dli_fname ? info.dli_fname : "?";
}

static uint64_t traced(int t, int s, const void* caller, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
                       uint64_t a4, uint64_t a5) {
  const uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
  uint64_t before[6] = {0}, after[6] = {0};
  int readable[6];
  for (int i = 0; i < 6; ++i) readable[i] = peek(args[i], &before[i]);
  const uint64_t result = tables[t].real[s](a0, a1, a2, a3, a4, a5);
  pthread_mutex_lock(&lock);
  const unsigned n = ++tables[t].calls[s];
  if (n <= kLoggedCalls) {
    char id[40];
    uuid_text(&tables[t].id, id);
    FILE* f = output();
    fprintf(f, "slot %s/%d call %u from %s: args", id, s, n, library_of(caller));
    for (int i = 0; i < 6; ++i) fprintf(f, " %#" PRIx64, args[i]);
    fprintf(f, " -> %#" PRIx64 " (as int %d)", result, (int)result);
    for (int i = 0; i < 6; ++i) {
      if (readable[i] && peek(args[i], &after[i]))
        fprintf(f, " | *a%d %#" PRIx64 "%s%#" PRIx64, i, before[i], before[i] == after[i] ? " = " : " -> ", after[i]);
    }
    fputc('\n', f);
  }
  pthread_mutex_unlock(&lock);
  return result;
}

// One trampoline per table and slot; slot 0xHL is slot_T_H_L.
#define SLOT(t, h, l)                                                                                         \
  static uint64_t slot_##t##_##h##_##l(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, uint64_t f) { \
    return traced(t, 0x##h##l, __builtin_return_address(0), a, b, c, d, e, f);                               \
  }
#define ROW(X, t, h) X(t, h, 0) X(t, h, 1) X(t, h, 2) X(t, h, 3) X(t, h, 4) X(t, h, 5) X(t, h, 6) X(t, h, 7) \
  X(t, h, 8) X(t, h, 9) X(t, h, a) X(t, h, b) X(t, h, c) X(t, h, d) X(t, h, e) X(t, h, f)
#define ROWS(X, t) ROW(X, t, 0) ROW(X, t, 1) ROW(X, t, 2) ROW(X, t, 3) ROW(X, t, 4) ROW(X, t, 5) ROW(X, t, 6) \
  ROW(X, t, 7) ROW(X, t, 8) ROW(X, t, 9) ROW(X, t, a) ROW(X, t, b) ROW(X, t, c) ROW(X, t, d) ROW(X, t, e) ROW(X, t, f)
#define SLOTS(t) ROWS(SLOT, t)
#define ALL_TABLES(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) \
  X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
ALL_TABLES(SLOTS)

#define REF(t, h, l) (SlotFn) slot_##t##_##h##_##l,
#define REFS(t) {ROWS(REF, t)},
static const SlotFn trampolines[kTables][kSlots] = {ALL_TABLES(REFS)};

static int in_driver(const void* p) {
  const char* library = library_of(p);
  return strstr(library, "libcuda") != NULL || strstr(library, "libnvidia-ml") != NULL;
}

static CUresult (*real_get_export_table)(const void**, const CUuuid*);

static CUresult traced_get_export_table(const void** table, const CUuuid* id) {
  const CUresult result = real_get_export_table(table, id);
  char text[40];
  uuid_text(id, text);
  pthread_mutex_lock(&lock);
  const char* asker = library_of(__builtin_return_address(0));
  if (result != CUDA_SUCCESS || !*table) {
    fprintf(output(), "table %s asked by %s: result %d\n", text, asker, result);
    pthread_mutex_unlock(&lock);
    return result;
  }
  int t = 0;
  while (t < table_count && tables[t].original != *table) ++t;
  if (t == table_count && table_count < kTables) {
    void* const* slots = (void* const*)*table;
    const uint64_t first = (uint64_t)slots[0];
    const int sized = first < 0x10000 && first % 8 == 0;
    const int count = sized ? (int)(first / 8 < kSlots ? first / 8 : kSlots) : kSlots;
    tables[t].id = *id;
    tables[t].original = *table;
    fprintf(output(), "table %s asked by %s: %s%d slots; slot 0 %p\n", text, asker, sized ? "" : "unsized, up to ",
            count, slots[0]);
    for (int s = 0; s < count; ++s) {
      uint64_t value;
      if (!peek((uint64_t)&slots[s], &value)) break;
      tables[t].copy[s] = slots[s];
      if (s == 0 && sized) continue;
      if (!sized && !slots[s]) break;
      if (slots[s] && in_driver(slots[s])) {
        tables[t].real[s] = (SlotFn)slots[s];
        Dl_info where;
        if (dladdr(slots[s], &where) && where.dli_fbase)
          fprintf(output(), "  slot %d: %s+%#lx\n", s, where.dli_fname, (unsigned long)((const char*)slots[s] - (const char*)where.dli_fbase));
        tables[t].copy[s] = (void*)trampolines[t][s];
      } else if (slots[s]) {
        fprintf(output(), "  slot %d: %p (data in %s)\n", s, slots[s], library_of(slots[s]));
      }
    }
    ++table_count;
  }
  if (t < table_count) *table = tables[t].copy;
  pthread_mutex_unlock(&lock);
  return result;
}

static CUresult (*real_nvml_table)(const void**, const CUuuid*);
static CUresult traced_nvml_table(const void** table, const CUuuid* id) {
  real_get_export_table = real_nvml_table;
  return traced_get_export_table(table, id);
}
// nvidia-smi links NVML: this definition comes first; the real one is the next.
CUresult nvmlInternalGetExportTable(const void** table, const CUuuid* id) {
  if (!real_nvml_table) real_nvml_table = (CUresult(*)(const void**, const CUuuid*))dlsym(RTLD_NEXT, "nvmlInternalGetExportTable");
  if (!real_nvml_table) return 999;  // NVML_ERROR_UNKNOWN
  return traced_nvml_table(table, id);
}

static CUresult (*real_proc_v2)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
static CUresult (*real_proc_v1)(const char*, void**, int, cuuint64_t);

static void swap_in(const char* symbol, void** pfn) {
  if (symbol && pfn && *pfn && strcmp(symbol, "cuGetExportTable") == 0) {
    real_get_export_table = (CUresult(*)(const void**, const CUuuid*)) * pfn;
    *pfn = (void*)traced_get_export_table;
  }
}
static CUresult traced_proc_v2(const char* symbol, void** pfn, int version, cuuint64_t flags,
                               CUdriverProcAddressQueryResult* status) {
  const CUresult result = real_proc_v2(symbol, pfn, version, flags, status);
  if (result == CUDA_SUCCESS) swap_in(symbol, pfn);
  return result;
}
static CUresult traced_proc_v1(const char* symbol, void** pfn, int version, cuuint64_t flags) {
  const CUresult result = real_proc_v1(symbol, pfn, version, flags);
  if (result == CUDA_SUCCESS) swap_in(symbol, pfn);
  return result;
}

// Every library finds the driver's entry points through dlsym: the three that hand out tables
// are swapped for the tracing ones.
void* dlsym(void* handle, const char* symbol) {
  static void* (*real_dlsym)(void*, const char*);
  if (!real_dlsym) {
    real_dlsym = (void* (*)(void*, const char*))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!real_dlsym) real_dlsym = (void* (*)(void*, const char*))dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
  }
  void* found = real_dlsym(handle, symbol);
  if (!found || !in_driver(found)) return found;
  if (strcmp(symbol, "cuGetExportTable") == 0) {
    real_get_export_table = (CUresult(*)(const void**, const CUuuid*))found;
    return (void*)traced_get_export_table;
  }
  if (strcmp(symbol, "nvmlInternalGetExportTable") == 0) {
    real_nvml_table = (CUresult(*)(const void**, const CUuuid*))found;
    return (void*)traced_nvml_table;
  }
  if (strcmp(symbol, "cuGetProcAddress_v2") == 0) {
    real_proc_v2 = (CUresult(*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*))found;
    return (void*)traced_proc_v2;
  }
  if (strcmp(symbol, "cuGetProcAddress") == 0) {
    real_proc_v1 = (CUresult(*)(const char*, void**, int, cuuint64_t))found;
    return (void*)traced_proc_v1;
  }
  return found;
}

__attribute__((destructor)) static void summary(void) {
  pthread_mutex_lock(&lock);
  for (int t = 0; t < table_count; ++t) {
    char id[40];
    uuid_text(&tables[t].id, id);
    for (int s = 0; s < kSlots; ++s)
      if (tables[t].calls[s] > kLoggedCalls) fprintf(output(), "slot %s/%d called %u times\n", id, s, tables[t].calls[s]);
  }
  pthread_mutex_unlock(&lock);
}
