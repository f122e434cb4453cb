"""
The README runs: its walk-throughs are executed here, so they cannot drift
from the code, and it reads correctly where it is also published (the
package index, which knows nothing of this repository).

How README.md is read:

  - Every fenced block names its kind after the opening fence: C{python},
    C{console}, C{sh} or C{text}.  A fence without one is an error, so no new
    block escapes by accident.
  - C{python}: the block is one program.  It runs in a fresh directory with
    this test's Python (the project's virtualenv), must exit 0 with nothing
    on stderr (so no deprecation warning either), and print what the next
    block says: a C{text} block marked C{<!-- readme-test: output -->} on
    the line before its fence.  Every python block that runs has one.
  - C{console}: a shell session.  Each C{$ } line is a command, the lines up
    to the next C{$ } line its output (stdout and stderr, as a terminal shows
    them).  The commands run in order in one non-interactive bash, in a fresh
    directory, with the virtualenv's C{bin} first on C{PATH}; each must end
    with status 0 (a session shows a failure with C{|| echo "exit status $?"}).
    A command ending in C{&} runs in the background; its output is the lines
    it prints before the next command is typed.  The session's directory is
    shown as C{/tmp/demo} (L{SHOWN_DIRECTORY}).
  - C{sh}: commands shown without their output; never run, so each carries a
    skip marker.
  - C{text}: output, diagrams and messages; never run.
  - C{<!-- readme-test: skip (REASON) -->} on the line before a fence: the
    block is not run.  L{SKIPPED} lists every skipped block by section and
    reason, and the README must have exactly those.

Outputs are compared line by line, exactly, except for what differs from run
to run: 32-character base32 strings (TubIDs, swissnums) and numbers of four
digits or more (ports, process ids) must match consistently -- the same value
in the README stands for the same value in the run throughout a block, and
later commands of a session are run with the values the run printed (the
session pings the FURL that C{serve} printed) -- and decimals such as C{0.1}
or C{1.18} (timings) and C{0.1.0} (versions) match any decimal of that shape.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from twisted.trial.unittest import SynchronousTestCase

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(PROJECT, "README.md")
#: The bound on any one block (or one command of a session); a shared 2-core
#: machine may be running other suites.  Each takes about a second.
WAIT = 30.0
#: The directory a README session shows as its working directory.
SHOWN_DIRECTORY = "/tmp/demo"
KINDS = ("python", "console", "sh", "text")
#: Every block the README does not run: (section, reason).  A new skipped
#: block must be added here, by name.
SKIPPED = [
    ("foolscap-sidetls", "these commands run this README's test"),
    ("Using it", "fragments: the endpoints, the reactor and child.py are yours"),
    ("Tor", "needs a running tor"),
    ("I2P", "needs an I2P router with its SAM bridge"),
    ("Tahoe-LAFS", "runs a Tahoe-LAFS node until it is stopped"),
    ("The plugin cache: when `sidetls:` strings are slow to parse",
     "rewrites the plugin cache of the Python it runs with"),
]
#: The session that shows a failure to reach tor expects nothing to answer there.
TOR_SOCKS_PORTS = (9050, 9150)
#: Where the README says a path of the source tree, it must exist.
SOURCE_PATH = re.compile(r"(?<![\w./-])((?:examples|benchmarks|tests|foolscap_sidetls)/[\w./-]*)")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
#: What varies between runs, in order of precedence: base32 strings of 32
#: characters, then numbers (a dotted quad is an address, kept literally).
VARYING = re.compile(r"(?P<id>(?<![A-Za-z0-9])[a-z2-7]{32}(?![A-Za-z0-9]))|(?P<number>\d+(?:\.\d+)*)")


class ReadmeError(Exception):
    """README.md does not follow the rules in this module's docstring."""


@dataclass
class Block:
    line: int  # of the opening fence, counting from 1
    kind: str
    text: str
    section: str
    skip: Optional[str] = None
    isOutput: bool = False
    output: Optional["Block"] = field(default=None, repr=False)

    def where(self) -> str:
        return "README.md line %d (%s block in %r)" % (self.line, self.kind, self.section)


def parse(text: str) -> list[Block]:
    """The fenced blocks of C{text}, with their markers; L{ReadmeError} if one breaks the rules."""
    blocks: list[Block] = []
    lines = text.split("\n")
    section = ""
    pending: Optional[tuple[int, str]] = None  # a marker waiting for its fence
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        index += 1
        marker = MARKER.match(line)
        if marker:
            if pending is not None:
                raise ReadmeError("README.md line %d: a second marker before a fence" % number)
            pending = (number, marker.group(1))
            continue
        if line.startswith("#"):
            section = line.lstrip("#").strip().strip("`")
        if not line.startswith("```"):
            if line.strip() and pending is not None:
                raise ReadmeError(
                    "README.md line %d: a readme-test marker must be on the line before a fence"
                    % pending[0]
                )
            continue
        kind = line[3:].strip()
        if kind not in KINDS:
            raise ReadmeError(
                "README.md line %d: fenced block of kind %r; expected one of %s"
                % (number, kind, ", ".join(KINDS))
            )
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        if index == len(lines):
            raise ReadmeError("README.md line %d: the block is never closed" % number)
        index += 1
        block = Block(number, kind, "\n".join(body) + "\n", section)
        if pending is not None:
            applyMarker(block, *pending)
            pending = None
        blocks.append(block)
    for previous, block in zip(blocks, blocks[1:]):
        if block.isOutput:
            if previous.kind != "python" or previous.skip is not None:
                raise ReadmeError("%s: an output block must follow a python block that runs"
                                  % block.where())
            previous.output = block
    return blocks


def applyMarker(block: Block, line: int, words: str) -> None:
    skip = re.fullmatch(r"skip \((.+)\)", words)
    if skip:
        if block.kind not in ("python", "console", "sh"):
            raise ReadmeError("README.md line %d: only python, console and sh blocks are skipped" % line)
        block.skip = skip.group(1)
    elif words == "output" and block.kind == "text":
        block.isOutput = True
    else:
        raise ReadmeError(
            "README.md line %d: readme-test marker %r; expected 'skip (REASON)', "
            "or 'output' before a text block" % (line, words)
        )


def readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


# -- comparing output -----------------------------------------------------------------


def pattern(shown: str) -> tuple[str, list[Optional[str]]]:
    """
    A regular expression matching what a run prints for the line C{shown},
    and for each of its groups the shown value it binds (or None: a decimal
    that matches any decimal of its shape).
    """
    parts: list[str] = []
    bound: list[Optional[str]] = []
    position = 0
    for match in VARYING.finditer(shown):
        token = match.group(0)
        pieces = token.split(".")
        number = match.group("number") is not None
        if number and (len(pieces) == 4 or (len(pieces) == 1 and len(token) < 4)):
            continue  # an address or a small count: literal
        parts.append(re.escape(shown[position:match.start()]))
        position = match.end()
        if not number:
            parts.append("([a-z2-7]{32})")
            bound.append(token)
        elif len(pieces) == 1:
            parts.append(r"(\d+)")
            bound.append(token)
        else:
            parts.append(r"(\d+" + r"\.\d+" * (len(pieces) - 1) + ")")
            bound.append(None)
    parts.append(re.escape(shown[position:]))
    return "".join(parts), bound


def compare(shown: list[str], printed: list[str], bindings: dict[str, str]) -> Optional[str]:
    """
    Why C{printed} is not what the README C{shown}, or None; records the
    values that stand for the README's in C{bindings}.
    """
    if len(shown) != len(printed):
        return "%d lines shown, %d printed" % (len(shown), len(printed))
    for number, (expected, actual) in enumerate(zip(shown, printed), 1):
        regex, bound = pattern(expected)
        match = re.fullmatch(regex, actual)
        if match is None:
            return "line %d differs:\n  shown:   %s\n  printed: %s" % (number, expected, actual)
        for token, value in zip(bound, match.groups()):
            if token is None:
                continue
            if bindings.setdefault(token, value) != value:
                return ("line %d: %r stands for %r earlier in the block but for %r here:\n  %s"
                        % (number, token, bindings[token], value, actual))
    return None


def substitute(command: str, bindings: dict[str, str]) -> str:
    """C{command} with the README's varying values replaced by this run's."""
    return VARYING.sub(lambda m: bindings.get(m.group(0), m.group(0)), command)


# -- running --------------------------------------------------------------------------


def scratch(case: SynchronousTestCase) -> str:
    path = tempfile.mkdtemp(prefix="sidetls-readme-test-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Step:
    command: str
    shown: list[str]


def steps(session: str) -> list[Step]:
    result: list[Step] = []
    for line in session.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            result.append(Step(line[2:], []))
        elif not result:
            raise ReadmeError("a console session must start with a '$ ' command line: %r" % (line,))
        else:
            result[-1].shown.append(line)
    return result


class Shell:
    """
    One non-interactive bash, fed a session's commands one by one; its output
    read with a bounded wait, a sentinel line marking each command's end.
    """

    SENTINEL = "--readme-test-status--"

    def __init__(self, case: SynchronousTestCase, directory: str) -> None:
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            cwd=directory,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: background jobs included
        )
        case.addCleanup(self.kill)
        self.pending = b""
        self.selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self.selector.register(self.process.stdout.fileno(), selectors.EVENT_READ)

    def run(self, command: str, lines: int) -> tuple[list[str], Optional[int]]:
        """
        Type C{command}; the lines it printed (at least C{lines}, if they
        come within L{WAIT}) and its exit status (None if it never ended).
        """
        assert self.process.stdin is not None
        self.process.stdin.write(("%s\necho %s $?\n" % (command, self.SENTINEL)).encode())
        self.process.stdin.flush()
        printed: list[str] = []
        status: Optional[int] = None
        deadline = time.monotonic() + WAIT
        while status is None or len(printed) < lines:
            line = self.readline(deadline)
            if line is None:
                break
            if line.startswith(self.SENTINEL + " "):
                status = int(line.split()[-1])
            else:
                printed.append(line)
        return printed, status

    def readline(self, deadline: float) -> Optional[str]:
        assert self.process.stdout is not None
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(timeout=left):
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def finish(self) -> list[str]:
        """Close its input; whatever it printed after the last command."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        rest: list[str] = []
        deadline = time.monotonic() + WAIT
        while (line := self.readline(deadline)) is not None:
            rest.append(line)
        if self.pending:
            rest.append(self.pending.decode("utf-8", "replace"))
        return rest

    def kill(self) -> None:
        if self.process.poll() is None or self.groupAlive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=WAIT)
        self.selector.close()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def groupAlive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True


def runPython(case: SynchronousTestCase, block: Block) -> None:
    directory = scratch(case)
    program = os.path.join(directory, "readme_block.py")
    with open(program, "w", encoding="utf-8") as f:
        f.write(block.text)
    done = subprocess.run(
        [sys.executable, program], cwd=directory, capture_output=True, text=True, timeout=WAIT
    )
    case.assertEqual((done.returncode, done.stderr), (0, ""),
                     "%s failed:\n%s" % (block.where(), done.stderr))
    if block.output is None:
        case.fail("%s runs but shows no output: put a text block marked "
                  "<!-- readme-test: output --> after it" % (block.where(),))
        return
    problem = compare(block.output.text.rstrip("\n").split("\n"), done.stdout.rstrip("\n").split("\n"), {})
    if problem is not None:
        case.fail("%s printed something else (%s):\n%s" % (block.where(), problem, done.stdout))


def runConsole(case: SynchronousTestCase, block: Block) -> None:
    session = steps(block.text)
    if any("could not reach tor's SOCKS port" in line for step in session for line in step.shown):
        busy = [port for port in TOR_SOCKS_PORTS if answers(port)]
        if busy:
            case.skipTest("this session shows that no tor answers, but 127.0.0.1:%d does" % busy[0])
    directory = scratch(case)
    shell = Shell(case, directory)
    bindings: dict[str, str] = {}
    for step in session:
        command = substitute(step.command, bindings)
        shown = [line.replace(SHOWN_DIRECTORY, directory) for line in step.shown]
        printed, status = shell.run(command, len(shown))
        where = "%s, command %r" % (block.where(), step.command)
        case.assertEqual(status, 0, "%s: exit status %r; it printed:\n%s"
                         % (where, status, "\n".join(printed)))
        problem = compare(shown, printed, bindings)
        if problem is not None:
            case.fail("%s: %s\nit printed:\n%s" % (where, problem, "\n".join(printed)))
    case.assertEqual(shell.finish(), [], "%s: more output after the last command" % (block.where(),))


def slug(heading: str) -> str:
    """A heading's in-page anchor, as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


# -- the tests ------------------------------------------------------------------------


class ReadmeRules(SynchronousTestCase):
    """What the README is made of, and what it may refer to."""

    def setUp(self) -> None:
        self.text = readme()
        self.blocks = parse(self.text)

    def test_first_lines(self) -> None:
        """The README still opens with the two commands a fresh clone needs."""
        self.assertEqual(self.text.split("\n")[0], "# foolscap-sidetls")
        first = self.blocks[0]
        self.assertEqual(first.text, "make demo   # creates .venv, installs, runs examples/reverse_listener.py\n"
                                     "make test   # creates .venv, installs, runs the whole test suite\n")

    def test_skipped_blocks(self) -> None:
        """Exactly the blocks listed in SKIPPED are not run, for those reasons."""
        self.assertEqual([(b.section, b.skip) for b in self.blocks if b.skip is not None], SKIPPED)
        self.assertEqual([b.where() for b in self.blocks if b.kind == "sh" and b.skip is None], [])

    def test_blocks_that_run(self) -> None:
        """Each python block that runs has its output beside it; the count guards against losing some."""
        python = [b for b in self.blocks if b.kind == "python" and b.skip is None]
        console = [b for b in self.blocks if b.kind == "console" and b.skip is None]
        self.assertEqual([b.where() for b in python if b.output is None], [])
        self.assertEqual((len(python), len(console)), (4, 3))
        self.assertEqual(len(RUNNABLE), 7)

    def test_first_python_block_is_a_complete_pair(self) -> None:
        """
        The first code a reader meets is a server and a client that run as
        pasted, in under 30 lines, and learns its port without the deprecated
        Listener.getPortnum().
        """
        first = next(b for b in self.blocks if b.kind == "python")
        self.assertEqual((first.section, first.skip), ("Using it", None))
        code = first.text
        self.assertLess(len(code.rstrip("\n").split("\n")), 30)
        for needed in ("task.react(", ".startService()", ".setLocation(", ".listenOn(",
                       "foolscap_sidetls.install(", ".getReference(", ".callRemote("):
            self.assertIn(needed, code)
        for banned in ("getPortnum", "tcp:0"):
            self.assertNotIn(banned, code)

    def test_links_work_on_the_package_index(self) -> None:
        """
        The index shows the README without this repository: links are
        absolute, or anchors of this page; no path leaves the project; the
        source-tree paths it names exist.
        """
        prose = re.sub(r"^```.*?^```", "", self.text, flags=re.S | re.M)
        spans = re.findall(r"`([^`\n]+)`", prose)
        prose = re.sub(r"`[^`\n]+`", "", prose)
        targets = LINK.findall(prose) + REFERENCE.findall(prose) + HTML_LINK.findall(prose)
        anchors = {slug(line.lstrip("#").strip()) for line in self.text.split("\n") if line.startswith("#")}
        relative = [t for t in targets
                    if not re.match(r"https?://", t) and not (t.startswith("#") and t[1:] in anchors)]
        self.assertEqual(relative, [])
        outside = [line for line in self.text.split("\n") if "../" in line or "shared/seeds" in line]
        self.assertEqual(outside, [])
        missing = [path for span in spans for path in SOURCE_PATH.findall(span)
                   if not os.path.exists(os.path.join(PROJECT, path.rstrip(".")))]
        self.assertEqual(missing, [])

    def test_relay_design_cites_public_sources(self) -> None:
        """The relay's design is credited to sources a reader can find."""
        cited = [words for words in ("Foolscap ticket 46", '"SSL + AMP"', "Twisted-Python")
                 if words in self.text]
        self.assertEqual(cited, ["Foolscap ticket 46", '"SSL + AMP"', "Twisted-Python"])


class ParserTests(SynchronousTestCase):
    """The rules themselves: a block cannot slip past them."""

    def test_fence_without_kind(self) -> None:
        e = self.assertRaises(ReadmeError, parse, "# x\n\n```\nprint(1)\n```\n")
        self.assertEqual(str(e), "README.md line 3: fenced block of kind ''; "
                                 "expected one of python, console, sh, text")

    def test_unknown_marker(self) -> None:
        e = self.assertRaises(ReadmeError, parse, "<!-- readme-test: skp (x) -->\n```python\n```\n")
        self.assertIn("readme-test marker 'skp (x)'; expected 'skip (REASON)'", str(e))

    def test_marker_away_from_its_fence(self) -> None:
        e = self.assertRaises(ReadmeError, parse, "<!-- readme-test: output -->\nwords\n```text\n```\n")
        self.assertEqual(str(e), "README.md line 1: a readme-test marker must be on the line before a fence")

    def test_output_after_a_skipped_block(self) -> None:
        text = ("<!-- readme-test: skip (no) -->\n```python\nx\n```\n"
                "<!-- readme-test: output -->\n```text\n1\n```\n")
        e = self.assertRaises(ReadmeError, parse, text)
        self.assertIn("an output block must follow a python block that runs", str(e))

    def test_varying_values(self) -> None:
        bindings: dict[str, str] = {}
        tub = "tldbypouqk4akogyinosd6tlwuxvwpn3"
        other = "o4eujw2pcykrjab6raodkpbovf27zymm"
        shown = ["furl: pb://%s@tcp:127.0.0.1:46095/x (0.1 s, 3 of 3, v0.1.0)" % tub]
        printed = ["furl: pb://%s@tcp:127.0.0.1:38929/x (12.5 s, 3 of 3, v0.2.0)" % other]
        self.assertIsNone(compare(shown, printed, bindings))
        self.assertEqual(bindings, {tub: other, "46095": "38929"})
        self.assertEqual(substitute("ping pb://%s@tcp:127.0.0.1:46095/x" % tub, bindings),
                         "ping pb://%s@tcp:127.0.0.1:38929/x" % other)
        # Small counts and addresses are literal; a bound value stays bound.
        self.assertIn("differs", compare(["3 of 3"], ["2 of 3"], {}) or "")
        self.assertIn("differs", compare(["tcp:127.0.0.1:1"], ["tcp:127.0.0.2:1"], {}) or "")
        self.assertIn("stands for '38929'", compare(["port 46095"], ["port 1234"], bindings) or "")
        self.assertEqual(compare(["a"], ["a", "b"], {}), "1 lines shown, 2 printed")


def _parsed() -> tuple[list[Block], Optional[str]]:
    try:
        return parse(readme()), None
    except ReadmeError as e:
        return [], str(e)


BLOCKS, PARSE_ERROR = _parsed()
RUNNABLE = [b for b in BLOCKS if b.kind in ("python", "console") and b.skip is None]


class ReadmeRuns(SynchronousTestCase):
    """Each python block and console session of the README, run; one test per block (added below)."""

    def test_readme_parses(self) -> None:
        self.assertIsNone(PARSE_ERROR)


def _addBlockTests() -> None:
    seen: dict[str, int] = {}
    for block in RUNNABLE:
        base = "test_%s_%s" % (block.kind, re.sub(r"\W+", "_", block.section.lower()).strip("_"))
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else "%s_%d" % (base, seen[base])
        runner: Callable[[SynchronousTestCase, Block], None] = (
            runPython if block.kind == "python" else runConsole
        )

        def test(self: SynchronousTestCase, block: Block = block, runner: Any = runner) -> None:
            runner(self, block)

        test.__name__ = name
        test.__doc__ = "%s runs as shown." % (block.where(),)
        setattr(ReadmeRuns, name, test)


_addBlockTests()
