#!/usr/bin/env python3
"""Reads cuda.h (through the C preprocessor) and writes the mechanical parts of RGPU's CUDA forwarding.

Every CUresult function of the driver API is classified:
  auto      - parameters are plain values, handles, C strings or single outputs of those, or plain
              structs (cuda_structs.py): a struct by value or `const S*` (its bytes), `S*` (its bytes
              both ways), `const S*` beside its count (an array): the client stub and the server
              dispatch are generated here;
  manual    - needs real semantics (copies, launches, modules, local state): hand-written in
              preload/ and daemon/server/, listed in MANUAL below;
  other     - neither: the client exports a stub that logs the name once and returns
              CUDA_ERROR_NOT_SUPPORTED.
Outputs (into the build folder):
  cuda_functions.gen.hpp  function ids (FNV-1a of the name) shared by client and server
  cuda_client.gen.cpp     exported client stubs and the name -> address table for cuGetProcAddress
  cuda_errors.gen.cpp     cuGetErrorName / cuGetErrorString texts (the client's and the tests' driver double's)
  cuda_server.gen.cpp     server dispatch for the auto functions
"""
import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cuda_structs import Structs  # noqa: E402

# Hand-written on the client (and, where they reach the server, handled there by hand too).
MANUAL = set("""
cuInit cuDriverGetVersion cuGetErrorName cuGetErrorString cuGetProcAddress cuGetProcAddress_v2 cuGetExportTable
cuDeviceGet cuDeviceGetCount cuDeviceGetName cuDeviceTotalMem cuDeviceTotalMem_v2 cuDeviceGetAttribute
cuDeviceGetUuid cuDeviceGetUuid_v2 cuDeviceGetPCIBusId cuDeviceGetByPCIBusId cuDeviceComputeCapability
cuDeviceGetProperties cuDeviceGetLuid
cuCtxGetCurrent cuCtxSetCurrent cuCtxPushCurrent cuCtxPushCurrent_v2 cuCtxPopCurrent cuCtxPopCurrent_v2
cuCtxGetDevice cuCtxCreate cuCtxCreate_v2 cuCtxCreate_v3 cuCtxCreate_v4 cuCtxDestroy cuCtxDestroy_v2
cuDevicePrimaryCtxRetain cuDevicePrimaryCtxRelease cuDevicePrimaryCtxRelease_v2
cuDevicePrimaryCtxReset cuDevicePrimaryCtxReset_v2
cuMemAllocHost cuMemAllocHost_v2 cuMemHostAlloc cuMemFreeHost cuMemHostRegister cuMemHostRegister_v2
cuMemHostUnregister cuMemHostGetFlags cuMemHostGetDevicePointer cuMemHostGetDevicePointer_v2
cuPointerGetAttribute cuPointerGetAttributes
cuMemcpy cuMemcpyAsync cuMemcpyHtoD cuMemcpyHtoD_v2 cuMemcpyDtoH cuMemcpyDtoH_v2
cuMemcpyHtoDAsync cuMemcpyHtoDAsync_v2 cuMemcpyDtoHAsync cuMemcpyDtoHAsync_v2
cuMemcpy_ptds cuMemcpyAsync_ptsz cuMemcpyHtoD_v2_ptds cuMemcpyDtoH_v2_ptds
cuMemcpyHtoDAsync_v2_ptsz cuMemcpyDtoHAsync_v2_ptsz
cuModuleLoadData cuModuleLoadDataEx cuModuleLoadFatBinary cuModuleLoad
cuLibraryLoadData cuLibraryLoadFromFile
cuLaunchKernel cuLaunchKernel_ptsz cuLaunchKernelEx cuLaunchKernelEx_ptsz
cuLaunchCooperativeKernel cuLaunchCooperativeKernel_ptsz
cuFuncGetParamInfo cuOccupancyMaxActiveClusters cuFuncGetAttribute cuFuncSetAttribute cuKernelSetAttribute
cuCtxGetId cuStreamGetId cuStreamGetId_ptsz cuStreamDestroy cuStreamDestroy_v2 cuKernelGetFunction
cuOccupancyMaxPotentialBlockSize cuOccupancyMaxPotentialBlockSizeWithFlags
cuStreamSetAttribute cuStreamSetAttribute_ptsz cuStreamGetAttribute cuStreamGetAttribute_ptsz
cuModuleUnload cuLibraryUnload
cuTensorMapEncodeTiled cuTensorMapEncodeIm2col cuTensorMapEncodeIm2colWide cuTensorMapReplaceAddress
cuLinkCreate cuLinkCreate_v2 cuLinkAddData cuLinkAddData_v2 cuLinkAddFile cuLinkAddFile_v2 cuLinkComplete cuLinkDestroy
cuMemcpy2D_v2 cuMemcpy2D_v2_ptds cuMemcpy2DUnaligned_v2 cuMemcpy2DUnaligned_v2_ptds
cuMemcpy2DAsync_v2 cuMemcpy2DAsync_v2_ptsz cuMemcpy3D_v2 cuMemcpy3D_v2_ptds cuMemcpy3DAsync_v2 cuMemcpy3DAsync_v2_ptsz
cuStreamIsCapturing cuStreamIsCapturing_ptsz cuStreamGetCaptureInfo_v2 cuStreamGetCaptureInfo_v2_ptsz cuStreamGetCaptureInfo_v3 cuStreamGetCaptureInfo_v3_ptsz
cuMemAllocManaged cuMemPrefetchAsync_v2 cuMemPrefetchAsync_v2_ptsz cuMemAdvise_v2
cuMemcpyHtoA cuMemcpyHtoA_v2 cuMemcpyHtoA_v2_ptds cuMemcpyHtoAAsync cuMemcpyHtoAAsync_v2 cuMemcpyHtoAAsync_v2_ptsz
cuMemcpyAtoH cuMemcpyAtoH_v2 cuMemcpyAtoH_v2_ptds cuMemcpyAtoHAsync cuMemcpyAtoHAsync_v2 cuMemcpyAtoHAsync_v2_ptsz
cuMemRetainAllocationHandle cuMemPoolSetAttribute cuMemPoolGetAttribute
cuLaunchHostFunc cuLaunchHostFunc_ptsz cuStreamAddCallback cuStreamAddCallback_ptsz cuGraphAddHostNode
cuModuleEnumerateFunctions cuLibraryEnumerateKernels cuMemRangeGetAttribute cuMemRangeGetAttributes
cuFuncGetName cuKernelGetName
cuGraphGetNodes cuGraphGetRootNodes cuGraphGetEdges cuGraphGetEdges_v2 cuGraphNodeGetDependencies
cuGraphNodeGetDependencies_v2 cuGraphNodeGetDependentNodes cuGraphNodeGetDependentNodes_v2
cuGraphAddKernelNode cuGraphAddKernelNode_v2 cuGraphAddNode cuGraphAddNode_v2 cuGraphKernelNodeGetParams
cuGraphKernelNodeGetParams_v2 cuGraphKernelNodeSetParams cuGraphKernelNodeSetParams_v2 cuGraphNodeSetParams
cuGraphExecKernelNodeSetParams cuGraphExecKernelNodeSetParams_v2 cuGraphExecNodeSetParams
cuGraphDestroy cuGraphDestroyNode cuGraphInstantiate cuGraphInstantiate_v2
cuStreamBatchMemOp cuStreamBatchMemOp_ptsz cuStreamBatchMemOp_v2 cuStreamBatchMemOp_v2_ptsz
cuGraphAddEmptyNode cuGraphAddEventRecordNode cuGraphAddEventWaitNode cuGraphAddChildGraphNode cuGraphAddMemFreeNode
cuGraphAddMemsetNode cuGraphAddDependencies cuGraphAddDependencies_v2 cuGraphRemoveDependencies
cuGraphRemoveDependencies_v2 cuGraphAddMemcpyNode
cuStreamBeginCapture cuStreamBeginCapture_ptsz cuStreamBeginCapture_v2 cuStreamBeginCapture_v2_ptsz
cuStreamBeginCaptureToGraph cuStreamBeginCaptureToGraph_ptsz cuGraphAddMemAllocNode
cuGraphHostNodeGetParams cuGraphHostNodeSetParams cuGraphExecHostNodeSetParams
cuGraphMemcpyNodeGetParams cuGraphMemcpyNodeSetParams cuGraphExecMemcpyNodeSetParams
cuGraphMemAllocNodeGetParams cuGraphKernelNodeGetAttribute cuGraphKernelNodeSetAttribute
cuGraphAddBatchMemOpNode cuGraphBatchMemOpNodeGetParams cuGraphBatchMemOpNodeSetParams cuGraphExecBatchMemOpNodeSetParams
""".split())

# Auto functions that need no answer: sent without waiting; a failure surfaces at the next call
# that waits for the server, as CUDA's own asynchronous errors do.
PIPELINED = set("""
cuEventRecord cuEventRecord_ptsz cuEventRecordWithFlags cuEventRecordWithFlags_ptsz
cuStreamWaitEvent cuStreamWaitEvent_ptsz
cuMemsetD8 cuMemsetD8_v2 cuMemsetD16 cuMemsetD16_v2 cuMemsetD32 cuMemsetD32_v2
cuMemsetD8_v2_ptds cuMemsetD16_v2_ptds cuMemsetD32_v2_ptds
cuMemsetD2D8_v2 cuMemsetD2D16_v2 cuMemsetD2D32_v2 cuMemsetD2D8_v2_ptds cuMemsetD2D16_v2_ptds cuMemsetD2D32_v2_ptds
cuMemsetD8Async cuMemsetD16Async cuMemsetD32Async cuMemsetD8Async_ptsz cuMemsetD16Async_ptsz cuMemsetD32Async_ptsz
cuMemsetD2D8Async cuMemsetD2D16Async cuMemsetD2D32Async
cuMemsetD2D8Async_ptsz cuMemsetD2D16Async_ptsz cuMemsetD2D32Async_ptsz
cuMemFree cuMemFree_v2 cuMemFreeAsync cuMemFreeAsync_ptsz
cuEventDestroy cuEventDestroy_v2 cuStreamDestroy cuStreamDestroy_v2 cuModuleUnload cuLibraryUnload
cuGraphLaunch cuGraphLaunch_ptsz cuGraphExecDestroy cuGraphDestroy
cuMemcpyDtoDAsync cuMemcpyDtoDAsync_v2 cuMemcpyDtoDAsync_v2_ptsz
""".split())

# Inputs named like counts that are plain numbers, not the length of a pointer argument.
SCALAR_COUNTS = {("cuOccupancyAvailableDynamicSMemPerBlock", "numBlocks"),
                 ("cuDeviceGetTexture1DLinearMaxWidth", "numChannels"),
                 ("cuMipmappedArrayCreate", "numMipmapLevels")}

# Meaningless or unsafe on another machine (host callbacks, files and processes of the server): never
# forwarded, whatever their parameters look like.
DENIED_PREFIXES = ("cuCheckpoint", "cuGraphics", "cuLogs", "cuUserObject", "cuDeviceRegisterAsyncNotification",
                   "cuDeviceUnregisterAsyncNotification", "cuGraphDebugDotPrint", "cuProfilerInitialize",
                   # IPC, external memory and exported pool pointers: OS handles of other processes
                   "cuIpc", "cuExternalMemory", "cuMemPoolExportPointer", "cuMemPoolImportPointer")

# Functions whose parameters look generic but are not: a pointer that is really an array (a border
# colour of four floats), or an object that needs tracking nobody does yet (a multicast object).
NOT_GENERIC = {"cuTexRefGetBorderColor", "cuTexRefSetBorderColor", "cuMulticastCreate"}

# Client side: device memory the application got, so that cuMemcpy can tell device from host
# pointers. function -> (output holding the pointer, C expression of the size).
DEVICE_RANGES = {
    "cuMemAlloc_v2": ("dptr", "bytesize"),
    "cuMemAllocManaged": ("dptr", "bytesize"),
    "cuMemAllocAsync": ("dptr", "bytesize"),
    "cuMemAllocAsync_ptsz": ("dptr", "bytesize"),
    "cuMemAllocFromPoolAsync": ("dptr", "bytesize"),
    "cuMemAllocFromPoolAsync_ptsz": ("dptr", "bytesize"),
    "cuMemAllocPitch_v2": ("dptr", "(pPitch ? *pPitch : WidthInBytes) * Height"),
    "cuModuleGetGlobal_v2": ("dptr", "(bytes ? *bytes : 1)"),
    "cuLibraryGetGlobal": ("dptr", "(bytes ? *bytes : 1)"),
    "cuLibraryGetManaged": ("dptr", "(bytes ? *bytes : 1)"),
}
DEVICE_FREES = {"cuMemFree_v2": "dptr", "cuMemFreeAsync": "dptr", "cuMemFreeAsync_ptsz": "dptr"}
# Virtual memory: a mapped range is device memory to the client until it is unmapped.
# function -> (input holding the address, input holding the size).
DEVICE_MAPS = {"cuMemMap": ("ptr", "size")}
DEVICE_UNMAPS = {"cuMemUnmap": ("ptr", "size")}

# Managed and mapped host memory keep a host copy in step with the device (preload/shared_memory.*):
# the host's writes are sent before device work, the device's fetched after a synchronisation.
DEVICE_WORK = re.compile(r"^cu(MemPrefetchAsync|Memset|MemcpyDtoD|MemcpyPeer|Memcpy3DPeer|MemcpyAtoD|MemcpyDtoA|MemcpyAtoA|GraphLaunch)")
# Stream captures beginning and ending: managed and mapped memory is not synchronised while one is
# under way (the copies would be captured, or end the capture).
CAPTURE_BEGINS = re.compile(r"^cuStreamBeginCapture")
CAPTURE_ENDS = re.compile(r"^cuStreamEndCapture")
# Synchronisations, and whether the whole context is idle after them.
SYNCS = {"cuCtxSynchronize": True, "cuCtxSynchronize_v2": True, "cuStreamSynchronize": False,
         "cuStreamSynchronize_ptsz": False, "cuEventSynchronize": False, "cuStreamQuery": False,
         "cuStreamQuery_ptsz": False, "cuEventQuery": False}

SCALARS = {
    "int", "unsigned int", "unsigned", "short", "unsigned short", "long", "unsigned long", "long long",
    "unsigned long long", "size_t", "float", "double", "uint32_t", "uint64_t", "int32_t", "int64_t",
    "cuuint32_t", "cuuint64_t", "char", "unsigned char",
}


def fnv1a(name):
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def preprocess(cuda_include, extra_headers):
    source = "".join(f"#include <{h}>\n" for h in ["cuda.h"] + extra_headers)
    out = subprocess.run(["cc", "-E", "-P", "-D__CUDA_API_VERSION_INTERNAL", "-I", cuda_include, "-x", "c", "-"],
                         input=source, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("preprocessing cuda.h failed:\n" + out.stderr)
    return re.sub(r"\s+", " ", out.stdout)


class Types:
    """What the header's typedefs resolve to: scalar, enum, handle (opaque pointer) or other."""

    def __init__(self, text):
        self.handles = set(re.findall(r"typedef struct \w+ ?\* ?(\w+) ?;", text))
        self.enums = set(re.findall(r"typedef enum \w* ?\{[^}]*\} ?(\w+) ?;", text))
        self.enums |= set(re.findall(r"typedef enum \w+ (\w+) ?;", text))
        self.alias = {}
        for base, name in re.findall(r"typedef ((?:unsigned |signed |const )*\w+(?: long)?) (\w+) ?;", text):
            self.alias.setdefault(name, base)

    def kind(self, name):
        seen = set()
        while name not in seen:
            seen.add(name)
            if name in SCALARS:
                return "scalar"
            if name in self.enums:
                return "enum"
            if name in self.handles:
                return "handle"
            if name not in self.alias:
                return "other"
            name = self.alias[name]
        return "other"

    def is_device(self, name):
        return name in ("CUdevice", "CUdevice_v1")


def split_params(text):
    text = text.strip()
    if text in ("", "void"):
        return []
    depth, cur, out = 0, "", []
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        depth += ch in "(["
        depth -= ch in ")]"
        cur += ch
    out.append(cur.strip())
    return out


def parse_param(text):
    """-> (type text without name, base type, const, pointer depth, name) or None."""
    if "(" in text or "[" in text:
        return None
    m = re.match(r"^(.*?)(\w+)$", text.strip())
    if not m:
        return None
    type_text, name = m.group(1).strip(), m.group(2)
    depth = type_text.count("*")
    base = type_text.replace("*", " ")
    const = bool(re.search(r"\bconst\b", base))
    base = re.sub(r"\b(const|volatile|struct|enum)\b", " ", base)
    base = " ".join(base.split())
    return type_text, base, const, depth, name


def classify(name, params, types, structs):
    """Param kinds for an auto function, or None."""
    if name in NOT_GENERIC:
        return None
    kinds = []
    for type_text, base, const, depth, pname in params:
        k = types.kind(base)
        plain = k == "other" and structs.is_plain(base)
        if depth == 0 and k in ("scalar", "enum", "handle"):
            kinds.append("dev" if types.is_device(base) else "enum" if k == "enum" else "in")
        elif depth == 0 and plain:
            kinds.append("sval")
        elif depth == 1 and base == "char" and const:
            kinds.append("str")
        elif depth == 1 and plain:
            kinds.append("sin" if const else "sio")
        elif depth == 1 and not const and k in ("scalar", "enum", "handle") and base != "char":
            kinds.append("devout" if types.is_device(base) else "out")
        else:
            return None
    # A pointer next to a count is an array, not a single value.
    def is_count(n):
        if (name, n) in SCALAR_COUNTS:
            return False
        return re.match(r"(num[A-Z]|nb[A-Z]|count)", n) or n.endswith("Count")
    counted = set()
    for i, k in enumerate(kinds):
        if k != "sin":
            continue
        beside = [j for j in (i + 1, i - 1) if 0 <= j < len(kinds) and kinds[j] == "in" and is_count(params[j][4])]
        if beside:
            kinds[i] = f"sarr:{beside[0]}"
            counted.add(beside[0])
    # Beside a count, any other pointer may be an array too: only the struct arrays are taken.
    names = [p[4] for p in params]
    outs = [n for n, k in zip(names, kinds) if k in ("out", "devout", "sio")]
    ins = [n for n, k in zip(names, kinds) if k in ("in", "enum", "dev")]
    singles = [n for i, (n, k) in enumerate(zip(names, kinds)) if k == "sin"]
    if (outs or singles) and (any(is_count(n) for n in ins) or (len(outs) > 1 and any(is_count(n) for n in outs))):
        return None
    return kinds


def array_count(kind):
    """The index of the count parameter of an array kind ("sarr:3"), or None."""
    return int(kind.split(":")[1]) if kind.startswith("sarr:") else None


def load_table(cuda_include):
    """Every CUresult function of cuda.h with its class: [(name, class, raw, parsed, kinds)], sorted."""
    text = preprocess(cuda_include, ["cudaProfiler.h"])
    types = Types(text)
    structs = Structs(text, types)
    functions = {}
    for statement in text.split(";"):
        m = re.search(r"\bCUresult (cu\w+) ?\((.*)\) ?$", statement)
        if not m or "{" in statement or "typedef" in statement:
            continue
        raw = split_params(m.group(2))
        parsed = [parse_param(p) for p in raw]
        functions[m.group(1)] = (raw, parsed)

    ids = {}
    for name in functions:
        h = fnv1a(name)
        if h in ids:
            sys.exit(f"function id collision: {name} and {ids[h]}")
        ids[h] = name

    table = []
    for name, (raw, parsed) in sorted(functions.items()):
        if name in MANUAL:
            # Hand-written on the client; the server still dispatches it generically when it can.
            kinds = classify(name, parsed, types, structs) if all(p is not None for p in parsed) else None
            table.append((name, "manual", raw, parsed, kinds))
            continue
        kinds = None
        if not name.startswith(DENIED_PREFIXES) and all(p is not None for p in parsed):
            kinds = classify(name, parsed, types, structs)
        if kinds is None:
            table.append((name, "other", raw, parsed, None))
        else:
            if name in PIPELINED and any(k in ("out", "devout", "sio") for k in kinds):
                sys.exit(f"{name} is listed as pipelined but has outputs")
            table.append((name, "auto", raw, parsed, kinds))
    missing = [n for n in MANUAL | PIPELINED if n not in functions]
    return table, missing, structs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuda-include", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--list", action="store_true", help="print the classification and exit")
    args = ap.parse_args()

    table, missing, structs = load_table(args.cuda_include)
    if args.list:
        for name, cls, raw, parsed, kinds in table:
            print(f"{cls:7} {name}({', '.join(raw)})")
        print("not in this cuda.h:", " ".join(sorted(missing)), file=sys.stderr)
        return
    write_outputs(args.out_dir, table, args.cuda_include, structs)


def error_source(cuda_include):
    """cuGetErrorName and cuGetErrorString, answered from the CUresult enum and its doc comments."""
    raw = open(f"{cuda_include}/cuda.h").read()
    block = re.search(r"typedef enum cudaError_enum \{(.*?)\} CUresult;", raw, re.S).group(1)
    entries = re.findall(r"/\*\*(.*?)\*/\s*(CUDA_\w+)\s*=\s*(\d+)", block, re.S)
    out = ["// Generated by gen/cuda_api.py from cuda.h. Do not edit.", "#include <cuda.h>", "",
           "namespace rgpu::cuda {", "struct ErrorText { int code; const char* name; const char* text; };",
           "static const ErrorText kErrorTexts[] = {"]
    for comment, name, code in entries:
        text = re.sub(r"\\ref\s+|::|\\p\s+|\\b\s+|<[^>]+>", "", comment)
        text = " ".join(w for w in text.split() if w != "*")
        text = re.split(r"(?<=[.])\s", text)[0].replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'    {{{code}, "{name}", "{text}"}},')
    out += ["};",
            "const char* error_name_of(CUresult result) {",
            "  for (const auto& e : kErrorTexts) if (e.code == static_cast<int>(result)) return e.name;",
            "  return nullptr;", "}",
            "const char* error_string_of(CUresult result) {",
            "  for (const auto& e : kErrorTexts) if (e.code == static_cast<int>(result)) return e.text;",
            "  return nullptr;", "}", "}  // namespace rgpu::cuda", ""]
    for api, lookup in (("cuGetErrorName", "error_name_of"), ("cuGetErrorString", "error_string_of")):
        out += [f'extern "C" __attribute__((visibility("default"))) CUresult {api}(CUresult error, const char** text) {{',
                "  if (text == nullptr) return CUDA_ERROR_INVALID_VALUE;",
                f"  *text = rgpu::cuda::{lookup}(error);",
                "  return *text ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;", "}", ""]
    return out


def write_outputs(out_dir, table, cuda_include, structs):
    hdr = ["// Generated by gen/cuda_api.py from cuda.h. Do not edit.", "#pragma once", "#include <cstdint>", "",
           "namespace rgpu::cuda {", ""]
    for name, *_ in table:
        hdr.append(f"inline constexpr uint32_t FN_{name} = 0x{fnv1a(name):08x}u;")
    hdr += ["", "// The driver function's name for an id (nullptr when unknown).",
            "const char* function_name(uint32_t id);", "", "}  // namespace rgpu::cuda", ""]
    write(out_dir, "cuda_functions.gen.hpp", hdr)

    names = ["// Generated by gen/cuda_api.py from cuda.h. Do not edit.", '#include "cuda_functions.gen.hpp"', "",
             "namespace rgpu::cuda {", "const char* function_name(uint32_t id) {", "  switch (id) {"]
    for name, *_ in table:
        names.append(f'    case FN_{name}: return "{name}";')
    names += ["  }", "  return nullptr;", "}", "}  // namespace rgpu::cuda", ""]
    write(out_dir, "cuda_function_names.gen.cpp", names)

    write(out_dir, "cuda_client.gen.cpp", client_source(table))
    write(out_dir, "cuda_errors.gen.cpp", error_source(cuda_include))
    write(out_dir, "cuda_server.gen.cpp", server_source(table, structs))


def write(out_dir, name, lines):
    with open(f"{out_dir}/{name}", "w") as f:
        f.write("\n".join(lines))


def client_source(table):
    out = ["// Generated by gen/cuda_api.py from cuda.h. Do not edit.",
           "// Client stubs: auto functions forward to the server, unsupported ones say so.",
           '#include "cuda_client.hpp"', "",
           "// Unsupported entry points keep the driver's signatures but use no parameter.",
           '#pragma GCC diagnostic ignored "-Wunused-parameter"', "", "using namespace rgpu::cuda;", "", 'extern "C" {', ""]
    for name, cls, raw, parsed, kinds in table:
        if cls == "manual":
            continue
        sig = ", ".join(raw) if raw else "void"
        out.append(f"RGPU_EXPORT CUresult {name}({sig}) {{")
        if cls == "other":
            out.append(f'  return not_supported("{name}");')
        else:
            out += auto_client_body(name, parsed, kinds)
        out += ["}", ""]
    out += ["}  // extern \"C\"", "", "namespace rgpu::cuda {",
            "// Every exported driver function by name, for cuGetProcAddress.",
            "const ExportedFunction kExportedFunctions[] = {"]
    for name, *_ in table:
        out.append(f'    {{"{name}", reinterpret_cast<void*>(&::{name})}},')
    out += ["};", "const size_t kExportedFunctionCount = sizeof kExportedFunctions / sizeof kExportedFunctions[0];",
            "}  // namespace rgpu::cuda", ""]
    return out


def struct_type(p):
    """The struct type a struct parameter names (without const, pointer or `struct`)."""
    return p[1]


def auto_client_body(name, parsed, kinds):
    body = []
    if name in DEVICE_FREES:
        # A shared allocation's host copy goes first; the server knows it by its own base address.
        body.append(f"  {DEVICE_FREES[name]} = release_shared({DEVICE_FREES[name]});")
    if DEVICE_WORK.match(name):
        body.append("  if (const CUresult shared = before_device_work(); shared != CUDA_SUCCESS) return shared;")
    body.append(f"  CallBuilder call(FN_{name});")
    outs = [(p, i) for i, (p, k) in enumerate(zip(parsed, kinds)) if k in ("out", "devout", "sio")]
    if outs:
        mask = " | ".join(f"(({p[4]} != nullptr) ? {1 << j}u : 0u)" for j, (p, _) in enumerate(outs))
        body.append(f"  call.out_mask({mask});")
    for p, k in zip(parsed, kinds):
        if k in ("in", "enum", "dev"):
            body.append(f"  call.in({p[4]});")
        elif k == "str":
            body.append(f"  call.str({p[4]});")
        elif k == "sval":
            body.append(f"  call.struct_in(&{p[4]});")
        elif k == "sin":
            body.append(f"  call.struct_in({p[4]});")
        elif k == "sio":
            body.append(f"  if ({p[4]}) call.struct_bytes(*{p[4]});")
        elif array_count(k) is not None:
            count = parsed[array_count(k)][4]
            body.append(f"  if (!call.struct_array({p[4]}, {count})) return CUDA_ERROR_INVALID_VALUE;")
    if name in DEVICE_FREES:
        body.append(f"  forget_device_range({DEVICE_FREES[name]});")
    if name in PIPELINED:
        body.append("  return call_pipelined(call);")
        return body
    capture = CAPTURE_BEGINS.match(name) or CAPTURE_ENDS.match(name)
    capture_note = f"  capture_changed({'true' if CAPTURE_BEGINS.match(name) else 'false'}, result);"
    if not outs and capture:
        body += ["  const CUresult result = call_sync(call, nullptr);", capture_note, "  return result;"]
        return body
    if not outs and name in SYNCS:
        body.append("  const CUresult result = call_sync(call, nullptr);")
        body.append(f"  return result == CUDA_SUCCESS ? after_synchronisation({str(SYNCS[name]).lower()}) : result;")
        return body
    if name in DEVICE_MAPS or name in DEVICE_UNMAPS:
        ptr, size = DEVICE_MAPS.get(name) or DEVICE_UNMAPS[name]
        note = "note_device_range" if name in DEVICE_MAPS else "forget_device_ranges"
        body.append("  const CUresult result = call_sync(call, nullptr);")
        body.append(f"  if (result == CUDA_SUCCESS) {note}({ptr}, {size});")
        body.append("  return result;")
        return body
    if not outs:
        body.append("  return call_sync(call, nullptr);")
        return body
    # The reply: the 8-byte outputs in order, then the structs in order.
    body.append("  const CUresult result = call_sync(call, [&](rgpu::WireReader& r) {")
    for p, i in outs:
        if kinds[i] != "sio":
            base = p[0].replace("*", "").strip()
            body.append(f"    if ({p[4]}) *{p[4]} = take_out<{base}>(r);")
    for p, i in outs:
        if kinds[i] == "sio":
            body.append(f'    if ({p[4]}) take_struct(r, *{p[4]}, "{struct_type(p)}");')
    body.append("  });")
    if name in DEVICE_RANGES:
        ptr, size = DEVICE_RANGES[name]
        body.append(f"  if (result == CUDA_SUCCESS && {ptr}) note_device_range(*{ptr}, {size});")
    if capture:
        body.append(capture_note)
    body.append("  return result;")
    return body


def server_source(table, structs):
    out = ["// Generated by gen/cuda_api.py from cuda.h. Do not edit.",
           "// Server dispatch of the auto functions: decode, call the real driver, encode the outputs.",
           '#include "cuda_dispatch.hpp"', "", "namespace rgpu::cuda {", "",
           "const AutoFunction* find_auto_function(uint32_t id) {",
           "  static const AutoFunction kTable[] = {"]
    for name, cls, raw, parsed, kinds in table:
        if kinds is None:
            continue
        out.append(f'      {{FN_{name}, "{name}", {str(name in PIPELINED).lower()}, &call_{name}}},')
    out += ["  };", "  for (const auto& f : kTable)", "    if (f.id == id) return &f;", "  return nullptr;", "}", ""]
    bodies = []
    for name, cls, raw, parsed, kinds in table:
        if kinds is None:
            continue
        bodies += server_function(name, parsed, kinds, structs)
    # the functions must precede the table that names them
    return out[:5] + bodies + out[5:] + ["}  // namespace rgpu::cuda", ""]


def struct_checks(name, p, value, structs, copy_out=False):
    """Lines that check and translate one struct the application sent (`value`: a C++ lvalue).
    An input's pointer members that must be NULL are refused when set; an in-out struct's are
    cleared (an output's bytes are whatever the application's memory held)."""
    lines = []
    for path in structs.null_pointers(struct_type(p)):
        if copy_out:
            lines.append(f"{value}.{path} = nullptr;")
        else:
            lines.append(f"if ({value}.{path} != nullptr) return c.refuse(\"{name}: {struct_type(p)}.{path} must be NULL\");")
    for path in structs.locations(struct_type(p)):
        lines.append(f"c.to_real({value}{'.' + path if path else ''});")
    return lines


def server_function(name, parsed, kinds, structs):
    # An enum from the wire may hold any value: it is kept in its underlying type, never loaded as
    # the enum (undefined behaviour for a value outside it); the driver takes the same bits.
    def param_type(p, k):
        return f"std::underlying_type_t<{p[0]}>" if k == "enum" else p[0]
    types = ", ".join(param_type(p, k) for p, k in zip(parsed, kinds))
    lines = [f"static CUresult call_{name}(void* fn, CallContext& c) {{",
             f"  using Fn = CUresult (*)({types});"]
    outs = [i for i, k in enumerate(kinds) if k in ("out", "devout", "sio")]
    if outs:
        lines.append("  const uint32_t mask = c.out_mask();")
    args = []
    checks = []  # after every argument is read (an array's count comes after it)
    bits = {i: 1 << j for j, i in enumerate(outs)}
    for i, (p, k) in enumerate(zip(parsed, kinds)):
        t = p[0]
        if k in ("in", "enum"):
            lines.append(f"  const auto a{i} = c.in<{param_type(p, k)}>();")
            args.append(f"a{i}")
        elif k == "dev":
            lines.append(f"  const auto a{i} = c.device(c.in<{t}>());")
            args.append(f"a{i}")
        elif k == "str":
            lines.append(f"  const std::string a{i} = c.str();")
            args.append(f"a{i}.c_str()")
        elif k == "sval":
            lines.append(f"  {struct_type(p)} a{i}{{}};")
            lines.append(f'  const bool has{i} = c.struct_in(a{i}, "{struct_type(p)}");')
            checks.append(f'  if (!has{i}) return c.refuse("{name}: {p[4]} is missing");')
            checks += ["  " + line for line in struct_checks(name, p, f"a{i}", structs)]
            args.append(f"a{i}")
        elif k == "sin":
            lines.append(f"  {struct_type(p)} a{i}{{}};")
            lines.append(f'  const bool has{i} = c.struct_in(a{i}, "{struct_type(p)}");')
            inner = struct_checks(name, p, f"a{i}", structs)
            if inner:
                checks += [f"  if (has{i}) {{"] + ["    " + line for line in inner] + ["  }"]
            args.append(f"has{i} ? &a{i} : nullptr")
        elif array_count(k) is not None:
            lines.append(f"  std::vector<{struct_type(p)}> a{i};")
            lines.append(f'  const bool has{i} = c.struct_array(a{i}, "{struct_type(p)}");')
            n = array_count(k)
            checks.append(f"  if (static_cast<uint64_t>(a{n}) != a{i}.size())")
            checks.append(f'    return c.refuse("{name}: {parsed[n][4]} is not the number of {p[4]} sent");')
            inner = struct_checks(name, p, "e", structs)
            if inner:
                checks += [f"  for (auto& e : a{i}) {{"] + ["    " + line for line in inner] + ["  }"]
            args.append(f"has{i} ? a{i}.data() : nullptr")
        elif k == "sio":
            lines.append(f"  {struct_type(p)} o{i}{{}};")
            lines.append(f'  if (mask & {bits[i]}u) c.struct_bytes(o{i}, "{struct_type(p)}");')
            inner = struct_checks(name, p, f"o{i}", structs, copy_out=True)
            if inner:
                checks += [f"  if (mask & {bits[i]}u) {{"] + ["    " + line for line in inner] + ["  }"]
            args.append(f"(mask & {bits[i]}u) ? &o{i} : nullptr")
        else:
            base = t.replace("*", "").strip()
            lines.append(f"  {base} o{i}{{}};")
            args.append(f"(mask & {bits[i]}u) ? &o{i} : nullptr")
    lines += checks
    lines.append("  if (const CUresult veto = c.end_of_arguments(); veto != CUDA_SUCCESS) return veto;")
    lines.append(f"  const CUresult result = reinterpret_cast<Fn>(fn)({', '.join(args)});")
    if outs:
        lines.append("  if (result == CUDA_SUCCESS) {")
        for i in outs:
            if kinds[i] == "sio":
                continue
            conv = f"c.virtual_device(o{i})" if kinds[i] == "devout" else f"o{i}"
            lines.append(f"    if (mask & {bits[i]}u) c.out({conv});")
        for i in outs:
            if kinds[i] != "sio":
                continue
            lines.append(f"    if (mask & {bits[i]}u) {{")
            for path in structs.locations(struct_type(parsed[i])):
                lines.append(f"      c.to_app(o{i}{'.' + path if path else ''});")
            lines.append(f"      c.struct_out(o{i});")
            lines.append("    }")
        lines.append("  }")
    lines += ["  return result;", "}", ""]
    return lines


if __name__ == "__main__":
    main()
