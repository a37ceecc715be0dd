#!/usr/bin/env python3
"""The pin and permission rules of the supply chain, checked offline (run by scripts/workflow-lint.sh).

One line per rule, "PASS: ..." or "FAIL: ..." followed by the offending places; exits 1 when a
rule fails. The rules:

  uses-pinned       every remote `uses:` (workflows, .github/build-setup.yml) is
                    owner/repo[/path]@<40 hex> # v<version>; local ones are ./ or $/
  one-sha           one commit per action across all of them and dist-workspace.toml's
                    github-action-commits, and one tag comment per commit
  dist-commits      github-action-commits holds exactly the actions release.yml uses
  permissions       every workflow sets top-level permissions; hand-written ones set {}
                    (release.yml's `contents: write` comes from dist, see .github/zizmor.yml)
  checkout          every actions/checkout step has persist-credentials: false
  run-expressions   no ${{ }} inside a hand-written workflow's run: script (env: instead)
  inherit-secrets   workflows that release.yml calls with `secrets: inherit` use no secret but
                    GITHUB_TOKEN
  toolchain         rust-toolchain.toml pins X.Y.Z; the Dockerfile's ARG RUST_IMAGE is
                    docker.io/library/rust:X.Y.Z-slim-bookworm@sha256:<digest>, same X.Y.Z
  zig               ziglang== next to every cargo-zigbuild== pin; installs of cargo-zigbuild
                    use .ci/requirements-zigbuild.txt or pin ziglang on the same line; in
                    release.yml the pinned install runs before dist's unpinned fallback
  requirements      .ci/requirements-*.txt pin every package with ==
"""
import pathlib
import re
import sys
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GENERATED = {"release.yml"}  # written by `dist generate`
STEP_FILES = WORKFLOWS + [ROOT / ".github" / "build-setup.yml"]

USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)(/[^@\s]+)?@([0-9a-f]{40})$")
TAG_COMMENT = re.compile(r"^\s+#\s*(v\d+(?:\.\d+){0,2}\S*)\s*$")

failed = 0


def report(rule, problems, ok_text):
    global failed
    if problems:
        failed += 1
        print(f"FAIL: {rule}: {len(problems)} problem(s)")
        for p in problems:
            print(f"    {p}")
    else:
        print(f"PASS: {rule}: {ok_text}")


def rel(path):
    return path.relative_to(ROOT).as_posix()


def load(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def steps_of(doc):
    """Every step of every job (a build-setup file is a bare list of steps)."""
    if isinstance(doc, list):
        yield from doc
        return
    for job in (doc.get("jobs") or {}).values():
        yield from job.get("steps") or []


# ---- uses-pinned, one-sha ----------------------------------------------------------------------
pins = {}  # action -> {sha: {tag: [where]}}
problems = []
count = 0
for path in STEP_FILES:
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = USES.match(line)
        if not m:
            continue
        ref, rest = m.group(1).strip("'\""), m.group(2)
        if ref.startswith(("./", "$/")):
            continue
        count += 1
        where = f"{rel(path)}:{n}"
        p, t = PINNED.match(ref), TAG_COMMENT.match(rest)
        if not p or not t:
            problems.append(f"{where}: {ref}{rest} (want owner/repo@<40 hex> # vX.Y.Z)")
            continue
        pins.setdefault(p.group(1).lower(), {}).setdefault(p.group(3), {}).setdefault(t.group(1), []).append(where)
report("uses-pinned", problems, f"{count} remote uses: lines, each owner/repo@<sha> # <tag>")

dist = tomllib.loads((ROOT / "dist-workspace.toml").read_text(encoding="utf-8"))["dist"]
commits = dist.get("github-action-commits", {})
problems = []
for action, value in commits.items():
    m = re.fullmatch(r"([0-9a-f]{40}) # (v\d+(?:\.\d+){0,2}\S*)", value)
    if not m:
        problems.append(f"dist-workspace.toml github-action-commits {action} = {value!r}")
        continue
    pins.setdefault(action.lower(), {}).setdefault(m.group(1), {}).setdefault(m.group(2), []).append(
        "dist-workspace.toml")
for action, shas in sorted(pins.items()):
    if len(shas) > 1:
        problems.append(f"{action} pinned to {len(shas)} commits: " + "; ".join(
            f"{sha[:12]} at {', '.join(w for ws in tags.values() for w in ws)}" for sha, tags in shas.items()))
    for sha, tags in shas.items():
        if len(tags) > 1:
            problems.append(f"{action}@{sha[:12]} has tag comments {', '.join(sorted(tags))}")
report("one-sha", problems, f"{len(pins)} actions, one commit and one tag comment each")

# ---- dist-commits ------------------------------------------------------------------------------
release_actions = set()
for n, line in enumerate((ROOT / ".github/workflows/release.yml").read_text().splitlines(), 1):
    m = USES.match(line)
    if m and not m.group(1).startswith(("./", "$/")):
        release_actions.add(m.group(1).split("@")[0].lower())
problems = []
missing = release_actions - {a.lower() for a in commits}
unused = {a.lower() for a in commits} - release_actions
if missing:
    problems.append(f"used by release.yml, not in github-action-commits: {', '.join(sorted(missing))}")
if unused:
    problems.append(f"in github-action-commits, not used by release.yml: {', '.join(sorted(unused))}")
report("dist-commits", problems, f"github-action-commits pins the {len(release_actions)} actions of release.yml")

# ---- permissions, checkout, run-expressions, inherit-secrets -------------------------------------
perm_problems, checkout_problems, run_problems = [], [], []
checkouts = 0
docs = {path.name: load(path) for path in WORKFLOWS}
for name, doc in docs.items():
    perms = doc.get("permissions", None)
    if "permissions" not in doc:
        perm_problems.append(f"{name}: no top-level permissions")
    elif name not in GENERATED and perms != {}:
        perm_problems.append(f"{name}: top-level permissions {perms!r}, want {{}} (grant per job)")
    for job_name, job in (doc.get("jobs") or {}).items():
        if name not in GENERATED and "steps" in job and "permissions" not in job:
            perm_problems.append(f"{name}: job {job_name} sets no permissions")
    for step in steps_of(doc):
        uses = str(step.get("uses", ""))
        if uses.startswith("actions/checkout@"):
            checkouts += 1
            if (step.get("with") or {}).get("persist-credentials") is not False:
                checkout_problems.append(f"{name}: checkout step {step.get('name', uses)} keeps credentials")
        if name not in GENERATED and "${{" in str(step.get("run", "")):
            run_problems.append(f"{name}: step {step.get('name', step.get('run', '')[:40])!r} expands ${{{{ }}}} in run:")
report("permissions", perm_problems, f"{len(docs)} workflows: top-level set; hand-written ones {{}} with per-job grants")
report("checkout", checkout_problems, f"{checkouts} checkout steps, all with persist-credentials: false")
report("run-expressions", run_problems, "hand-written run: scripts take expressions through env: only")

problems = []
called = set()
for job in (docs["release.yml"].get("jobs") or {}).values():
    uses = str(job.get("uses", ""))
    if job.get("secrets") == "inherit" and uses.startswith(("./", "$/")):
        called.add(pathlib.PurePosixPath(uses).name)
for name in sorted(called):
    text = (ROOT / ".github/workflows" / name).read_text(encoding="utf-8")
    other = sorted(set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text)) - {"GITHUB_TOKEN"})
    if other:
        problems.append(f"{name} uses secrets {', '.join(other)}")
report("inherit-secrets", problems,
       f"{', '.join(sorted(called)) or 'none'}: called with secrets: inherit, use only GITHUB_TOKEN")

# ---- toolchain ---------------------------------------------------------------------------------
problems = []
channel = tomllib.loads((ROOT / "rust-toolchain.toml").read_text())["toolchain"].get("channel", "")
if not re.fullmatch(r"\d+\.\d+\.\d+", channel):
    problems.append(f"rust-toolchain.toml channel {channel!r} is not a pinned X.Y.Z")
m = re.search(r"^ARG RUST_IMAGE=docker\.io/library/rust:([0-9.]+)-slim-bookworm@sha256:[0-9a-f]{64}$",
              (ROOT / "Dockerfile").read_text(), re.M)
if not m:
    problems.append("Dockerfile: no ARG RUST_IMAGE=docker.io/library/rust:<X.Y.Z>-slim-bookworm@sha256:<digest>")
elif m.group(1) != channel:
    problems.append(f"Dockerfile builder rust {m.group(1)} != rust-toolchain.toml {channel}")
report("toolchain", problems, f"rust {channel} in rust-toolchain.toml and the Dockerfile's digest-pinned builder")

# ---- zig, requirements -------------------------------------------------------------------------
problems = []
req = {}
for path in sorted((ROOT / ".ci").glob("requirements-*.txt")):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+!-]+)", line)
        if not m:
            problems.append(f"{rel(path)}:{n}: {line!r} is not name==version")
        else:
            req[(path.name, m.group(1).lower())] = m.group(2)
report("requirements", problems, f"{len(req)} packages in .ci/requirements-*.txt, each pinned with ==")

problems = []
zb = ".ci/requirements-zigbuild.txt"
if ("requirements-zigbuild.txt", "cargo-zigbuild") not in req or ("requirements-zigbuild.txt", "ziglang") not in req:
    problems.append(f"{zb} must pin both cargo-zigbuild and ziglang")
scanned = [p for p in ROOT.rglob("*") if p.is_file() and p.suffix in {".sh", ".yml", ".yaml", ".py", ".toml", ""}
           and not any(part in {".git", "target", "node_modules"} for part in p.relative_to(ROOT).parts)
           and p.name != "workflow_pins.py"]
for path in scanned:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError):
        continue
    for n, line in enumerate(lines, 1):
        code = line.split("#", 1)[0] if path.suffix in {".sh", ".yml", ".yaml", ".toml", ""} else line
        if re.search(r"(pip3?|pipx|-m pip)\b.*\binstall\b.*cargo-zigbuild", code) and "ziglang==" not in code:
            problems.append(f"{rel(path)}:{n}: installs cargo-zigbuild without ziglang== ({line.strip()[:80]})")
        if re.search(r"cargo-zigbuild==[0-9$]", code) and "ziglang==" not in code \
                and path.name != "requirements-zigbuild.txt":
            problems.append(f"{rel(path)}:{n}: cargo-zigbuild== pinned without ziglang== on that line")
# dist's own "Install dependencies" step installs an unpinned cargo-zigbuild unless one is on
# PATH: the pinned install of .github/build-setup.yml must come first.
names = [str(s.get("name", "")) for s in docs["release.yml"]["jobs"]["build-local-artifacts"]["steps"]]
setup_name = load(ROOT / ".github/build-setup.yml")[0]["name"]
if setup_name not in names or "Install dependencies" not in names or \
        names.index(setup_name) > names.index("Install dependencies"):
    problems.append(f"release.yml build-local-artifacts: {setup_name!r} must run before 'Install dependencies'")
report("zig", problems, f"cargo-zigbuild {req.get(('requirements-zigbuild.txt', 'cargo-zigbuild'))} with ziglang "
       f"{req.get(('requirements-zigbuild.txt', 'ziglang'))}; no other install line leaves zig floating")

sys.exit(1 if failed else 0)
