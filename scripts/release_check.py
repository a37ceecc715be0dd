"""Read-back checks for release artifacts, used by release-check.sh and repro-check.sh.

    python3 scripts/release_check.py dep-v0 BIN CRATE...
        Decode the dependency list cargo-auditable embedded in BIN (ELF section `.dep-v0`,
        zlib-compressed JSON) and require the root package and every CRATE in it. Prints
        "root 0.1.0; deps: a 1.0, b 2.0" or the problem; exit 0/1.
    python3 scripts/release_check.py elf-diff A B
        Exit 0 when A and B are the same bytes; else print what differs: the ELF sections
        whose content or header differs, by name (plus the ELF header, program headers, section
        header table, bytes outside every section), and exit 1.
    python3 scripts/release_check.py archive-diff A.tar.xz B.tar.xz
        Compare two release archives member by member: names, types, modes and contents, not
        mtime or owner (dist stamps each member with the time it copied it). Prints
        "same (...)" or each differing member, naming the ELF sections for a binary; exit 0/1.
    python3 scripts/release_check.py leaks BIN STRING...
        Exit 1 (naming them) when any STRING (a local absolute path) occurs in BIN's bytes.
    python3 scripts/release_check.py sbom FILE.cdx.xml CRATE...
        Require a CycloneDX document whose components include every CRATE.

Only the Python standard library: the ELF reader below understands the 32- and 64-bit,
little- and big-endian files that the eight Linux targets produce.
"""
import hashlib
import json
import struct
import sys
import tarfile
import xml.etree.ElementTree as ET
import zlib
from collections import namedtuple

SHT_NOBITS = 8

Section = namedtuple("Section", "index name type flags addr offset size")


class NotElf(Exception):
    pass


class Elf:
    """Just enough of an ELF file to compare it section by section."""

    def __init__(self, data):
        if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
            raise NotElf("not an ELF file")
        self.data = data
        end = "<" if data[5] == 1 else ">"
        if data[4] == 2:  # ELFCLASS64
            (_, _, _, _, _, phoff, shoff, _, ehsize, phentsize, phnum, shentsize, shnum,
             shstrndx) = struct.unpack_from(end + "16sHHIQQQIHHHHHH", data, 0)
            shfmt = end + "IIQQQQIIQQ"
        else:
            (_, _, _, _, _, phoff, shoff, _, ehsize, phentsize, phnum, shentsize, shnum,
             shstrndx) = struct.unpack_from(end + "16sHHIIIIIHHHHHH", data, 0)
            shfmt = end + "IIIIIIIIII"
        self.ehsize = ehsize
        self.phdrs = (phoff, phentsize * phnum)
        self.shdrs = (shoff, shentsize * shnum)
        raw = []
        for i in range(shnum):
            f = struct.unpack_from(shfmt, data, shoff + i * shentsize)
            raw.append((f[0], f[1], f[2], f[3], f[4], f[5]))
        names = b""
        if 0 < shstrndx < len(raw):
            _, _, _, _, off, size = raw[shstrndx]
            names = data[off:off + size]
        self.sections = []
        for i, (name_off, typ, flags, addr, off, size) in enumerate(raw):
            name = names[name_off:names.find(b"\0", name_off)].decode("latin-1") if names else ""
            self.sections.append(Section(i, name or f"[{i}]", typ, flags, addr, off, size))

    def content(self, s):
        return b"" if s.type == SHT_NOBITS else self.data[s.offset:s.offset + s.size]

    def section(self, name):
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def outside(self):
        """The bytes no header or section accounts for (padding between sections)."""
        covered = bytearray(len(self.data))
        spans = [(0, self.ehsize), self.phdrs, self.shdrs]
        spans += [(s.offset, s.size) for s in self.sections if s.type != SHT_NOBITS]
        for off, size in spans:
            covered[off:off + size] = b"\1" * len(covered[off:off + size])
        return bytes(b for b, c in zip(self.data, covered) if not c)


def elf_differences(a_bytes, b_bytes):
    """What differs between two ELF files, as a list of names; [] when they are the same."""
    if a_bytes == b_bytes:
        return []
    try:
        a, b = Elf(a_bytes), Elf(b_bytes)
    except (NotElf, struct.error):
        return [f"contents differ ({len(a_bytes)} vs {len(b_bytes)} bytes, not both ELF)"]
    out = []
    if a_bytes[:a.ehsize] != b_bytes[:b.ehsize]:
        out.append("(ELF header)")
    if a_bytes[a.phdrs[0]:sum(a.phdrs)] != b_bytes[b.phdrs[0]:sum(b.phdrs)]:
        out.append("(program headers)")
    a_names = [s.name for s in a.sections]
    b_names = [s.name for s in b.sections]
    if a_names != b_names:
        only_a = [n for n in a_names if n not in b_names]
        only_b = [n for n in b_names if n not in a_names]
        out.append(f"(section list: only in first {only_a}, only in second {only_b})")
    for sa in a.sections:
        sb = b.section(sa.name)
        if sb is None:
            continue
        if (sa.type, sa.flags, sa.size) != (sb.type, sb.flags, sb.size) or \
                a.content(sa) != b.content(sb):
            size = f"{sa.size} vs {sb.size} bytes" if sa.size != sb.size else f"{sa.size} bytes"
            out.append(f"{sa.name} ({size})")
    if a_bytes[a.shdrs[0]:sum(a.shdrs)] != b_bytes[b.shdrs[0]:sum(b.shdrs)] and not out:
        out.append("(section header table: offsets or addresses)")
    if a.outside() != b.outside():
        out.append("(bytes outside sections)")
    return out or ["(same sections, different layout)"]


def cmd_elf_diff(a_path, b_path):
    with open(a_path, "rb") as f:
        a = f.read()
    with open(b_path, "rb") as f:
        b = f.read()
    diff = elf_differences(a, b)
    if not diff:
        print(f"identical (sha256 {hashlib.sha256(a).hexdigest()})")
        return 0
    print("differs: " + ", ".join(diff))
    return 1


def archive_members(path):
    """{name: (kind, mode, linkname, content)} for every member; owner and mtime left out."""
    members = {}
    order = []
    with tarfile.open(path, "r:*") as tar:
        for m in tar.getmembers():
            content = b""
            if m.isfile():
                content = tar.extractfile(m).read()
            kind = "file" if m.isfile() else "dir" if m.isdir() else "link" if m.issym() else m.type
            members[m.name.rstrip("/")] = (kind, m.mode, m.linkname, content)
            order.append(m.name.rstrip("/"))
    return members, order


def cmd_archive_diff(a_path, b_path):
    a, a_order = archive_members(a_path)
    b, b_order = archive_members(b_path)
    problems = []
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            problems.append(f"{name}: only in {'first' if name in a else 'second'}")
            continue
        (ka, ma, la, ca), (kb, mb, lb, cb) = a[name], b[name]
        if (ka, ma, la) != (kb, mb, lb):
            problems.append(f"{name}: {ka} {ma:o} {la!r} vs {kb} {mb:o} {lb!r}")
        elif ca != cb:
            diff = elf_differences(ca, cb)
            problems.append(f"{name}: " + ", ".join(diff))
    if problems:
        print("differs: " + "; ".join(problems))
        return 1
    with open(a_path, "rb") as f:
        raw_a = hashlib.sha256(f.read()).digest()
    with open(b_path, "rb") as f:
        raw_b = hashlib.sha256(f.read()).digest()
    notes = [f"{len(a)} members, same names, modes and contents"]
    if a_order != b_order:
        notes.append("member order differs")
    notes.append("raw .tar.xz identical" if raw_a == raw_b else
                 "raw .tar.xz differs (member mtimes/owners)")
    print("same (" + "; ".join(notes) + ")")
    return 0


def cmd_dep_v0(path, crates):
    with open(path, "rb") as f:
        data = f.read()
    try:
        elf = Elf(data)
    except (NotElf, struct.error) as e:
        print(f"{path}: {e}")
        return 1
    sec = elf.section(".dep-v0")
    if sec is None:
        print("no .dep-v0 section (not built with cargo auditable)")
        return 1
    try:
        info = json.loads(zlib.decompress(elf.content(sec)))
        packages = info["packages"]
        names = {p["name"]: p for p in packages}
    except (zlib.error, ValueError, KeyError, TypeError) as e:
        print(f".dep-v0 does not decode as zlib-compressed JSON with packages: {e}")
        return 1
    roots = [p for p in packages if p.get("root")]
    missing = [c for c in crates if c not in names]
    if len(roots) != 1 or missing:
        print(f".dep-v0: roots {[p['name'] for p in roots]}, missing crates {missing}")
        return 1
    root = roots[0]
    deps = sorted(f"{p['name']} {p['version']}" for p in packages if not p.get("root"))
    print(f"{root['name']} {root['version']}; deps: {', '.join(deps)}")
    return 0


def cmd_leaks(path, needles):
    with open(path, "rb") as f:
        data = f.read()
    found = [n for n in needles if n and n.encode() in data]
    if found:
        print("contains local paths: " + ", ".join(found))
        return 1
    print("no local paths")
    return 0


def cmd_sbom(path, crates):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"{path}: {e}")
        return 1
    if not root.tag.endswith("}bom") or not root.tag.startswith("{http://cyclonedx.org/schema/"):
        print(f"{path}: root element {root.tag}, not a CycloneDX bom")
        return 1
    ns = root.tag[:-len("bom")]
    names = {c.findtext(ns + "name"): c.findtext(ns + "version")
             for c in root.iter(ns + "component")}
    missing = [c for c in crates if c not in names]
    if missing:
        print(f"{path}: no component for {missing}")
        return 1
    print(f"CycloneDX {ns.strip('{}').rsplit('/', 1)[-1]}, {len(names)} components: " +
          ", ".join(f"{c} {names[c]}" for c in crates))
    return 0


def main(argv):
    usage = __doc__.split("\n\n")[1]
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "elf-diff" and len(args) == 2:
        return cmd_elf_diff(*args)
    if cmd == "archive-diff" and len(args) == 2:
        return cmd_archive_diff(*args)
    if cmd == "dep-v0" and args:
        return cmd_dep_v0(args[0], args[1:])
    if cmd == "leaks" and args:
        return cmd_leaks(args[0], args[1:])
    if cmd == "sbom" and args:
        return cmd_sbom(args[0], args[1:])
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
