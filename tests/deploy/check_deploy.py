#!/usr/bin/env python3
"""Checks every file under deploy/ and every snippet in docs/*.md (run by tests/check-deploy.sh).

Each check prints PASS or FAIL with what it verified; the last line is "N passed, M failed" and the
exit status is 1 if anything failed. Nothing here touches the network: configs are loaded by the
real binary with `check` (never `--live`), manifests are validated against the JSON schemas that
kubernetes-validate ships, the unit with systemd-analyze, the Dockerfile with hadolint.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "scim-proxy.service"
UNIT_TOML = DEPLOY / "systemd" / "scim-proxy.toml"
DOCKERFILE = DEPLOY / "container" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "container" / "Dockerfile.dockerignore"
K8S = DEPLOY / "kubernetes"
K8S_CONFIGMAP = "scim-proxy-config"

# Kubernetes versions the manifests must validate against: the oldest with preStop.sleep on by
# default, and the newest schema set kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "latest")

# Flags the docs may name before the binary has them (work in progress elsewhere). Reported,
# not failed, while absent; checked like any other once the binary has them.
PENDING_FLAGS = {("check", "--live")}

# Shared libraries gcr.io/distroless/cc-debian12 provides (glibc, libgcc), and its glibc version.
RUNTIME_LIBS = {
    "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1",
}
RUNTIME_GLIBC = (2, 36)

# Every file under deploy/ and the check that covers it; a file missing here fails `coverage`.
COVERED = {
    "systemd/scim-proxy.service": "systemd-verify, systemd-security, systemd-rules",
    "systemd/scim-proxy.toml": "configs, systemd-rules",
    "container/Dockerfile": "dockerfile-hadolint, dockerfile-rules",
    "container/Dockerfile.dockerignore": "docker-context",
    "kubernetes/kustomization.yaml": "k8s-kustomization",
    "kubernetes/namespace.yaml": "k8s-schema",
    "kubernetes/configmap.yaml": "k8s-schema, configs, k8s-consistency",
    "kubernetes/deployment.yaml": "k8s-schema, k8s-consistency",
    "kubernetes/service.yaml": "k8s-schema, k8s-consistency",
    "kubernetes/service-admin.yaml": "k8s-schema, k8s-consistency",
    "kubernetes/pdb.yaml": "k8s-schema, k8s-consistency",
}


class Fail(Exception):
    """A check's verdict: what is wrong, said so that the fix is obvious."""


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def require(cond, msg):
    if not cond:
        raise Fail(msg)


# ------------------------------------------------------------------------------------------------
# Markdown


@dataclass
class Block:
    file: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{rel(self.file)}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    blocks, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*([\w+-]*)\s*$", lines[i])
        if m:
            indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
            body, j = [], i + 1
            while j < len(lines) and not re.match(rf"^\s*{fence}\s*$", lines[j]):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                j += 1
            require(j < len(lines), f"{rel(path)}:{i + 1}: code block is never closed")
            blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n"))
            i = j
        i += 1
    return blocks


def prose(path: Path) -> str:
    """The Markdown text outside code blocks."""
    out, in_code = [], False
    for line in path.read_text().splitlines():
        if re.match(r"^\s*```", line):
            in_code = not in_code
            continue
        if not in_code:
            out.append(line)
    return "\n".join(out)


def docs() -> list[Path]:
    files = sorted(DOCS.glob("*.md"))
    require(files, "no docs/*.md found")
    return files


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading.strip().lower())
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


# ------------------------------------------------------------------------------------------------
# The binary


@dataclass
class Cli:
    bin: Path
    commands: dict[str, set[str]] = field(default_factory=dict)
    global_flags: set[str] = field(default_factory=set)

    @staticmethod
    def options(help_text: str) -> set[str]:
        flags = set()
        for line in help_text.splitlines():
            m = re.match(r"^\s+(-\w, )?(--[\w-]+)", line)
            if m:
                flags.add(m.group(2))
                if m.group(1):
                    flags.add(m.group(1)[:2])
        return flags

    @classmethod
    def load(cls, bin: Path) -> "Cli":
        top = run([str(bin), "--help"])
        require(top.returncode == 0, f"{bin} --help failed: {top.stderr}")
        cli = cls(bin)
        section = None
        for line in top.stdout.splitlines():
            if re.match(r"^\w[\w ]*:$", line):
                section = line[:-1]
                continue
            m = re.match(r"^  ([a-z][a-z-]*)\s", line)
            if section == "Commands" and m and m.group(1) != "help":
                cli.commands[m.group(1)] = set()
        cli.global_flags = cls.options(top.stdout) | {"-h", "--help", "-V", "--version"}
        require(cli.commands, f"no subcommands found in `{bin} --help`")
        for sub in cli.commands:
            h = run([str(bin), sub, "--help"])
            require(h.returncode == 0, f"{bin} {sub} --help failed: {h.stderr}")
            cli.commands[sub] = cls.options(h.stdout)
        return cli


def invocations(text: str) -> list[list[str]]:
    """The argument lists of scim-proxy invocations in shell-like text (after `scim-proxy`)."""
    text = re.sub(r"\\\n", " ", text)
    found = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        try:
            lex = shlex.shlex(line, posix=True, punctuation_chars=True)
            lex.whitespace_split = True
            tokens = list(lex)
        except ValueError:
            tokens = line.split()
        ops = {"|", "||", "&&", ";", "(", ")", "&", ">", ">>", "<", "$("}
        for i, t in enumerate(tokens):
            prev = tokens[i - 1] if i else ""
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
            docker_image = re.fullmatch(r"scim-proxy:[\w.-]+", t) and "run" in tokens[:i]
            if not (t == "scim-proxy" or t.endswith("/scim-proxy") or t.endswith("=/usr/local/bin/scim-proxy") or docker_image):
                continue
            if prev in {"-n", "--namespace", "-u", "--unit", "--name", "-t", "--tag"}:
                continue
            if not docker_image and not (re.fullmatch(r"[a-z][a-z-]*", nxt) or nxt.startswith("--")):
                continue
            if not docker_image and nxt.startswith("--") and nxt.split("=")[0] not in {"--log-format", "--help", "--version"}:
                continue  # e.g. `journalctl -u scim-proxy --since`: not our binary
            args = []
            for a in tokens[i + 1:]:
                if a in ops or a.startswith("$("):
                    break
                args.append(a)
            if args:
                found.append(args)
    return found


def check_invocation(cli: Cli, args: list[str], where: str, notes: list[str]):
    a = list(args)
    while a and a[0].startswith("-"):
        flag = a.pop(0).split("=")[0]
        require(flag in cli.global_flags, f"{where}: `scim-proxy {' '.join(args)}`: unknown global option {flag}")
        if flag == "--log-format" and a:
            require(a.pop(0) in {"text", "json"}, f"{where}: --log-format takes text or json")
    if not a:
        return
    sub = a.pop(0)
    require(sub in cli.commands, f"{where}: `scim-proxy {' '.join(args)}`: no subcommand {sub!r} (have: {', '.join(sorted(cli.commands))})")
    for tok in a:
        if not tok.startswith("-") or tok == "-":
            continue
        flag = tok.split("=")[0]
        if flag in cli.commands[sub] or flag in cli.global_flags:
            continue
        if (sub, flag) in PENDING_FLAGS:
            notes.append(f"{where}: `scim-proxy {sub} {flag}` is not in this binary yet (pending; checked once it is)")
            continue
        raise Fail(f"{where}: `scim-proxy {' '.join(args)}`: {sub} has no option {flag}")


# ------------------------------------------------------------------------------------------------
# Loading configs with the real binary


PATH_KEYS = {"cert", "key", "ca_file", "token_file", "via_proxy_auth_file", "pii_key_file"}
ENV_KEYS = {"token_env", "via_proxy_auth_env", "pii_key_env"}

BASE_LISTEN = '\n[listen]\naddr = "127.0.0.1:8443"\n'
BASE_ROUTE = """
[[routes]]
name = "check-deploy"
hosts = ["addon-check-deploy.goskope.example"]
upstream = "https://check-deploy.goskope.example/api/v2/scim"
token_file = "token"

[[routes.clients]]
name = "check-deploy"
token_sha256 = "00000000000000000000000000000000000000000000000000000000000000ff"
"""


class Fixtures:
    """Throwaway certificates, token files and a log directory for `check` to load."""

    def __init__(self, cli: Cli, tmp: Path):
        self.cli, self.tmp = cli, tmp
        certs = tmp / "certs"
        r = run([str(cli.bin), "dev-certs", "--dir", str(certs)])
        require(r.returncode == 0, f"scim-proxy dev-certs failed: {r.stderr}")
        self.files = {
            "cert": certs / "server.crt",
            "key": certs / "server.key",
            "ca_file": certs / "ca.pem",
        }
        for name, content in {
            "token_file": "check-deploy-v2-token",
            "via_proxy_auth_file": "user:password",
            "pii_key_file": "0123456789abcdef0123456789abcdef",
        }.items():
            p = tmp / f"{name}.txt"
            p.write_text(content + "\n")
            self.files[name] = p
        (tmp / "logs").mkdir()
        self.count = 0
        self.ipv6 = run(["python3", "-c", "import socket;s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.bind(('::1',0))"]).returncode == 0

    def check(self, text: str, origin: str, fragment_ok: bool) -> str:
        """Runs `scim-proxy check` on `text` (with local paths substituted); returns a summary."""
        added = []
        if fragment_ok and not re.search(r"(?m)^\s*\[listen\]\s*(#.*)?$", text):
            text += BASE_LISTEN
            added.append("[listen]")
        if fragment_ok and not re.search(r"(?m)^\s*\[\[routes\]\]\s*(#.*)?$", text):
            text += BASE_ROUTE.replace('"token"', f'"{self.files["token_file"]}"')
            added.append("[[routes]]")
        replaced, env = [], dict(os.environ)
        out_lines = []
        for line in text.splitlines():
            m = re.match(r"""^(\s*)([\w.]+)(\s*=\s*)(["'])(.*?)\4(.*)$""", line)
            if m:
                k, v = m.group(2), m.group(5)
                new = None
                if k in PATH_KEYS:
                    new = str(self.files[k])
                elif k == "bind_ip":
                    new = "::1" if ":" in v and self.ipv6 else "127.0.0.1"
                elif k == "traffic" and v not in {"stdout", "off"}:
                    new = str(self.tmp / "logs" / "traffic.jsonl")
                elif k in ENV_KEYS:
                    env[v] = "0123456789abcdef0123456789abcdef" if k != "via_proxy_auth_env" else "user:password"
                    replaced.append(f"${v}")
                if new is not None:
                    line = f"{m.group(1)}{k}{m.group(3)}\"{new}\"{m.group(6)}"
                    replaced.append(k)
            out_lines.append(line)
        self.count += 1
        cfg = self.tmp / f"config-{self.count}.toml"
        cfg.write_text("\n".join(out_lines) + "\n")
        r = run([str(self.cli.bin), "check", "--config", str(cfg)], env=env)
        if r.returncode != 0 or ": OK" not in r.stdout:
            raise Fail(
                f"{origin}: `scim-proxy check` refused it (exit {r.returncode}):\n"
                + "\n".join("    " + l for l in (r.stderr + r.stdout).strip().splitlines())
                + f"\n    (as loaded: {cfg})"
            )
        bits = []
        if added:
            bits.append("fragment + " + ", ".join(added))
        if replaced:
            bits.append("local " + ", ".join(sorted(set(replaced))))
        return f"{origin}" + (f" ({'; '.join(bits)})" if bits else "")


def configmap_toml() -> str:
    cm = load_yaml(K8S / "configmap.yaml")[0]
    require(cm.get("kind") == "ConfigMap", "configmap.yaml is not a ConfigMap")
    data = cm.get("data") or {}
    require("scim-proxy.toml" in data, "configmap.yaml has no data key scim-proxy.toml")
    return data["scim-proxy.toml"]


# ------------------------------------------------------------------------------------------------
# YAML, systemd, Dockerfile parsing


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""


def _unique_mapping(loader, node, deep=False):
    keys = set()
    for k, _ in node.value:
        key = loader.construct_object(k, deep=deep)
        if key in keys:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", k.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: Path, text: str | None = None) -> list:
    try:
        return [d for d in yaml.load_all(text if text is not None else path.read_text(), Loader=UniqueKeyLoader) if d is not None]
    except yaml.YAMLError as e:
        raise Fail(f"{rel(path)}: {e}")


def unit_directives(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in order, continuation lines joined."""
    out, section, pending = [], None, ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            section = m.group(1)
            continue
        k, _, v = line.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def duration_s(s: str) -> float:
    total, s = 0.0, s.strip()
    require(s, "empty duration")
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?", s):
        total += float(num) * {"ms": 0.001, "s": 1, "sec": 1, "": 1, "m": 60, "min": 60, "h": 3600}[unit or ""]
    return total


def dockerfile(path: Path) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out, buf, start = [], "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        s = raw.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if not buf:
            start = n
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        ins, _, args = buf.partition(" ")
        out.append((start, ins.upper(), args.strip()))
        buf = ""
    return out


# ------------------------------------------------------------------------------------------------
# The checks


class Checker:
    def __init__(self, bin: Path, tmp: Path):
        self.bin, self.tmp = bin, tmp
        self.passed = self.failed = 0
        self.cli: Cli | None = None
        self.fixtures: Fixtures | None = None
        venv_bin = Path(sys.executable).parent
        self.hadolint = shutil.which("hadolint", path=str(venv_bin)) or shutil.which("hadolint")
        self.shellcheck = shutil.which("shellcheck", path=str(venv_bin)) or shutil.which("shellcheck")

    def check(self, name: str, fn):
        try:
            lines = fn() or []
        except Fail as e:
            self.failed += 1
            print(f"FAIL {name}\n  " + str(e).replace("\n", "\n  "), flush=True)
            return
        except Exception:  # a bug in this script is a failure too, never a pass
            self.failed += 1
            print(f"FAIL {name}: unexpected error\n" + traceback.format_exc(), flush=True)
            return
        self.passed += 1
        print(f"PASS {name}", flush=True)
        for line in lines:
            print(f"     {line}", flush=True)

    # -- the binary -------------------------------------------------------------------------------

    def c_cli(self):
        self.cli = Cli.load(self.bin)
        self.fixtures = Fixtures(self.cli, self.tmp)
        want = hashlib.sha256(b"example-token").hexdigest()
        for stdin, how in ((b"example-token", "printf '%s'"), (b"example-token\n", "echo")):
            r = subprocess.run([str(self.bin), "hash-token"], input=stdin, capture_output=True)
            require(r.returncode == 0 and r.stdout.decode().strip() == want,
                    f"hash-token of the token as `{how}` writes it is not sha256(token): {r.stdout!r} {r.stderr!r}")
        return [
            f"{rel(self.bin) if self.bin.is_relative_to(ROOT) else self.bin}: subcommands {', '.join(sorted(self.cli.commands))}",
            "hash-token gives sha256(token) with and without a trailing newline (as the docs say)",
        ]

    # -- configs ----------------------------------------------------------------------------------

    def c_configs(self):
        require(self.fixtures, "needs the cli check")
        out = []
        for md in docs():
            for b in code_blocks(md):
                if b.lang == "toml":
                    out.append(self.fixtures.check(b.text, b.where, fragment_ok=True))
        require(out, "docs/*.md hold no ```toml block at all")
        out.append(self.fixtures.check(UNIT_TOML.read_text(), rel(UNIT_TOML), fragment_ok=False))
        out.append(self.fixtures.check(configmap_toml(), f"{rel(K8S / 'configmap.yaml')} data.scim-proxy.toml", fragment_ok=False))
        return ["`scim-proxy check` exit 0 for every config:"] + [f"  {o}" for o in out]

    def c_cli_usage(self):
        require(self.cli, "needs the cli check")
        notes, count = [], 0
        sources: list[tuple[str, str]] = []
        for md in docs():
            for b in code_blocks(md):
                if b.lang in {"sh", "bash", "shell", "console", ""}:
                    sources.append((b.where, b.text))
            for n, line in enumerate(md.read_text().splitlines(), 1):
                for span in re.findall(r"`([^`\n]+)`", line):
                    sources.append((f"{rel(md)}:{n}", span))
        for section, k, v in unit_directives(UNIT):
            if k.startswith("Exec"):
                sources.append((f"{rel(UNIT)} {k}", v))
        for line, ins, args in dockerfile(DOCKERFILE):
            if ins in {"ENTRYPOINT", "CMD"}:
                sources.append((f"{rel(DOCKERFILE)}:{line}", args))
        for where, text in sources:
            for args in invocations(text):
                check_invocation(self.cli, args, where, notes)
                count += 1
        # The image: ENTRYPOINT + CMD, and the Deployment's args after the ENTRYPOINT.
        ep, cmd = self._entrypoint_cmd()
        check_invocation(self.cli, ep[1:] + cmd, f"{rel(DOCKERFILE)} ENTRYPOINT+CMD", notes)
        dep = self._deployment()
        c = self._container(dep)
        check_invocation(self.cli, ep[1:] + list(c.get("args", [])), f"{rel(K8S / 'deployment.yaml')} args", notes)
        count += 2
        require(count >= 10, f"only {count} scim-proxy invocations found in docs and deploy files: is the scanner broken?")
        return [f"{count} scim-proxy invocations (docs code and inline code, unit Exec lines, image, Deployment args) use real subcommands and options"] + notes

    # -- docs -------------------------------------------------------------------------------------

    def c_links(self):
        count = 0
        for md in docs():
            for n, line in enumerate(prose(md).splitlines(), 1):
                # Wrapped text that starts a line with "> " (a console path) renders as a quote.
                require(not line.startswith(">"), f"{rel(md)}: a prose line starts with '>' and renders as a block quote: {line[:60]!r}")
                for target in re.findall(r"\]\(([^)\s]+)\)", line):
                    if re.match(r"^[a-z]+:", target):
                        continue
                    path, _, anchor = target.partition("#")
                    dest = (md.parent / path).resolve() if path else md
                    require(dest.exists(), f"{rel(md)}: link to {target}: {rel(dest)} does not exist")
                    if anchor and dest.suffix == ".md":
                        require(anchor in anchors(dest), f"{rel(md)}: link to {target}: no heading with anchor #{anchor} in {rel(dest)}")
                    count += 1
        return [f"{count} relative links in docs/*.md resolve (files and heading anchors); no accidental block quotes"]

    def c_shell(self):
        require(self.shellcheck, "shellcheck not found (tests/deploy/requirements.txt installs it)")
        count, out = 0, []
        for md in docs():
            for b in code_blocks(md):
                if b.lang not in {"sh", "bash", "shell"}:
                    continue
                count += 1
                f = self.tmp / f"snippet-{count}.sh"
                f.write_text(b.text)
                r = run(["bash", "-n", str(f)])
                require(r.returncode == 0, f"{b.where}: not valid bash:\n{r.stderr}")
                r = run([self.shellcheck, "--shell=bash", "--severity=warning", "--format=gcc", str(f)])
                require(r.returncode == 0, f"{b.where}: shellcheck:\n" + r.stdout.replace(str(f), b.where))
                unquoted = re.sub(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"", "", b.text)
                for ph in re.findall(r"<[A-Za-z][\w.-]*>", unquoted):
                    raise Fail(f"{b.where}: unquoted placeholder {ph}: the shell reads it as a redirection; quote it")
        require(count, "no ```sh blocks in docs")
        r = run([self.shellcheck, "--shell=bash", "--severity=style", str(ROOT / "tests" / "check-deploy.sh")])
        require(r.returncode == 0, f"shellcheck tests/check-deploy.sh:\n{r.stdout}")
        return [f"{count} shell blocks in docs/*.md: bash -n, shellcheck (warnings), no unquoted <placeholders>",
                "tests/check-deploy.sh: shellcheck (all severities)"]

    def c_doc_yaml(self):
        out = []
        for md in docs():
            for b in code_blocks(md):
                if b.lang not in {"yaml", "yml"}:
                    continue
                for d in load_yaml(md, b.text):
                    if isinstance(d, dict) and "apiVersion" in d and "kind" in d:
                        try:
                            kv.validate(d, kv.latest_version(), strict=True)
                            out.append(f"{b.where}: {d['kind']} valid (strict schema)")
                        except kv.SchemaNotFoundError:
                            group = d["apiVersion"].split("/")[0]
                            require("." in group and not group.endswith("k8s.io"),
                                    f"{b.where}: no schema for {d['kind']} {d['apiVersion']}")
                            out.append(f"{b.where}: {d['kind']} ({group}, a CRD) parsed; no schema offline")
                        except kv.ValidationError as e:
                            raise Fail(f"{b.where}: {d['kind']}: {'.'.join(map(str, e.path))}: {e.message}")
                    else:
                        out.append(f"{b.where}: YAML parsed (no duplicate keys)")
        return out

    def c_doc_ini(self):
        out = []
        for md in docs():
            for b in code_blocks(md):
                if b.lang != "ini":
                    continue
                require(re.match(r"\s*\[(Unit|Service|Install)\]", b.text), f"{b.where}: ini block is not a systemd drop-in")
                d = self._unit_copy(f"dropin-{b.line}")
                (d.parent / "scim-proxy.service.d").mkdir()
                (d.parent / "scim-proxy.service.d" / "50-doc.conf").write_text(b.text)
                self._verify_unit(d, b.where)
                out.append(f"{b.where}: drop-in on deploy/systemd/scim-proxy.service passes systemd-analyze verify")
        return out

    # -- systemd ----------------------------------------------------------------------------------

    def _unit_copy(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir()
        u = d / "scim-proxy.service"
        u.write_text(UNIT.read_text().replace("/usr/local/bin/scim-proxy", str(self.bin.resolve())))
        return u

    def _verify_unit(self, unit: Path, label: str):
        r = run(["systemd-analyze", "verify", "--man=no", str(unit)])
        msgs = (r.stdout + r.stderr).strip()
        require(r.returncode == 0 and not msgs, f"{label}: systemd-analyze verify (exit {r.returncode}):\n{msgs}")

    def c_systemd_verify(self):
        u = self._unit_copy("unit")
        self._verify_unit(u, rel(UNIT))
        return [f"{rel(UNIT)}: systemd-analyze verify prints nothing (ExecStart pointed at the built binary)"]

    def c_systemd_security(self):
        u = self._unit_copy("unit-security")
        r = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(u)])
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
        require(m, f"systemd-analyze security gave no exposure level:\n{r.stdout}{r.stderr}")
        level = float(m.group(1))
        require(level <= 2.0, f"{rel(UNIT)}: exposure {level} > 2.0; hardening was lost:\n{r.stdout}")
        return [f"{rel(UNIT)}: systemd-analyze security --offline exposure {level} (<= 2.0)"]

    def c_systemd_rules(self):
        d = unit_directives(UNIT)
        svc = {}
        for section, k, v in d:
            if section == "Service":
                svc.setdefault(k, []).append(v)
        one = lambda k: (svc.get(k) or [None])[-1]
        for k, v in {"Type": "exec", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                     "Restart": "on-failure", "ExecReload": "/bin/kill -HUP $MAINPID"}.items():
            require(one(k) == v, f"{rel(UNIT)}: want {k}={v}, have {one(k)}")
        require(one("DynamicUser") == "yes" or one("User"), f"{rel(UNIT)}: neither DynamicUser=yes nor a dedicated User=")
        require(svc.get("ReadOnlyPaths"), f"{rel(UNIT)}: no ReadOnlyPaths=")
        cfg_path = None
        for k, verb in (("ExecStartPre", "check"), ("ExecStart", "serve")):
            argv = shlex.split(one(k) or "")
            require(argv and argv[0] == "/usr/local/bin/scim-proxy" and verb in argv,
                    f"{rel(UNIT)}: {k} should run /usr/local/bin/scim-proxy {verb}: {one(k)}")
            c = argv[argv.index("--config") + 1] if "--config" in argv else None
            require(c and (cfg_path in (None, c)), f"{rel(UNIT)}: ExecStartPre and ExecStart must name the same --config")
            cfg_path = c
        # Credentials: named like their source files, and every credential path in the config exists.
        creds = {}
        for v in svc.get("LoadCredential", []):
            ident, _, src = v.partition(":")
            require(src and Path(src).name == ident,
                    f"{rel(UNIT)}: LoadCredential={v}: keep the source file named like the credential (docs/running.md relies on it)")
            creds[ident] = src
        require(creds, f"{rel(UNIT)}: no LoadCredential=")
        toml_text = UNIT_TOML.read_text()
        cfg = tomllib.loads(toml_text)
        used = set(re.findall(r"/run/credentials/scim-proxy\.service/([\w.-]+)", toml_text))
        require(used, f"{rel(UNIT_TOML)}: names no /run/credentials/scim-proxy.service/ file")
        missing = used - set(creds)
        require(not missing, f"{rel(UNIT_TOML)} reads credentials the unit does not load: {', '.join(sorted(missing))}")
        # Capabilities follow the listen port.
        port = int(cfg["listen"]["addr"].rsplit(":", 1)[1])
        cbs, amb = one("CapabilityBoundingSet") or "", one("AmbientCapabilities") or ""
        if port < 1024:
            require(cbs.split() == ["CAP_NET_BIND_SERVICE"] and amb.split() == ["CAP_NET_BIND_SERVICE"],
                    f"{rel(UNIT)}: listen port {port} needs exactly CAP_NET_BIND_SERVICE in CapabilityBoundingSet and AmbientCapabilities")
        else:
            require(cbs == "" and amb == "", f"{rel(UNIT)}: listen port {port} needs no capability: empty CapabilityBoundingSet=")
        # Stop timeout above the drain; descriptors above the connection cap.
        grace = duration_s(cfg.get("limits", {}).get("shutdown_grace", "30s"))
        stop = duration_s(one("TimeoutStopSec") or "90s")
        require(stop > grace, f"{rel(UNIT)}: TimeoutStopSec={stop:g}s must exceed shutdown_grace ({grace:g}s)")
        maxconn = int(cfg.get("limits", {}).get("max_connections", 4096))
        nofile = int(one("LimitNOFILE") or 1024)
        require(nofile > maxconn + 256, f"{rel(UNIT)}: LimitNOFILE={nofile} leaves no room above max_connections={maxconn}")
        return [
            f"{rel(UNIT)}: Type=exec, DynamicUser/User, NoNewPrivileges, ProtectSystem=strict, ReadOnlyPaths, Restart=on-failure, ExecReload=kill -HUP",
            f"ExecStartPre=check and ExecStart=serve on the same config ({cfg_path})",
            f"LoadCredential {', '.join(sorted(creds))}: named like their sources; {rel(UNIT_TOML)} reads only these",
            f"listen port {port}: capabilities {cbs or '(none)'}; TimeoutStopSec {stop:g}s > shutdown_grace {grace:g}s; LimitNOFILE {nofile} > max_connections {maxconn}",
        ]

    # -- Dockerfile -------------------------------------------------------------------------------

    def _entrypoint_cmd(self):
        import json
        ep = cmd = None
        for _, ins, args in dockerfile(DOCKERFILE):
            if ins in {"ENTRYPOINT", "CMD"}:
                require(args.startswith("["), f"{rel(DOCKERFILE)}: {ins} must be in exec form (JSON array)")
                val = json.loads(args)
                ep, cmd = (val, cmd) if ins == "ENTRYPOINT" else (ep, val)
        require(ep and cmd is not None, f"{rel(DOCKERFILE)}: needs ENTRYPOINT and CMD")
        return ep, cmd

    def c_dockerfile_hadolint(self):
        require(self.hadolint, "hadolint not found (tests/deploy/requirements.txt installs it)")
        r = run([self.hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
        require(r.returncode == 0, f"hadolint {rel(DOCKERFILE)}:\n{r.stdout}{r.stderr}")
        v = run([self.hadolint, "--version"]).stdout.strip()
        return [f"{rel(DOCKERFILE)}: hadolint clean at every severity ({v})"]

    def c_dockerfile_rules(self):
        ins = dockerfile(DOCKERFILE)
        froms = [(n, a) for n, i, a in ins if i == "FROM"]
        require(len(froms) >= 2, f"{rel(DOCKERFILE)}: want a multi-stage build (builder, then runtime)")
        for n, a in froms:
            image = a.split()[0]
            require("@sha256:" in image or re.search(r"\d", image.rsplit("/", 1)[-1]),
                    f"{rel(DOCKERFILE)}:{n}: base image {image} names no version (in its name, tag or digest)")
            require(not image.endswith(":latest"), f"{rel(DOCKERFILE)}:{n}: {image}: never :latest")
        builder, runtime = froms[0][1].split()[0], froms[-1][1].split()[0]
        require("bookworm" in builder and "debian12" in runtime,
                f"{rel(DOCKERFILE)}: builder ({builder}) and runtime ({runtime}) must be the same Debian release (bookworm = debian12), or the glibc may not match")
        last_from = max(i for i, (n, x, a) in enumerate(ins) if x == "FROM")
        users = [a for n, x, a in ins[last_from:] if x == "USER"]
        require(users, f"{rel(DOCKERFILE)}: the runtime stage sets no USER (it would run as root)")
        uid = users[-1].split(":")[0]
        require(uid.isdigit() and int(uid) != 0, f"{rel(DOCKERFILE)}: USER {users[-1]}: use a numeric non-root UID (runAsNonRoot can only verify numbers)")
        exposed = set()
        for n, x, a in ins[last_from:]:
            if x == "EXPOSE":
                exposed |= {int(p.split("/")[0]) for p in a.split()}
        require(exposed == {8443, 9090}, f"{rel(DOCKERFILE)}: EXPOSE {sorted(exposed)}, want 8443 (listen) and 9090 (admin)")
        text = DOCKERFILE.read_text()
        for n, x, a in ins:
            require(not (x in {"ENV", "ARG"} and re.search(r"(?i)(token|secret|password|key)\w*\s*=", a)),
                    f"{rel(DOCKERFILE)}:{n}: {x} {a}: no secrets in the image")
            require(not (x in {"COPY", "ADD"} and re.search(r"(?i)\.(key|token|pem)\b|certs/|credentials", a)),
                    f"{rel(DOCKERFILE)}:{n}: {x} {a}: no keys, tokens or certificates in the image")
            require(x != "ADD", f"{rel(DOCKERFILE)}:{n}: use COPY, not ADD")
        require("--locked" in text, f"{rel(DOCKERFILE)}: cargo build must use --locked")
        ep, cmd = self._entrypoint_cmd()
        copies = [a.split()[-1] for n, x, a in ins[last_from:] if x == "COPY"]
        require(ep[0] in copies, f"{rel(DOCKERFILE)}: ENTRYPOINT {ep[0]} is not a file the runtime stage copies in")
        return [
            f"{rel(DOCKERFILE)}: {len(froms)} stages; bases pinned ({builder}, {runtime}), same Debian release",
            f"runtime: USER {users[-1]} (numeric, non-root); EXPOSE {sorted(exposed)}; exec-form ENTRYPOINT {ep[0]}",
            "no secrets in ENV/ARG, no keys/tokens/certificates copied, no ADD, cargo --locked",
        ]

    def c_docker_context(self):
        patterns = [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")]
        require(patterns and patterns[0] == "*", f"{rel(DOCKERIGNORE)}: start with `*` (allow-list the build context)")
        allowed = [p[1:].rstrip("/") for p in patterns[1:] if p.startswith("!")]
        require(len(allowed) == len(patterns) - 1, f"{rel(DOCKERIGNORE)}: after `*`, only `!path` lines")
        sources = {a.split()[0] for n, x, a in dockerfile(DOCKERFILE) if x == "COPY" and not a.startswith("--from")}
        for n, x, a in dockerfile(DOCKERFILE):
            if x == "COPY" and not a.startswith("--from"):
                for s in a.split()[:-1]:
                    s = s.rstrip("/")
                    require(s in allowed, f"{rel(DOCKERFILE)}:{n}: COPY {s} is excluded by {rel(DOCKERIGNORE)}")
        for secret in (".git", "target", ".venv", "certs"):
            require(secret not in allowed, f"{rel(DOCKERIGNORE)}: {secret} must stay out of the build context")
        # The context alone must be a loadable package with a scim-proxy binary and a lock file that
        # needs no update: cargo fails fast on both before compiling anything.
        ctx = self.tmp / "docker-context"
        ctx.mkdir()
        for a in allowed:
            src = ROOT / a
            require(src.exists(), f"{rel(DOCKERIGNORE)}: !{a} does not exist")
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, ctx / a)
        env = dict(os.environ, CARGO_TARGET_DIR=str(self.tmp / "docker-context-target"))
        probe = "__docker_context_probe__"
        r = run(["cargo", "build", "--release", "--locked", "--offline", "--bin", probe], cwd=ctx, env=env)
        out = r.stdout + r.stderr
        require(f"no bin target named `{probe}`" in out and re.search(r"(?m)^\s+scim-proxy$", out),
                f"cargo cannot load the package from the Docker build context ({', '.join(allowed)}):\n{out}")
        return [f"{rel(DOCKERIGNORE)}: context = {', '.join(allowed)}; every COPY source is in it; .git, target, .venv, certs are not",
                "cargo loads the package from that context alone: bin scim-proxy present, Cargo.lock current (--locked)"]

    def c_binary_runtime(self):
        r = run(["readelf", "-d", "-W", "-V", str(self.bin)])
        require(r.returncode == 0, f"readelf failed: {r.stderr}")
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout))
        extra = needed - RUNTIME_LIBS
        require(not extra, f"{self.bin} needs {', '.join(sorted(extra))}, which gcr.io/distroless/cc-debian12 does not ship")
        versions = [tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", r.stdout)]
        top = max(versions) if versions else (0,)
        require(top <= RUNTIME_GLIBC, f"{self.bin} needs GLIBC_{'.'.join(map(str, top))}; debian12 has {'.'.join(map(str, RUNTIME_GLIBC))}")
        return [f"the binary needs only {', '.join(sorted(needed))} (in distroless/cc-debian12), glibc <= {'.'.join(map(str, top))}"]

    # -- Kubernetes -------------------------------------------------------------------------------

    def _manifests(self) -> dict[str, list]:
        out = {}
        for p in sorted(K8S.glob("*.yaml")):
            out[p.name] = load_yaml(p)
        return out

    def _by_kind(self, kind: str) -> list[dict]:
        return [d for docs_ in self._manifests().values() for d in docs_ if d.get("kind") == kind]

    def _deployment(self) -> dict:
        deps = self._by_kind("Deployment")
        require(len(deps) == 1, f"want one Deployment in {rel(K8S)}, have {len(deps)}")
        return deps[0]

    def _container(self, dep: dict) -> dict:
        cs = dep["spec"]["template"]["spec"]["containers"]
        c = [c for c in cs if c.get("name") == "scim-proxy"]
        require(c, "the Deployment has no container named scim-proxy")
        return c[0]

    def c_k8s_schema(self):
        out = []
        versions = [kv.latest_version() if v == "latest" else v for v in K8S_VERSIONS]
        for name, docs_ in self._manifests().items():
            if name == "kustomization.yaml":
                continue
            require(docs_, f"{name}: empty")
            for d in docs_:
                require(isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and (d.get("metadata") or {}).get("name"),
                        f"{rel(K8S / name)}: not a Kubernetes resource (apiVersion, kind, metadata.name)")
                for v in versions:
                    try:
                        kv.validate(d, v, strict=True)
                    except kv.ValidationError as e:
                        raise Fail(f"{rel(K8S / name)}: {d.get('kind')} against Kubernetes {e.version}: {'.'.join(map(str, e.path))}: {e.message}")
                    except kv.SchemaNotFoundError as e:
                        raise Fail(f"{rel(K8S / name)}: {e.message}")
                out.append(f"{rel(K8S / name)}: {d['kind']}/{d['metadata']['name']} valid (strict) against {', '.join(kv.major_minor(v) for v in versions)}")
        return out

    def c_k8s_kustomization(self):
        k = load_yaml(K8S / "kustomization.yaml")[0]
        require(k.get("kind") == "Kustomization" and k.get("apiVersion", "").startswith("kustomize.config.k8s.io/"),
                "kustomization.yaml is not a Kustomization")
        allowed = {"apiVersion", "kind", "namespace", "resources", "labels", "commonLabels", "images"}
        require(set(k) <= allowed, f"kustomization.yaml: unexpected keys {sorted(set(k) - allowed)}")
        listed = k.get("resources", [])
        on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
        require(sorted(listed) == on_disk, f"kustomization.yaml resources {sorted(listed)} != manifests on disk {on_disk}")
        ns = k.get("namespace")
        for d in (d for n in listed for d in load_yaml(K8S / n)):
            if d["kind"] == "Namespace":
                require(d["metadata"]["name"] == ns, f"Namespace {d['metadata']['name']} != kustomization namespace {ns}")
            else:
                require(d["metadata"].get("namespace") == ns, f"{d['kind']}/{d['metadata']['name']}: namespace {d['metadata'].get('namespace')} != {ns}")
        return [f"kustomization.yaml lists exactly the {len(listed)} manifests; every resource is in namespace {ns}"]

    def c_k8s_consistency(self):
        dep = self._deployment()
        spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        c = self._container(dep)
        cfg_text = configmap_toml()
        cfg = tomllib.loads(cfg_text)
        out = []

        # The config file the container reads is the ConfigMap's key, through a whole-directory mount.
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        args = list(c.get("args", []))
        require("--config" in args, "the container args name no --config")
        config_path = Path(args[args.index("--config") + 1])

        def mount_for(path: Path):
            best = None
            for m in mounts.values():
                if path.is_relative_to(m["mountPath"]) and (best is None or len(m["mountPath"]) > len(best["mountPath"])):
                    best = m
            return best

        m = mount_for(config_path)
        require(m and vols[m["name"]].get("configMap", {}).get("name") == K8S_CONFIGMAP and config_path.parent == Path(m["mountPath"]),
                f"--config {config_path} is not a file of the {K8S_CONFIGMAP} mount")
        require(config_path.name in (self._by_kind("ConfigMap")[0].get("data") or {}), f"ConfigMap has no key {config_path.name}")
        for mm in mounts.values():
            require("subPath" not in mm and "subPathExpr" not in mm, f"volumeMount {mm['name']} uses subPath: updates (rotation) would never arrive")
            require(mm.get("readOnly") is True, f"volumeMount {mm['name']} is not readOnly")
        out.append(f"--config {config_path}: key of ConfigMap {K8S_CONFIGMAP}, directory mount, no subPath, all mounts read-only")

        # Every file the config names is in a mounted Secret/ConfigMap, under a key the docs create.
        secret_keys = self._documented_secret_keys()
        files = []
        for table in (cfg.get("listen", {}), cfg.get("egress", {}), cfg.get("log", {}), *cfg.get("routes", [])):
            for k in PATH_KEYS:
                if isinstance(table.get(k), str):
                    files.append((k, Path(table[k])))
        require(files, "the ConfigMap's config names no files?")
        for k, p in files:
            m = mount_for(p)
            require(m, f"config {k} = {p}: no volume is mounted there")
            vol = vols[m["name"]]
            require("secret" in vol or "configMap" in vol, f"config {k} = {p}: mount {m['name']} is neither a Secret nor a ConfigMap")
            if "secret" in vol:
                name = vol["secret"]["secretName"]
                require(vol["secret"].get("defaultMode", 0o644) & 0o007 == 0, f"Secret volume {name}: defaultMode lets everyone read it")
                require(name in secret_keys, f"config {k} = {p}: Secret {name} is never created in docs/running.md")
                for ks in secret_keys[name]:
                    require(p.name in ks, f"config {k} = {p}: docs/running.md creates Secret {name} with keys {sorted(ks)}, without {p.name}")
        out.append("config files " + ", ".join(f"{k}={p}" for k, p in files) + ": in mounted Secrets (not world-readable), under the keys docs/running.md creates")

        # Ports and probes.
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        listen_port = int(cfg["listen"]["addr"].rsplit(":", 1)[1])
        admin_host, admin_port = cfg["admin"]["addr"].rsplit(":", 1)
        require(ports.get("https") == listen_port, f"containerPort https {ports.get('https')} != listen.addr port {listen_port}")
        require(ports.get("admin") == int(admin_port), f"containerPort admin {ports.get('admin')} != admin.addr port {admin_port}")
        require(admin_host in {"0.0.0.0", "[::]"}, f"admin.addr {cfg['admin']['addr']}: the kubelet probes the pod address; listen on 0.0.0.0")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            g = (c.get(probe) or {}).get("httpGet") or {}
            require(g.get("path") == path and g.get("port") in {"admin", int(admin_port)}, f"{probe} must GET {path} on the admin port, has {g}")
        out.append(f"ports https={listen_port} (listen.addr), admin={admin_port} (admin.addr on all addresses); readiness /readyz, liveness /healthz on admin")

        # Security context.
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        uid = self._dockerfile_uid()
        require(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, "runAsNonRoot is not set")
        require(psc.get("runAsUser", csc.get("runAsUser")) == uid, f"runAsUser {psc.get('runAsUser')} != the image's USER {uid}")
        require(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
        require(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
        caps = csc.get("capabilities", {})
        require(caps.get("drop") == ["ALL"] and not caps.get("add"), f"capabilities must drop ALL and add none: {caps}")
        require((psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "seccompProfile is not RuntimeDefault")
        require(pod.get("automountServiceAccountToken") is False, "automountServiceAccountToken should be false (the proxy never calls the API)")
        out.append(f"non-root UID {uid} (= image USER), read-only root, no privilege escalation, capabilities drop ALL, RuntimeDefault seccomp, no API token")

        # Resources.
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r_ in ("cpu", "memory"):
                require(r_ in res.get(kind, {}), f"resources.{kind}.{r_} is not set")
        out.append(f"resources requests {res['requests']} limits {res['limits']}")

        # Shutdown timing.
        grace = duration_s(cfg.get("limits", {}).get("shutdown_grace", "30s"))
        pre = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        tgp = pod.get("terminationGracePeriodSeconds", 30)
        require(tgp >= pre + grace + 5, f"terminationGracePeriodSeconds {tgp} < preStop {pre} + shutdown_grace {grace:g} + 5")
        out.append(f"terminationGracePeriodSeconds {tgp} >= preStop sleep {pre} + shutdown_grace {grace:g} + 5")

        # Availability: replicas, rollout, PDB, Services.
        replicas = spec.get("replicas", 1)
        require(replicas >= 2, f"replicas {replicas}: at least 2 behind a load balancer")
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        require(ru.get("maxUnavailable") == 0, "rollingUpdate.maxUnavailable should be 0 (never fewer ready pods during a rollout)")
        sel = spec["selector"]["matchLabels"]
        require(all(labels.get(k) == v for k, v in sel.items()), "Deployment selector does not match its pod labels")
        pdbs = self._by_kind("PodDisruptionBudget")
        require(len(pdbs) == 1, "want one PodDisruptionBudget")
        pdb = pdbs[0]["spec"]
        require(all(labels.get(k) == v for k, v in pdb["selector"]["matchLabels"].items()), "PDB selector does not match the pods")
        require(isinstance(pdb.get("minAvailable"), int) and 1 <= pdb["minAvailable"] < replicas,
                f"PDB minAvailable {pdb.get('minAvailable')} must be >= 1 and < replicas {replicas} (else drains block)")
        services = self._by_kind("Service")
        lb = [s for s in services if s["spec"].get("type") == "LoadBalancer"]
        require(len(lb) == 1, "want one LoadBalancer Service")
        for s in services:
            require(all(labels.get(k) == v for k, v in s["spec"]["selector"].items()), f"Service {s['metadata']['name']} selector does not match the pods")
            for p in s["spec"]["ports"]:
                require(p.get("targetPort") in ports or p.get("targetPort") in ports.values(),
                        f"Service {s['metadata']['name']} targetPort {p.get('targetPort')} is not a container port")
        lbs = lb[0]["spec"]
        require(lbs.get("externalTrafficPolicy") == "Local" or cfg["listen"].get("proxy_protocol"),
                "the LoadBalancer Service must keep client addresses: externalTrafficPolicy: Local, or proxy_protocol in the config")
        require({p["targetPort"] for p in lbs["ports"]} == {"https"}, "the LoadBalancer Service must expose only the https port, never admin")
        out.append(f"replicas {replicas}, maxUnavailable 0, PDB minAvailable {pdb['minAvailable']}; selectors match; "
                   f"LoadBalancer exposes only https with externalTrafficPolicy {lbs.get('externalTrafficPolicy')}")
        return out

    def _dockerfile_uid(self) -> int:
        ins = dockerfile(DOCKERFILE)
        users = [a for n, x, a in ins if x == "USER"]
        require(users, "Dockerfile has no USER")
        return int(users[-1].split(":")[0])

    def _documented_secret_keys(self) -> dict[str, list[set[str]]]:
        """Secret name -> the keys of each `kubectl create secret` command for it in docs/running.md
        (each command replaces the whole Secret, so each must hold every key the config reads)."""
        keys: dict[str, list[set[str]]] = {}
        for b in code_blocks(DOCS / "running.md"):
            if b.lang != "sh":
                continue
            text = re.sub(r"\\\n", " ", b.text)
            for line in text.splitlines():
                m = re.search(r"create secret (tls|generic) ([\w.-]+)(.*)", line)
                if not m:
                    continue
                kind, name, rest = m.groups()
                s: set[str] = set()
                keys.setdefault(name, []).append(s)
                if kind == "tls":
                    s |= {"tls.crt", "tls.key"}
                for f in re.findall(r"--from-file=(\S+)", rest):
                    s.add(f.split("=", 1)[0] if "=" in f else Path(f).name)
        return keys

    # -- coverage ---------------------------------------------------------------------------------

    def c_coverage(self):
        files = sorted(rel(p).removeprefix("deploy/") for p in DEPLOY.rglob("*") if p.is_file())
        unchecked = [f for f in files if f not in COVERED]
        require(not unchecked, f"files under deploy/ that no check covers: {', '.join(unchecked)} (add a check and list it in COVERED)")
        gone = [f for f in COVERED if f not in files]
        require(not gone, f"COVERED lists files that do not exist: {', '.join(gone)}")
        return [f"{len(files)} files under deploy/, each covered: " + "; ".join(f"{f} ({c})" for f, c in COVERED.items())]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bin", required=True, type=Path, help="the scim-proxy binary to check configs with")
    a = ap.parse_args()
    require_bin = a.bin.resolve()
    if not require_bin.is_file():
        print(f"FAIL: {a.bin} does not exist (build it first)")
        return 1
    with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmp:
        c = Checker(require_bin, Path(tmp))
        for name, fn in (
            ("cli", c.c_cli),
            ("configs", c.c_configs),
            ("cli-usage", c.c_cli_usage),
            ("doc-links", c.c_links),
            ("doc-shell", c.c_shell),
            ("doc-yaml", c.c_doc_yaml),
            ("doc-ini", c.c_doc_ini),
            ("systemd-verify", c.c_systemd_verify),
            ("systemd-security", c.c_systemd_security),
            ("systemd-rules", c.c_systemd_rules),
            ("dockerfile-hadolint", c.c_dockerfile_hadolint),
            ("dockerfile-rules", c.c_dockerfile_rules),
            ("docker-context", c.c_docker_context),
            ("binary-runtime", c.c_binary_runtime),
            ("k8s-schema", c.c_k8s_schema),
            ("k8s-kustomization", c.c_k8s_kustomization),
            ("k8s-consistency", c.c_k8s_consistency),
            ("coverage", c.c_coverage),
        ):
            c.check(name, fn)
        print(f"\ncheck-deploy: {c.passed} passed, {c.failed} failed")
        return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
