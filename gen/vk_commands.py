#!/usr/bin/env python3
"""Reads the Vulkan registry (vk.xml) and writes the mechanical part of RGPU's Vulkan forwarding:
how every struct a forwarded command takes travels on the wire, how the ICD encodes each command,
and how the server decodes and replays it on the real driver.

Outputs (into the build folder):
  vk_codec.gen.hpp/.cpp   put(): a struct to the wire; get(): back into memory from an Arena, with
                          handles resolved by the server; fill(): answers into the caller's structs;
                          the pNext chain codecs (a switch on sType).
  vk_commands.gen.hpp     one entry per forwarded command: id, how it travels, where it comes from.
  vk_icd.gen.cpp          the ICD's entry points for every command not written by hand, and
                          encode_<command>() for all of them.
  vk_server.gen.cpp       the server's decoder and replay for every forwarded command, the device
                          dispatch table and the destroy function of every object type.

Every command is one of:
  recorded    vkCmd*: appended to the command buffer's stream, sent with vkEndCommandBuffer;
  pipelined   no outputs (creations with ids the ICD picks, destructions, updates): sent without
              waiting; a failure surfaces at the next call that waits;
  synchronous outputs the application needs now: sent, then the answer awaited.
Commands whose parameters cannot travel (host pointers without a length, function pointers,
platform types) are not generated; the ICD does not advertise them.
"""
import argparse
import re
import sys
import xml.etree.ElementTree as ET

VERSIONS = ["VK_VERSION_1_0", "VK_VERSION_1_1", "VK_VERSION_1_2", "VK_VERSION_1_3"]
DISPATCHABLE_FIRST = {"VkDevice", "VkQueue", "VkCommandBuffer", "VkPhysicalDevice"}
# Physical-device commands the ICD answers itself (from the description fetched once) or by hand.
ANSWERED_BY_ICD = {
    "vkGetPhysicalDeviceProperties", "vkGetPhysicalDeviceProperties2", "vkGetPhysicalDeviceFeatures",
    "vkGetPhysicalDeviceFeatures2", "vkGetPhysicalDeviceMemoryProperties", "vkGetPhysicalDeviceMemoryProperties2",
    "vkGetPhysicalDeviceQueueFamilyProperties", "vkGetPhysicalDeviceQueueFamilyProperties2",
    "vkGetPhysicalDeviceFormatProperties", "vkGetPhysicalDeviceFormatProperties2",
    "vkGetPhysicalDeviceImageFormatProperties", "vkGetPhysicalDeviceSparseImageFormatProperties",
    "vkGetPhysicalDeviceToolProperties", "vkEnumerateDeviceExtensionProperties", "vkEnumerateDeviceLayerProperties",
}
# Device extensions whose commands are forwarded (beyond their core aliases).
EXTENSIONS = ["VK_KHR_push_descriptor"]
# Written by hand in the ICD (they keep client-side state); the server side is still generated.
HAND_WRITTEN = {
    "vkGetDeviceQueue", "vkGetDeviceQueue2", "vkAllocateCommandBuffers", "vkFreeCommandBuffers",
    "vkBeginCommandBuffer", "vkEndCommandBuffer", "vkResetCommandBuffer", "vkDestroyCommandPool",
    "vkResetCommandPool", "vkAllocateMemory", "vkFreeMemory", "vkFlushMappedMemoryRanges",
    "vkInvalidateMappedMemoryRanges", "vkCreateDescriptorUpdateTemplate", "vkDestroyDescriptorUpdateTemplate",
}
# Queue submissions: the server's Replay picks the fence they signal (submission_fence: the
# application's, or one of its own), by which it knows when the queue's work has finished.
SUBMISSIONS = {"vkQueueSubmit", "vkQueueSubmit2", "vkQueueBindSparse"}
# Commands after which the device may read host memory: the ICD first sends what the application
# changed in mapped memory.
PUSH_BEFORE = SUBMISSIONS | {"vkSetEvent", "vkSignalSemaphore"}
# Written by hand in the ICD and served by RGPU's own calls (mapped memory lives in the ICD).
# vkUpdateDescriptorSetWithTemplate becomes a vkUpdateDescriptorSets in the ICD, which knows the
# template's entries.
HAND_ONLY = {"vkMapMemory", "vkUnmapMemory", "vkUpdateDescriptorSetWithTemplate", "vkCmdPushDescriptorSetWithTemplateKHR"}
# Not forwarded at all: the server has no use for them or they need host memory the wire cannot see.
NOT_FORWARDED = {"vkCreateDevice", "vkDestroyDevice", "vkGetDeviceProcAddr"} | ANSWERED_BY_ICD
# Creations that wait for their answer: their failures are ones applications handle.
SYNC_CREATIONS = {"vkAllocateMemory", "vkAllocateDescriptorSets", "vkCreateGraphicsPipelines",
                  "vkCreateComputePipelines"}
# Commands after which GPU writes become visible to the host: the server sends what changed in
# mapped memory before it answers.
MAKES_VISIBLE = {"vkWaitForFences", "vkGetFenceStatus", "vkQueueWaitIdle", "vkDeviceWaitIdle", "vkWaitSemaphores",
                 "vkGetSemaphoreCounterValue", "vkInvalidateMappedMemoryRanges", "vkGetEventStatus"}
# The server's Replay looks at these calls' decoded arguments after they ran (observe_<command>):
# memory bindings and the ranges that transfers write, so that it knows what the device can change;
# fences reset or destroyed (which the application may do only once their work has finished).
OBSERVED = {"vkBindBufferMemory", "vkBindBufferMemory2", "vkCmdCopyBuffer", "vkCmdFillBuffer", "vkCmdUpdateBuffer",
            "vkCmdCopyImageToBuffer", "vkResetFences", "vkDestroyFence"}
# Pool-owned objects: released with their pool (or its reset), never destroyed on their own.
POOL_OF = {"VkDescriptorSet": "descriptorPool", "VkCommandBuffer": "commandPool"}
POOL_RESETS = {"vkResetDescriptorPool": "descriptorPool"}
# Members the spec says are ignored (and may hold garbage) unless a condition holds.
MEMBER_CONDITIONS = {
    ("VkWriteDescriptorSet", "pImageInfo"): "writes_images(number(s.descriptorType))",
    ("VkWriteDescriptorSet", "pBufferInfo"): "writes_buffers(number(s.descriptorType))",
    ("VkWriteDescriptorSet", "pTexelBufferView"): "writes_texel_buffers(number(s.descriptorType))",
    ("VkDescriptorSetLayoutBinding", "pImmutableSamplers"): "takes_immutable_samplers(number(s.descriptorType))",
}
PLAIN_C = {"uint8_t", "int8_t", "uint16_t", "int16_t", "uint32_t", "int32_t", "uint64_t", "int64_t", "float",
           "double", "char", "int", "size_t"}


def is_vulkan(e):
    return "vulkan" in e.get("api", "vulkan").split(",")


class Member:
    def __init__(self, element, owner):
        self.owner = owner
        self.name = element.findtext("name")
        self.type = element.findtext("type")
        text = (element.text or "") + "".join(
            "".join(c.itertext()) + (c.tail or "") for c in element if c.tag != "comment")
        decl = text.split(self.name)[0] if self.name else text
        self.ptr = decl.count("*")
        self.const = decl.strip().startswith("const")
        self.bitfield = ":" in text.split(self.name)[-1]
        after = text[text.rfind(self.name) + len(self.name):] if self.name else ""
        m = re.match(r"\s*\[([^\]]+)\]", after)
        self.array = element.findtext("enum") or (m.group(1) if m else None)
        if m and re.match(r"\s*\[[^\]]+\]\s*\[", after):
            self.array = None
            self.bitfield = True  # 2D arrays: not used by forwarded commands
        self.len = element.get("altlen") or element.get("len")
        self.optional = element.get("optional", "").split(",")[0] == "true"


class Registry:
    def __init__(self, root):
        self.root = root
        self.types = {}
        for t in root.findall("types/type"):
            if not is_vulkan(t):
                continue
            name = t.get("name") or t.findtext("name")
            self.types[name] = t
        self.declared = self._declared_types()
        self.extensions = {e.get("name"): e for e in root.findall("extensions/extension")}

    def _declared_types(self):
        """Types vulkan_core.h declares: required by a core version or by a non-platform extension."""
        out = set()
        sources = [f for f in self.root.findall("feature") if is_vulkan(f)]
        for ext in self.root.findall("extensions/extension"):
            if "vulkan" in ext.get("supported", "").split(",") and not ext.get("platform") and \
                    ext.get("provisional") != "true":
                sources.append(ext)
        for s in sources:
            for req in s.findall("require"):
                if is_vulkan(req):
                    out.update(t.get("name") for t in req.findall("type"))
        return out

    def category(self, name):
        t = self.types.get(name)
        if t is None:
            return "plain" if name in PLAIN_C else None
        if t.get("alias"):
            return self.category(t.get("alias"))
        c = t.get("category")
        if c in ("enum", "bitmask"):
            return "plain"
        if c == "basetype":
            return "plain" if t.find("type") is not None else None
        if c is None and (name in PLAIN_C or name == "void"):
            return "plain"
        return c  # struct, union, handle, funcpointer, include, define

    def resolve(self, name):
        t = self.types.get(name)
        while t is not None and t.get("alias"):
            name = t.get("alias")
            t = self.types.get(name)
        return name

    def members(self, name):
        t = self.types[self.resolve(name)]
        return [Member(m, name) for m in t.findall("member") if is_vulkan(m)]

    def is_enum(self, name):
        t = self.types.get(self.resolve(name))
        return t is not None and t.get("category") == "enum"

    def handle_info(self, name):
        t = self.types[self.resolve(name)]
        return t.findtext("type") == "VK_DEFINE_HANDLE", t.get("objtypeenum")

    def stype(self, name):
        for m in self.types[self.resolve(name)].findall("member"):
            if m.findtext("name") == "sType" and m.get("values"):
                return m.get("values")
        return None


class Model:
    """Decides which structs can travel, and how."""

    def __init__(self, reg):
        self.reg = reg
        self.support = {}   # struct -> None or reason
        self.outputs = {}   # struct -> can be an answer (plain data only)
        self.pod_memo = {}

    def pod(self, name):
        """Bytes that mean the same on both ends: no pointers, no handles."""
        name = self.reg.resolve(name)
        if name in self.pod_memo:
            return self.pod_memo[name]
        self.pod_memo[name] = False
        ok = True
        for m in self.reg.members(name):
            cat = self.reg.category(m.type)
            if m.ptr or m.bitfield or cat not in ("plain", "struct", "union") or \
                    (cat in ("struct", "union") and not self.pod(m.type)):
                ok = False
        self.pod_memo[name] = ok
        return ok

    def struct_problem(self, name):
        name = self.reg.resolve(name)
        if name in self.support:
            return self.support[name]
        if name not in self.reg.declared:
            self.support[name] = "not in vulkan_core.h"
            return self.support[name]
        self.support[name] = None  # optimistic for recursion (chains refer back)
        problem = None
        for m in self.reg.members(name):
            problem = self.member_problem(name, m)
            if problem:
                break
        self.support[name] = problem
        return problem

    def member_problem(self, owner, m):
        if m.bitfield:
            return f"{owner}.{m.name} is a bit field"
        if m.name == "pNext":
            return None
        cat = self.reg.category(m.type)
        if cat is None or cat in ("funcpointer", "include", "define"):
            return f"{owner}.{m.name} has type {m.type}"
        if cat == "union" and not self.pod(m.type):
            return f"{owner}.{m.name} is a union with pointers"
        if cat == "handle" and self.reg.resolve(m.type) in ("VkInstance", "VkPhysicalDevice"):
            return f"{owner}.{m.name} names a {m.type}"
        if cat == "struct" and self.struct_problem(m.type):
            return self.struct_problem(m.type)
        if m.ptr == 0:
            return None
        if m.ptr > 1:
            if m.type == "char" and m.len and "null-terminated" in m.len:
                return None
            return f"{owner}.{m.name} is a pointer to pointers"
        if not m.const:
            return f"{owner}.{m.name} is written by the driver"
        if m.type == "void" and not m.len:
            return f"{owner}.{m.name} is an untyped pointer"
        if m.type == "char" and m.len != "null-terminated":
            return f"{owner}.{m.name} is a char pointer"
        return None

    def output_problem(self, name):
        """Structs the driver fills: plain members, pNext and nested such structs only."""
        name = self.reg.resolve(name)
        if name in self.outputs:
            return self.outputs[name]
        self.outputs[name] = None
        problem = self.struct_problem(name)
        for m in self.reg.members(name):
            if problem:
                break
            if m.name == "pNext" and m.const:
                problem = f"{name} is an input struct"
            if m.name in ("sType", "pNext"):
                continue
            cat = self.reg.category(m.type)
            if m.ptr or cat == "handle":
                problem = f"{name}.{m.name} cannot be an answer"
            elif cat == "struct":
                problem = self.output_problem(m.type)
        self.outputs[name] = problem
        return problem


def cexpr(expr, names, prefix):
    """A len expression of the registry as C++, members prefixed (`s.`) where they are the struct's.
    A struct's members are read as numbers (number()): one may be an enum holding any value."""
    def name(m):
        if m.group(1) not in names:
            return m.group(1)
        return f"number({prefix}{m.group(1)})" if prefix else m.group(1)
    return re.sub(r"\b([A-Za-z_]\w*)\b", name, expr)


class Emitter:
    """Writes the put/get/fill code of struct members and command parameters."""

    def __init__(self, reg, model):
        self.reg = reg
        self.model = model

    def handle_get(self, type_name, target, name=""):
        _, objtype = self.reg.handle_info(type_name)
        # Sources of transfers (srcBuffer, srcImage, srcSet) are only read.
        resolve = "resolve_source" if name.startswith("src") else "resolve"
        return f"{target} = from_wire<{type_name}>(ctx.handles.{resolve}(r.get<uint64_t>(), {objtype}));"

    def put_value(self, m, v):
        cat = self.reg.category(m.type)
        if cat == "plain":
            return [f"w.put<uint64_t>({v});"] if m.type == "size_t" else [f"w.put({v});"]
        if cat == "handle":
            return [f"w.put<uint64_t>(to_wire({v}));"]
        if cat == "union" or self.model.pod(m.type):
            return [f"w.bytes(&{v}, sizeof({v}));"]
        return [f"put(w, {v});"]

    def get_value(self, m, target):
        cat = self.reg.category(m.type)
        if cat == "plain":
            if m.type == "size_t":
                return [f"{target} = static_cast<size_t>(r.get<uint64_t>());"]
            if self.reg.is_enum(m.type):
                # Copied, never loaded as the enum: a value outside it would be undefined behaviour.
                return [f"std::memcpy(&{target}, r.bytes(sizeof({target})).data(), sizeof({target}));"]
            return [f"{target} = r.get<{m.type}>();"]
        if cat == "handle":
            return [self.handle_get(m.type, target, m.name)]
        if cat == "union" or self.model.pod(m.type):
            return [f"std::memcpy(&{target}, r.bytes(sizeof({target})).data(), sizeof({target}));"]
        return [f"get(r, {target}, ctx);"]

    def elem_size(self, m):
        return "1" if m.type == "void" else f"sizeof({m.type})"

    def bulk(self, m):
        """Arrays whose bytes travel as they are."""
        cat = self.reg.category(m.type)
        return m.type == "void" or (cat == "plain" and m.type != "size_t") or \
            (cat in ("struct", "union") and self.model.pod(m.type))

    def put_member(self, m, v, count, condition=None):
        """Code that writes member/parameter `m` whose value expression is `v`."""
        if m.name == "pNext":
            return [f"put_chain(w, {v});"]
        if m.ptr == 0 and m.array:
            # sizeof the first element: a command's array parameter is a pointer.
            if self.bulk(m):
                return [f"w.bytes({v}, sizeof({v}[0]) * ({m.array}));"]
            return [f"for (size_t i = 0; i < ({m.array}); ++i) {{"] + \
                ["  " + x for x in self.put_value(m, f"{v}[i]")] + ["}"]
        if m.ptr == 0:
            return self.put_value(m, v)
        present = f"{v} != nullptr" + (f" && ({condition})" if condition else "")
        if m.type == "char" and m.ptr == 2:
            return [f"w.put<uint8_t>({present});", f"if ({present}) {{", f"  w.put<uint32_t>({count});",
                    f"  for (uint32_t i = 0; i < {count}; ++i) w.str({v}[i]);", "}"]
        if m.type == "char":
            return [f"w.put<uint8_t>({present});", f"if ({present}) w.str({v});"]
        if count is None:  # one element
            return [f"w.put<uint8_t>({present});", f"if ({present}) {{"] + \
                ["  " + x for x in self.put_value(m, f"*{v}")] + ["}"]
        lines = [f"w.put<uint8_t>({present});", f"if ({present}) {{", f"  const uint64_t n = {count};",
                 "  w.put<uint64_t>(n);"]
        if self.bulk(m):
            lines.append(f"  w.bytes({v}, n * {self.elem_size(m)});")
        else:
            lines += ["  for (uint64_t i = 0; i < n; ++i) {"] + \
                ["    " + x for x in self.put_value(m, f"{v}[i]")] + ["  }"]
        return lines + ["}"]

    def get_member(self, m, target, count, where):
        """Code that reads member/parameter `m` into `target` (server side, from the Arena)."""
        if m.name == "pNext":
            return [f"{target} = get_chain(r, ctx);"]
        if m.ptr == 0 and m.array:
            if self.bulk(m):
                return [f"std::memcpy({target}, r.bytes(sizeof({target})).data(), sizeof({target}));"]
            return [f"for (auto& e : {target}) {{"] + ["  " + x for x in self.get_value(m, "e")] + ["}"]
        if m.ptr == 0:
            return self.get_value(m, target)
        lines = [f"{target} = nullptr;", "if (r.get<uint8_t>()) {"]
        if m.type == "char" and m.ptr == 2:
            check = []
            if count is not None:
                check = [f"  if (n != static_cast<uint64_t>({count}))",
                         f"    throw WireError(\"{where}: {m.name} has \" + std::to_string(n) + \" strings, its length says \" + std::to_string({count}));"]
            return lines + ["  const uint32_t n = r.get<uint32_t>();"] + check + [
                            "  auto** strings = ctx.arena.make<const char*>(checked_count(r, n, 4));",
                            "  for (uint32_t i = 0; i < n; ++i) strings[i] = ctx.arena.copy_string(r.str());",
                            f"  {target} = strings;", "}"]
        if m.type == "char":
            return lines + [f"  {target} = ctx.arena.copy_string(r.str());", "}"]
        base = "uint8_t" if m.type == "void" else m.type
        if count is None:
            lines += [f"  auto* one = ctx.arena.make<{base}>(1);"] + ["  " + x for x in self.get_value(m, "*one")] + \
                [f"  {target} = one;", "}"]
            return lines
        lines += ["  const uint64_t n = r.get<uint64_t>();"]
        if count != "?":
            lines += [f"  if (n != static_cast<uint64_t>({count}))",
                      f"    throw WireError(\"{where}: {m.name} has \" + std::to_string(n) + \" elements, its length says \" + std::to_string({count}));"]
        if self.bulk(m):
            lines += [f"  {target} = ctx.arena.copy_bytes<{base}>(r.bytes(checked_count(r, n, {self.elem_size(m)}) * {self.elem_size(m)}));"]
        else:
            lines += [f"  auto* items = ctx.arena.make<{base}>(checked_count(r, n, 1));",
                      "  for (uint64_t i = 0; i < n; ++i) {"] + \
                ["    " + x for x in self.get_value(m, "items[i]")] + ["  }", f"  {target} = items;"]
        return lines + ["}"]

    def fill_member(self, m, target):
        """Code that reads an answer into the application's struct member (ICD side)."""
        if m.name == "pNext":
            return [f"fill_chain(r, {target});"]
        if m.name == "sType":
            return ["r.get<VkStructureType>();"]
        cat = self.reg.category(m.type)
        if m.array or cat == "union" or (cat == "struct" and self.model.pod(m.type)) or cat == "plain":
            if m.type == "size_t" and not m.array:
                return [f"{target} = static_cast<size_t>(r.get<uint64_t>());"]
            return [f"std::memcpy(&{target}, r.bytes(sizeof({target})).data(), sizeof({target}));"]
        return [f"fill(r, {target});"]


def struct_closure(reg, model, roots):
    """Structs reachable from `roots` through members and pNext extension."""
    extenders = {}
    for t in reg.root.findall("types/type[@category='struct']"):
        if t.get("alias") or not is_vulkan(t):
            continue
        for parent in t.get("structextends", "").split(","):
            if parent:
                extenders.setdefault(parent, []).append(t.get("name"))
    seen, todo = [], list(roots)
    while todo:
        name = reg.resolve(todo.pop())
        if name in seen or reg.category(name) != "struct" or model.struct_problem(name):
            continue
        seen.append(name)
        for m in reg.members(name):
            if reg.category(m.type) == "struct":
                todo.append(m.type)
        todo.extend(extenders.get(name, []))
    return sorted(seen)


class Command:
    def __init__(self, element, reg):
        proto = element.find("proto")
        self.name = proto.findtext("name")
        self.ret = proto.findtext("type")
        self.params = [Member(p, self.name) for p in element.findall("param") if is_vulkan(p)]
        self.element = element


def commands_by_name(reg):
    out, aliases = {}, {}
    for c in reg.root.findall("commands/command"):
        if not is_vulkan(c):
            continue
        if c.get("alias"):
            aliases[c.get("name")] = c.get("alias")
        else:
            cmd = Command(c, reg)
            out[cmd.name] = cmd
    return out, aliases


def selected_commands(reg, commands, aliases):
    """(name, core version or None, extension or None, implementing command)."""
    out = []
    for version in VERSIONS:
        feature = reg.root.find(f"feature[@name='{version}']")
        for req in feature.findall("require"):
            for c in req.findall("command"):
                out.append((c.get("name"), version.replace("VK_VERSION_", "VK_API_VERSION_"), None))
    for ext_name, ext in reg.extensions.items():
        if ext.get("type") != "device" or "vulkan" not in ext.get("supported", "").split(","):
            continue
        for req in ext.findall("require"):
            if not is_vulkan(req):
                continue
            for c in req.findall("command"):
                name = c.get("name")
                if name in aliases or ext_name in EXTENSIONS:
                    out.append((name, None, ext_name))
    result = []
    for name, version, ext in out:
        target = aliases.get(name, name)
        if target in commands and commands[target].params[0].type in DISPATCHABLE_FIRST:
            result.append((name, version, ext, commands[target]))
    return result


def classify(cmd, reg, model):
    """('recorded'|'pipelined'|'synchronous', problem)."""
    outputs = []
    for p in cmd.params[1:]:
        if p.type == "VkAllocationCallbacks":
            continue
        if p.ptr and not p.const:
            outputs.append(p)
        elif p.ptr or p.array or reg.category(p.type) == "struct":
            if reg.category(p.type) == "struct" and model.struct_problem(p.type):
                return None, model.struct_problem(p.type)
            if p.type == "void" and not p.len:
                return None, f"{p.name} is an untyped pointer"
            if reg.category(p.type) in (None, "funcpointer"):
                return None, f"{p.name} has type {p.type}"
            if p.ptr > 1:
                return None, f"{p.name} is a pointer to pointers"
        elif reg.category(p.type) in (None, "funcpointer"):
            return None, f"{p.name} has type {p.type}"
    if cmd.ret not in ("void", "VkResult", "uint64_t", "VkDeviceAddress", "uint32_t", "VkDeviceSize"):
        return None, f"returns {cmd.ret}"
    for p in outputs:
        cat = reg.category(p.type)
        if cat == "handle":
            continue
        if cat == "struct" and model.output_problem(p.type):
            return None, model.output_problem(p.type)
        if cat not in ("handle", "struct", "plain") and p.type != "void":
            return None, f"{p.name} has type {p.type}"
        if p.ptr > 1:
            return None, f"{p.name} is a pointer to pointers"
    if cmd.name.startswith("vkCmd"):
        if outputs:
            return None, "a recorded command with outputs"
        return "recorded", None
    creates = [p for p in outputs if reg.category(p.type) == "handle"]
    if creates and len(outputs) == 1 and cmd.name not in SYNC_CREATIONS:
        return "pipelined", None
    if outputs or cmd.ret not in ("void", "VkResult") or cmd.name in MAKES_VISIBLE:
        return "synchronous", None
    return "pipelined", None


def param_names(cmd):
    return {p.name for p in cmd.params}


def count_expr(p, cmd):
    """The element count of pointer parameter `p`, or None for a single element."""
    if p.array:
        return p.array
    if not p.len or p.len == "null-terminated":
        return None
    first = p.len.split(",")[0]
    names = param_names(cmd)
    # Output counts given by pointer (two-call idiom) are read where they are.
    if first in names and next(q for q in cmd.params if q.name == first).ptr:
        return f"*{first}"
    return cexpr(first, names, "")


def c_param(p):
    """The declaration of a parameter as C."""
    t = ("const " if p.const else "") + p.type + " " + "*" * p.ptr
    if p.ptr == 2 and p.const:
        t = f"const {p.type}* const*"
    if p.array:
        return f"{'const ' if p.const else ''}{p.type} {p.name}[{p.array}]"
    return f"{t}{p.name}".replace("* *", "**")


def emit_codec(reg, model, em, structs):
    hpp = ["// Generated by gen/vk_commands.py from vk.xml; do not edit.", "#pragma once", "",
           '#include "vk_codec_support.hpp"', "", "namespace rgpu::vk {", ""]
    cpp = ["// Generated by gen/vk_commands.py from vk.xml; do not edit.", '#include "vk_codec.gen.hpp"', "",
           "#include <cstring>", "", "namespace rgpu::vk {", ""]
    for s in structs:
        hpp.append(f"void put(WireWriter& w, const {s}& s);")
        hpp.append(f"void get(WireReader& r, {s}& s, DecodeContext& ctx);")
        if not model.output_problem(s):
            hpp.append(f"void fill(WireReader& r, {s}& s);")
    hpp += ["", "// A pNext chain: u32 count, then each struct as (u32 sType, struct). Structs this build",
            "// does not know are left out (and logged once).",
            "void put_chain(WireWriter& w, const void* next);",
            "void* get_chain(WireReader& r, DecodeContext& ctx);",
            "// Answers into the caller's chain: each struct goes where the chain has its sType.",
            "void fill_chain(WireReader& r, void* next);", "", "}  // namespace rgpu::vk", ""]
    for s in structs:
        members = reg.members(s)
        names = {m.name for m in members}
        cpp.append(f"void put(WireWriter& w, const {s}& s) {{")
        for m in members:
            cond = MEMBER_CONDITIONS.get((s, m.name))
            count = None
            if m.ptr and m.len and m.len != "null-terminated":
                count = cexpr(m.len.split(",")[0], names, "s.")
            cpp += ["  " + x for x in em.put_member(m, f"s.{m.name}", count, cond)]
        cpp.append("}")
        cpp.append(f"void get(WireReader& r, {s}& s, [[maybe_unused]] DecodeContext& ctx) {{")
        for m in members:
            count = None
            if m.ptr and m.len and m.len != "null-terminated":
                count = cexpr(m.len.split(",")[0], names, "s.")
            target = f"s.{m.name}"
            if m.ptr and m.const or m.name == "pNext":
                # const pointers are filled through a non-const local
                cpp += ["  {"]
                base = "uint8_t" if m.type == "void" else m.type
                if m.name == "pNext":
                    cpp += ["    s.pNext = get_chain(r, ctx);", "  }"]
                    continue
                if m.type == "char" and m.ptr == 2:
                    cpp += ["    const char* const* value = nullptr;"]
                elif m.type == "char":
                    cpp += ["    const char* value = nullptr;"]
                else:
                    cpp += [f"    const {base}* value = nullptr;"]
                cpp += ["    " + x for x in em.get_member(m, "value", count, s)]
                cast = "" if m.type != "void" else "static_cast<const void*>"
                cpp += [f"    {target} = {cast}(value);", "  }"]
            else:
                cpp += ["  " + x for x in em.get_member(m, target, count, s)]
        cpp.append("}")
        if not model.output_problem(s):
            cpp.append(f"void fill(WireReader& r, {s}& s) {{")
            for m in members:
                cpp += ["  " + x for x in em.fill_member(m, f"s.{m.name}")]
            cpp.append("}")
    chained = [(s, reg.stype(s)) for s in structs if reg.stype(s)]
    cpp += ["", "void put_chain(WireWriter& w, const void* next) {", "  uint32_t count = 0;",
            "  const size_t at = w.buffer().size();", "  w.put<uint32_t>(0);",
            "  for (auto* s = static_cast<const VkBaseInStructure*>(next); s != nullptr; s = s->pNext) {",
            "    switch (s->sType) {"]
    for s, st in chained:
        cpp.append(f"      case {st}: w.put<uint32_t>({st}); put(w, *reinterpret_cast<const {s}*>(s)); ++count; break;")
    cpp += ["      default: skipped_chain_struct(s->sType); break;", "    }", "  }",
            "  std::memcpy(w.buffer().data() + at, &count, sizeof count);", "}", "",
            "void* get_chain(WireReader& r, DecodeContext& ctx) {", "  const ChainDepth depth(ctx);",
            "  const uint32_t count = r.get<uint32_t>();",
            "  if (count > kMaxChainLength) throw WireError(\"pNext chain of \" + std::to_string(count) + \" structs\");",
            "  void* head = nullptr;", "  VkBaseOutStructure* tail = nullptr;",
            "  for (uint32_t i = 0; i < count; ++i) {", "    const uint32_t type = r.get<uint32_t>();",
            "    VkBaseOutStructure* s = nullptr;", "    switch (type) {"]
    for s, st in chained:
        cpp.append(f"      case {st}: {{ auto* v = ctx.arena.make<{s}>(1); get(r, *v, ctx); "
                   f"s = reinterpret_cast<VkBaseOutStructure*>(v); break; }}")
    cpp += ["      default: throw WireError(\"pNext chain: unknown sType \" + std::to_string(type));", "    }",
            "    if (structure_type(s) != type)",
            "      throw WireError(\"pNext chain: sType \" + std::to_string(type) + \" carries \" + std::to_string(structure_type(s)));",
            "    s->pNext = nullptr;",
            "    if (tail) tail->pNext = s; else head = s;", "    tail = s;", "  }", "  return head;", "}", "",
            "void fill_chain(WireReader& r, void* next) {", "  const uint32_t count = r.get<uint32_t>();",
            "  for (uint32_t i = 0; i < count; ++i) {", "    const uint32_t type = r.get<uint32_t>();",
            "    void* target = find_in_chain(next, type);", "    switch (type) {"]
    for s, st in chained:
        if model.output_problem(s):
            continue
        cpp.append(f"      case {st}: {{ {s} scratch{{}}; fill(r, target ? *static_cast<{s}*>(target) : scratch); break; }}")
    cpp += ["      default: throw WireError(\"answer chain: sType \" + std::to_string(type) + \" cannot be an answer\");",
            "    }", "  }", "}", "", "}  // namespace rgpu::vk", ""]
    return "\n".join(hpp), "\n".join(cpp)


def outputs_of(cmd, reg):
    return [p for p in cmd.params[1:] if p.ptr and not p.const and p.type != "VkAllocationCallbacks"]


def emit_icd(reg, model, em, forwarded):
    """encode_<cmd>() for every forwarded command and an entry point for those not hand-written."""
    out = ["// Generated by gen/vk_commands.py from vk.xml; do not edit.", '#include "vk_codec.gen.hpp"',
           '#include "vk_commands.gen.hpp"', '#include "vk_icd.gen.hpp"', '#include "icd_calls.hpp"', "",
           "#include <cstring>", "",
           "namespace rgpu::icd {", "using namespace rgpu::vk;", ""]
    for cmd, kind in forwarded:
        params = [p for p in cmd.params if p.type != "VkAllocationCallbacks"]
        sig = ", ".join(c_param(p) for p in cmd.params)
        out.append(f"void encode_{cmd.name}(WireWriter& w, {sig}) {{")
        for p in cmd.params:
            if p.type == "VkAllocationCallbacks":
                out.append(f"  (void){p.name};")
        for p in params:
            out += ["  " + x for x in encode_param(p, cmd, reg, em)]
        out.append("}")
    out.append("")
    for cmd, kind in forwarded:
        if cmd.name in HAND_WRITTEN:
            continue
        sig = ", ".join(c_param(p) for p in cmd.params)
        args = ", ".join(p.name for p in cmd.params)
        out.append(f"static VKAPI_ATTR {cmd.ret} VKAPI_CALL {cmd.name[2:]}({sig}) {{")
        first = cmd.params[0].name
        if kind == "recorded":
            out += [f"  Recording rec({first}, CMD_{cmd.name});",
                    f"  encode_{cmd.name}(rec.args(), {args});"]
            out.append("}")
            continue
        outs = outputs_of(cmd, reg)
        creates = [p for p in outs if reg.category(p.type) == "handle"]
        for p in creates:
            n = count_expr(p, cmd)
            n = n if n else "1"
            out.append(f"  for (uint64_t i = 0; i < static_cast<uint64_t>({n}); ++i) {p.name}[i] = new_handle<{p.type}>();")
        if cmd.name in PUSH_BEFORE:
            out.append(f"  push_mapped_memory({first});")
        out += [f"  Call call({first}, CMD_{cmd.name}, \"{cmd.name}\");",
                f"  encode_{cmd.name}(call.args(), {args});"]
        if kind == "pipelined":
            if cmd.ret == "VkResult":
                out.append("  return call.send_pipelined();")
            else:
                out.append("  call.send_pipelined();")
            out.append("}")
            continue
        default = {"void": "", "VkResult": ""}.get(cmd.ret, "0")
        if any(p.name == "timeout" and p.type == "uint64_t" and not p.ptr for p in cmd.params):
            # A wait with a timeout returns by then even if the server does not answer.
            out.append("  call.wait_at_most(timeout);")
        out.append("  const VkResult result = call.send_and_wait();")
        if cmd.ret == "VkResult":
            out.append("  if (result < 0) return result;")
        else:
            out.append(f"  if (result < 0) return {default};" if default else "  if (result < 0) return;")
        out.append("  WireReader& r = call.answer();")
        out.append("  try {")
        for p in outs:
            out += ["    " + x for x in decode_output(p, cmd, reg, em)]
        if cmd.ret not in ("void", "VkResult"):
            out.append(f"    const auto value = r.get<{cmd.ret}>();")
        out.append("    r.expect_end();")
        if cmd.ret not in ("void", "VkResult"):
            out.append("    return value;")
        out.append("  } catch (const WireError& e) {")
        out.append(f"    call.malformed_answer(e);")
        out.append("  }")
        if cmd.ret == "VkResult":
            out.append("  return call.failed() ? VK_ERROR_DEVICE_LOST : result;")
        elif cmd.ret != "void":
            out.append(f"  return {default};")
        out.append("}")
    out.append("")
    out.append("const DeviceCommand kDeviceCommands[] = {")
    return out


def encode_param(p, cmd, reg, em):
    """ICD side: inputs, and for outputs what the server needs to know (shape, capacity)."""
    if p.ptr and not p.const:
        cat = reg.category(p.type)
        n = count_expr(p, cmd)
        if cat not in ("handle", "struct") and n is None and p.name not in two_call_counts(cmd):
            return [f"(void){p.name};  // a scalar answer"]
        if cat == "handle":  # ids the ICD picked
            n = n if n else "1"
            return [f"for (uint64_t i = 0; i < static_cast<uint64_t>({n}); ++i) w.put<uint64_t>(to_wire({p.name}[i]));"]
        if p.name in two_call_counts(cmd):
            return [f"w.put<uint64_t>(static_cast<uint64_t>(*{p.name}));"]
        if cat == "struct":
            if n is None:
                return [f"put(w, *{p.name});"]
            return [f"w.put<uint8_t>({p.name} != nullptr);", f"if ({p.name} != nullptr)",
                    f"  for (uint64_t i = 0; i < static_cast<uint64_t>({n}); ++i) put(w, {p.name}[i]);"]
        return [f"w.put<uint8_t>({p.name} != nullptr);"]  # bytes or scalars answered
    if p is cmd.params[0] and p.type == "VkPhysicalDevice":
        return [f"w.put<uint64_t>(physical_device_id({p.name}));"]  # its place in the session
    count = count_expr(p, cmd)
    return em.put_member(p, p.name, count)


def two_call_counts(cmd):
    """Parameters that are the count pointer of a two-call output array."""
    names = set()
    for p in cmd.params:
        if p.ptr and not p.const and p.len:
            first = p.len.split(",")[0]
            q = next((q for q in cmd.params if q.name == first), None)
            if q is not None and q.ptr:
                names.add(first)
    return names


def decode_output(p, cmd, reg, em):
    """ICD side: an answer into the application's output parameter."""
    cat = reg.category(p.type)
    n = count_expr(p, cmd)
    if cat == "handle":
        return []
    if p.name in two_call_counts(cmd):
        return [f"*{p.name} = static_cast<{p.type}>(r.get<uint64_t>());"]
    if cat == "struct":
        if n is None:
            return [f"fill(r, *{p.name});"]
        return [f"if ({p.name} != nullptr)", f"  for (uint64_t i = 0; i < static_cast<uint64_t>({n}); ++i) fill(r, {p.name}[i]);"]
    if n is None:
        return [f"*{p.name} = r.get<{p.type}>();"]
    size = "1" if p.type == "void" else f"sizeof({p.type})"
    return [f"if ({p.name} != nullptr) std::memcpy({p.name}, r.bytes(static_cast<size_t>({n}) * {size}).data(), static_cast<size_t>({n}) * {size});"]


def emit_server(reg, model, em, forwarded):
    out = ["// Generated by gen/vk_commands.py from vk.xml; do not edit.", '#include "vk_codec.gen.hpp"',
           '#include "vk_commands.gen.hpp"', '#include "vulkan_replay.hpp"', "", "#include <cstring>", "",
           "namespace rgpu::vk {", ""]
    out.append("void DeviceTable::load(PFN_vkGetDeviceProcAddr gdpa, VkDevice device) {")
    physical = [cmd.name for cmd, _ in forwarded if cmd.params[0].type == "VkPhysicalDevice"]
    for name in [cmd.name for cmd, _ in forwarded if cmd.name not in physical] + sorted(HAND_ONLY):
        out.append(f"  {name} = reinterpret_cast<PFN_{name}>(gdpa(device, \"{name}\"));")
    out.append("}")
    out.append("")
    out.append("void DeviceTable::load_physical(PFN_vkGetInstanceProcAddr gipa, VkInstance instance) {")
    for name in physical:
        out.append(f"  {name} = reinterpret_cast<PFN_{name}>(gipa(instance, \"{name}\"));")
    out.append("}")
    out.append("")
    out.append("void Replay::execute(uint32_t command, WireReader& r, WireWriter& w, VkResult& result) {")
    out.append("  switch (command) {")
    for cmd, kind in forwarded:
        out += ["    " + x for x in server_case(cmd, kind, reg, em)]
    out += ["    default:", "      throw NotForwarded(command);", "  }", "}", ""]
    # destroy functions per object type
    out.append("void Replay::destroy_object(const DeviceTable& t, VkDevice device, VkObjectType type, uint64_t real) {")
    out.append("  switch (type) {")
    for cmd, _ in forwarded:
        if not (cmd.name.startswith("vkDestroy") or cmd.name == "vkFreeMemory"):
            continue
        if len(cmd.params) != 3 or cmd.params[0].type != "VkDevice":
            continue
        handle = cmd.params[1].type
        if reg.category(handle) != "handle":
            continue
        _, objtype = reg.handle_info(handle)
        out.append(f"    case {objtype}: t.{cmd.name}(device, from_wire<{handle}>(real), nullptr); return;")
    out += ["    default: return;", "  }", "}", "", "}  // namespace rgpu::vk", ""]
    return "\n".join(out)


def destroyed_ids(cmd, reg):
    """Server side: the ids a vkDestroy*/vkFree* command lets go of, read ahead from a copy of the
    reader (the decoded parameters are the driver's handles, not the ids)."""
    if not (cmd.name.startswith("vkDestroy") or cmd.name.startswith("vkFree")):
        return []
    lines = ["  std::vector<uint64_t> victims;", "  {", "    WireReader peek = r;  // past the first parameter"]
    for p in cmd.params[1:]:
        cat = reg.category(p.type)
        if p.type == "VkAllocationCallbacks":
            break
        if cat == "handle" and p.ptr == 0 and p is cmd.params[1] and \
                not POOL_OF.get(reg.resolve(cmd.params[-1].type)):
            lines.append("    victims.push_back(peek.get<uint64_t>());")
            break
        if cat == "handle" and p.ptr == 1 and p.const:
            lines += ["    if (peek.get<uint8_t>()) {", "      const uint64_t n = peek.get<uint64_t>();",
                      "      for (uint64_t i = 0; i < n && peek.remaining() >= 8; ++i) victims.push_back(peek.get<uint64_t>());",
                      "    }"]
            break
        if cat == "handle" and p.ptr == 0:
            lines.append("    peek.get<uint64_t>();")
        elif p.type == "uint32_t" and p.ptr == 0:
            lines.append("    peek.get<uint32_t>();")
        else:
            raise SystemExit(f"{cmd.name}: cannot read ahead past {p.name}")
    return lines + ["  }"]


def server_case(cmd, kind, reg, em):
    lines = [f"case CMD_{cmd.name}: {{"]
    first = cmd.params[0]
    _, objtype = reg.handle_info(first.type)
    lines.append(f"  const uint64_t {first.name}_id = r.get<uint64_t>();")
    lines.append(f"  const DeviceTable& t = table_of({first.name}_id, {objtype});")
    lines.append(f"  auto {first.name} = from_wire<{first.type}>(ctx.handles.resolve({first.name}_id, {objtype}));")
    call_args = [first.name]
    post = []
    new_ids = []  # ids of the objects the command makes: checked before the driver makes them
    victims = destroyed_ids(cmd, reg)
    lines += victims
    if victims:
        post.append("  for (uint64_t victim : victims) destroyed(victim);")
    for p in cmd.params[1:]:
        if p.type == "VkAllocationCallbacks":
            call_args.append("nullptr")
            continue
        cat = reg.category(p.type)
        n = count_expr(p, cmd)
        if p.ptr and not p.const:
            if cat == "handle":
                _, ot = reg.handle_info(p.type)
                cnt = f"static_cast<uint64_t>({n})" if n else "1"
                lines += [f"  const uint64_t {p.name}_n = {cnt};",
                          f"  auto* {p.name}_ids = ctx.arena.make<uint64_t>(checked_count(r, {p.name}_n, 8));",
                          f"  for (uint64_t i = 0; i < {p.name}_n; ++i) {p.name}_ids[i] = r.get<uint64_t>();",
                          f"  auto* {p.name} = ctx.arena.make<{p.type}>({p.name}_n);"]
                new_ids.append(f"  check_new_ids({p.name}_ids, {p.name}_n, {ot});")
                parent = "0"
                pool = POOL_OF.get(reg.resolve(p.type))
                if pool:
                    holder = next((q for q in cmd.params if q.type.endswith("AllocateInfo")), None)
                    parent = f"to_wire({holder.name}->{pool})" if holder else "0"
                if cmd.name == "vkAllocateMemory":
                    post.append(f"  if (result >= 0) result = remember_allocation({p.name}_ids[0], {first.name}_id, *{p.name}, *pAllocateInfo);")
                post += [f"  if (result >= 0)",
                         f"    for (uint64_t i = 0; i < {p.name}_n; ++i) created({p.name}_ids[i], {ot}, to_wire({p.name}[i]), {first.name}_id, {parent});"]
                call_args.append(p.name)
            elif p.name in two_call_counts(cmd):
                lines += [f"  {p.type} {p.name}_value = static_cast<{p.type}>(r.get<uint64_t>());"]
                call_args.append(f"&{p.name}_value")
                post.append(f"  if (result >= 0) w.put<uint64_t>(static_cast<uint64_t>({p.name}_value));")
            elif cat == "struct":
                if n is None:
                    lines += [f"  auto* {p.name} = ctx.arena.make<{p.type}>(1);", f"  get(r, *{p.name}, ctx);"]
                    post.append(f"  if (result >= 0) put(w, *{p.name});")
                else:
                    cnt = n.replace("*", "") + "_value" if n.startswith("*") else n
                    lines += [f"  {p.type}* {p.name} = nullptr;", "  if (r.get<uint8_t>()) {",
                              f"    {p.name} = ctx.arena.make<{p.type}>(checked_count(r, {cnt}, 1));",
                              f"    for (uint64_t i = 0; i < static_cast<uint64_t>({cnt}); ++i) get(r, {p.name}[i], ctx);", "  }"]
                    post.append(f"  if (result >= 0 && {p.name} != nullptr) for (uint64_t i = 0; i < static_cast<uint64_t>({cnt}); ++i) put(w, {p.name}[i]);")
                call_args.append(p.name)
            elif n is None:
                lines += [f"  {p.type} {p.name}_value{{}};"]
                call_args.append(f"&{p.name}_value")
                post.append(f"  if (result >= 0) w.put({p.name}_value);")
            else:
                cnt = n.replace("*", "") + "_value" if n.startswith("*") else n
                base = "uint8_t" if p.type == "void" else p.type
                size = "1" if p.type == "void" else f"sizeof({p.type})"
                lines += [f"  {base}* {p.name} = nullptr;",
                          f"  if (r.get<uint8_t>()) {p.name} = ctx.arena.make<{base}>(checked_answer(static_cast<uint64_t>({cnt}), {size}));"]
                post.append(f"  if (result >= 0 && {p.name} != nullptr) w.bytes({p.name}, static_cast<size_t>({cnt}) * {size});")
                call_args.append(p.name)
            continue
        # inputs
        if p.array and p.ptr == 0:
            lines += [f"  {p.type} {p.name}[{p.array}];"] + ["  " + x for x in em.get_member(p, p.name, None, cmd.name)]
        elif p.ptr == 0:
            lines += [f"  {p.type} {p.name}{{}};"] + ["  " + x for x in em.get_value(p, p.name)]
        else:
            if p.type == "char" and p.ptr == 2:
                decl = f"const char* const* {p.name} = nullptr;"
            elif p.type == "char":
                decl = f"const char* {p.name} = nullptr;"
            else:
                base = "uint8_t" if p.type == "void" else p.type
                decl = f"const {base}* {p.name} = nullptr;"
            lines += ["  " + decl] + ["  " + x for x in em.get_member(p, p.name, n, cmd.name)]
            if not p.optional:
                # A pointer the spec does not let be NULL (an array: unless its count is 0). The
                # driver, and the code that decodes what follows, would read through it.
                missing = f"{p.name} == nullptr"
                if n is not None and not n.startswith("*"):
                    missing += f" && static_cast<uint64_t>({n}) != 0"
                lines.append(f'  if ({missing}) throw WireError("{cmd.name}: {p.name} is missing");')
        call_args.append(p.name)
        if cmd.name in POOL_RESETS and p.name == POOL_RESETS[cmd.name]:
            post.append(f"  if (result >= 0) released_children({first.name}_id, to_wire({p.name}));")
    lines.append("  r.expect_end();")
    lines += new_ids
    if cmd.name in SUBMISSIONS:
        lines.append(f"  fence = submission_fence({first.name}_id, fence);")
    call = f"t.{cmd.name}({', '.join(call_args)})"
    lines.append(f"  if (t.{cmd.name} == nullptr) throw NotForwarded(command);")
    if cmd.ret == "VkResult":
        lines.append(f"  result = {call};")
    elif cmd.ret == "void":
        lines.append(f"  {call};")
        lines.append("  result = VK_SUCCESS;")
    else:
        lines.append(f"  const auto value = {call};")
        lines.append("  result = VK_SUCCESS;")
    lines += post
    if cmd.name in OBSERVED:
        lines.append(f"  if (result >= 0) observe_{cmd.name}({', '.join(call_args)});")
    if cmd.ret not in ("void", "VkResult"):
        lines.append("  w.put(value);")
    lines += ["  return;", "}"]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--report", action="store_true", help="list the commands left out and why")
    args = parser.parse_args()
    reg = Registry(ET.parse(args.registry).getroot())
    model = Model(reg)
    em = Emitter(reg, model)
    commands, aliases = commands_by_name(reg)
    selected = selected_commands(reg, commands, aliases)
    forwarded, kinds, entries, skipped = [], {}, [], []
    for name, version, ext, cmd in selected:
        if cmd.name in NOT_FORWARDED:
            continue
        if cmd.name in HAND_ONLY:
            entries.append((name, version, ext, cmd))
            continue
        if cmd.name not in kinds:
            kind, problem = classify(cmd, reg, model)
            if problem:
                skipped.append((cmd.name, problem))
                kinds[cmd.name] = None
                continue
            kinds[cmd.name] = kind
            forwarded.append((cmd, kind))
        if kinds[cmd.name]:
            entries.append((name, version, ext, cmd))
    if args.report:
        for name, problem in sorted(set(skipped)):
            print(f"{name}: {problem}")
    roots = {"VkDeviceCreateInfo"}  # rgpu.CreateDevice
    for cmd, _ in forwarded:
        for p in cmd.params:
            if reg.category(p.type) == "struct":
                roots.add(p.type)
    structs = struct_closure(reg, model, roots)
    hpp, cpp = emit_codec(reg, model, em, structs)
    names = ['#include "vk_commands.gen.hpp"', "namespace rgpu::vk {", "const char* command_name(uint32_t command) {",
             "  switch (command) {"]
    for cmd, _ in forwarded:
        names.append(f"    case CMD_{cmd.name}: return \"{cmd.name}\";")
    cpp += "\n".join(names + ["    default: return nullptr;", "  }", "}", "}  // namespace rgpu::vk", ""])
    with open(f"{args.out_dir}/vk_codec.gen.hpp", "w") as f:
        f.write(hpp)
    with open(f"{args.out_dir}/vk_codec.gen.cpp", "w") as f:
        f.write(cpp)
    # Command ids and the server's dispatch table.
    h = ["// Generated by gen/vk_commands.py from vk.xml; do not edit.", "#pragma once", "",
         "#define VK_NO_PROTOTYPES", "#include <vulkan/vulkan.h>", "", '#include "wire.hpp"', "",
         "namespace rgpu::vk {", ""]
    for cmd, kind in forwarded:
        h.append(f"inline constexpr uint32_t CMD_{cmd.name} = fnv1a(\"{cmd.name}\");")
    h += ["", "// What the ICD offers: a command name, the function that implements it, and what must be",
          "// true of the device for it to be offered (a core version, or an enabled extension).",
          "struct DeviceCommand {", "  const char* name;", "  PFN_vkVoidFunction function;",
          "  uint32_t core_version;   // 0: offered only with `extension`", "  const char* extension;", "};",
          "", "// The server's functions of one VkDevice.", "struct DeviceTable {"]
    for cmd, _ in forwarded:
        h.append(f"  PFN_{cmd.name} {cmd.name} = nullptr;")
    for name in sorted(HAND_ONLY):
        h.append(f"  PFN_{name} {name} = nullptr;")
    h += ["  // The device's commands; the physical-device commands come from the instance.",
          "  void load(PFN_vkGetDeviceProcAddr gdpa, VkDevice device);",
          "  void load_physical(PFN_vkGetInstanceProcAddr gipa, VkInstance instance);", "};", "",
          "// Name of a forwarded command (for logs); nullptr when unknown.",
          "const char* command_name(uint32_t command);", "", "}  // namespace rgpu::vk", ""]
    with open(f"{args.out_dir}/vk_commands.gen.hpp", "w") as f:
        f.write("\n".join(h))
    icd = emit_icd(reg, model, em, forwarded)
    unique, named = [], set()
    for e in entries:  # an extension may require a command in more than one block
        if e[0] not in named:
            named.add(e[0])
            unique.append(e)
    entries = unique

    def entry(name, version, ext, cmd):
        ext_text = f'"{ext}"' if ext else "nullptr"
        return f"    {{\"{name}\", reinterpret_cast<PFN_vkVoidFunction>(&{cmd.name[2:]}), {version or 0}, {ext_text}}},"
    physical = [e for e in entries if e[3].params[0].type == "VkPhysicalDevice"]
    icd += [entry(*e) for e in entries if e not in physical]
    icd += ["};", "const size_t kDeviceCommandCount = sizeof kDeviceCommands / sizeof kDeviceCommands[0];", "",
            "const DeviceCommand kForwardedPhysicalDeviceCommands[] = {"]
    icd += [entry(*e) for e in physical]
    icd += ["};",
            "const size_t kForwardedPhysicalDeviceCommandCount = sizeof kForwardedPhysicalDeviceCommands / sizeof kForwardedPhysicalDeviceCommands[0];",
            "", "}  // namespace rgpu::icd", ""]
    with open(f"{args.out_dir}/vk_icd.gen.cpp", "w") as f:
        f.write("\n".join(icd))
    with open(f"{args.out_dir}/vk_server.gen.cpp", "w") as f:
        f.write(emit_server(reg, model, em, forwarded))
    # Hand-written ICD functions the table refers to.
    hand = ["// Generated by gen/vk_commands.py from vk.xml; do not edit.", "#pragma once", "",
            '#include "vk_commands.gen.hpp"', '#include "wire.hpp"', "", "namespace rgpu::icd {", ""]
    for cmd, _ in forwarded:
        sig = ", ".join(c_param(p) for p in cmd.params)
        hand.append(f"void encode_{cmd.name}(WireWriter& w, {sig});")
        if cmd.name in HAND_WRITTEN:
            hand.append(f"VKAPI_ATTR {cmd.ret} VKAPI_CALL {cmd.name[2:]}({sig});")
    for name in sorted(HAND_ONLY):
        cmd = commands[name]
        hand.append(f"VKAPI_ATTR {cmd.ret} VKAPI_CALL {cmd.name[2:]}({', '.join(c_param(p) for p in cmd.params)});")
    hand += ["", "extern const vk::DeviceCommand kDeviceCommands[];", "extern const size_t kDeviceCommandCount;",
             "// Commands whose first parameter is a VkPhysicalDevice, forwarded to the server.",
             "extern const vk::DeviceCommand kForwardedPhysicalDeviceCommands[];",
             "extern const size_t kForwardedPhysicalDeviceCommandCount;", "",
             "}  // namespace rgpu::icd", ""]
    with open(f"{args.out_dir}/vk_icd.gen.hpp", "w") as f:
        f.write("\n".join(hand))
    if not forwarded or not structs:
        sys.exit(f"{args.registry}: found {len(forwarded)} commands and {len(structs)} structs")


if __name__ == "__main__":
    main()
