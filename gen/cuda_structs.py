"""The plain structs of cuda.h: structs and unions whose members are values (scalars, enums, handles,
device pointers, fixed arrays and nested plain structs) and no host pointers, so that their bytes
mean the same on the server. Read from the preprocessed header by cuda_api.py.
"""
import re

# Host pointer members that must be NULL on Linux (Windows security attributes and handle
# metadata): the struct is plain when they are. An input with one set is refused.
NULL_POINTERS = {
    ("CUmemAllocationProp_st", "win32HandleMetaData"),
    ("CUmemPoolProps_st", "win32SecurityAttributes"),
}

# A member of this type holds a device ordinal the server translates (the application numbers its
# devices its own way).
LOCATION = "CUmemLocation"


class Member:
    def __init__(self, name, type_name, pointer, array, body):
        self.name = name            # member name ("" for an anonymous union or struct)
        self.type_name = type_name  # base type name, or None for an inline struct/union body
        self.pointer = pointer      # declared as a pointer
        self.array = array          # element count of a fixed array, or None
        self.body = body            # Body of an inline struct/union, or None


class Body:
    def __init__(self, tag, union, members):
        self.tag = tag        # "CUmemAllocationProp_st", or "" for an anonymous body
        self.union = union
        self.members = members


def _matching_brace(text, start):
    depth = 0
    for i in range(start, len(text)):
        depth += text[i] == "{"
        depth -= text[i] == "}"
        if depth == 0:
            return i
    raise ValueError("unbalanced braces in cuda.h")


def _parse_members(text):
    members, i = [], 0
    while i < len(text):
        m = re.compile(r"\s*(struct|union)\s*(\w*)\s*\{").match(text, i)
        if m:
            end = _matching_brace(text, m.end() - 1)
            body = Body(m.group(2), m.group(1) == "union", _parse_members(text[m.end():end]))
            semi = text.index(";", end)
            for declarator in text[end + 1:semi].split(",") or [""]:
                members.append(_declarator(declarator, None, body))
            i = semi + 1
            continue
        semi = text.find(";", i)
        if semi < 0:
            break
        decl = text[i:semi].strip()
        i = semi + 1
        if not decl:
            continue
        m = re.match(r"^((?:(?:const|volatile|struct|enum|unsigned|signed)\s+)*\w+(?:\s+(?:long|int|short|char))*)\s*(.*)$",
                     decl)
        if not m:
            members.append(Member("?", None, True, None, None))  # something the parser does not know: not plain
            continue
        base = " ".join(w for w in m.group(1).split() if w not in ("const", "volatile", "struct", "enum"))
        for declarator in m.group(2).split(","):
            members.append(_declarator(declarator, base, None))
    return members


def _declarator(text, base, body):
    text = text.strip()
    pointer = "*" in text or "(" in text
    array = None
    m = re.search(r"\[\s*(\w+)\s*\]", text)
    if m:
        array = int(m.group(1), 0) if m.group(1).isdigit() else -1
    name = re.sub(r"\[.*|\*|\(|\)", " ", text).split()
    return Member(name[0] if name else "", base, pointer, array, body)


class Structs:
    """The header's structs by typedef and tag name, and which of them are plain."""

    def __init__(self, text, types):
        self.types = types
        self.bodies = {}
        for m in re.finditer(r"typedef (struct|union) (\w*) ?\{", text):
            end = _matching_brace(text, m.end() - 1)
            body = Body(m.group(2), m.group(1) == "union", _parse_members(text[m.end():end]))
            names = text[end + 1:text.index(";", end)]
            if m.group(2):
                self.bodies[m.group(2)] = body
            for name in names.split(","):
                name = name.strip()
                if name and "*" not in name:
                    self.bodies[name] = body
        for m in re.finditer(r"typedef (?:struct|union) (\w+) (\w+) ?;", text):
            if m.group(1) in self.bodies:
                self.bodies[m.group(2)] = self.bodies[m.group(1)]
        self._plain = {}

    def resolve(self, name):
        """The struct body a type name stands for (through typedefs), or None."""
        seen = set()
        while name not in seen:
            seen.add(name)
            if name in self.bodies:
                return self.bodies[name]
            if name not in self.types.alias:
                return None
            name = self.types.alias[name]
        return None

    def is_plain(self, name):
        body = self.resolve(name)
        return body is not None and self._body_plain(body, in_union=False)

    def _body_plain(self, body, in_union):
        key = (id(body), in_union)
        if key not in self._plain:
            self._plain[key] = False  # a struct that contains itself is not plain
            self._plain[key] = all(self._member_plain(body, m, in_union or body.union) for m in body.members)
        return self._plain[key]

    def _member_plain(self, body, member, in_union):
        if member.pointer:
            return (body.tag, member.name) in NULL_POINTERS and not in_union and member.array is None
        if member.array is not None and member.array < 0:
            return False
        if member.body is not None:
            return self._body_plain(member.body, in_union)
        if self.types.kind(member.type_name) in ("scalar", "enum", "handle"):
            return not self.types.is_device(member.type_name)  # a bare device ordinal would need translating
        nested = self.resolve(member.type_name)
        if nested is None:
            return False
        if self._is_location(member.type_name) and (in_union or member.array is not None):
            return False  # a device ordinal the server could not tell apart or reach
        return self._body_plain(nested, in_union)

    def _is_location(self, type_name):
        return self.resolve(type_name) is self.resolve(LOCATION)

    def locations(self, name):
        """C member paths of the CUmemLocation members of struct `name` ("" for the struct itself)."""
        if self._is_location(name):
            return [""]
        return [path for path, member in self._walk(self.resolve(name), "")
                if not member.pointer and member.body is None and self._is_location(member.type_name)]

    def null_pointers(self, name):
        """C member paths of the pointers that must be NULL in struct `name`."""
        return [path for path, member in self._walk(self.resolve(name), "") if member.pointer]

    def _walk(self, body, prefix):
        """(path, member) of every member of a plain body, nested ones included, arrays left out."""
        for member in body.members:
            path = prefix + member.name
            if member.array is not None:
                continue
            yield path, member
            if member.body is not None:
                yield from self._walk(member.body, path + "." if member.name else prefix)
            elif not member.pointer and not self._is_location(member.type_name or ""):
                nested = self.resolve(member.type_name)
                if nested is not None:
                    yield from self._walk(nested, path + ".")
