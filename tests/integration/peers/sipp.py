"""SIPp (Debian ``sip-tester`` 3.6.1) as a child process: callers, agents, responders.

`SippProcess` builds one ``sipp`` command line, runs it in the foreground as
a child (``-nostdin``, stdin from /dev/null), and reads what SIPp leaves
behind: its exit status (0 every call succeeded, 1 some failed), the
statistics CSV (``-trace_stat``), the error log (``-trace_err``) and the
message log (``-trace_msg``). A failure raises `SippError` with all of that
in the message, so a failing test says which scenario step went wrong.

The builders (`SippProcess.caller`, `SippProcess.agent`, `SippProcess.uas`)
know each scenario's variables; see the header of every file in
``tests/integration/scenarios`` for the command line it expects.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Self

from . import PeerError, stop_process, wait_for
from .ports import LOOPBACK, free_port_block, free_udp_port, is_bound

__all__ = [
    "PCAP_DIR",
    "SCENARIO_DIR",
    "SippError",
    "SippMessage",
    "SippProcess",
    "SippResult",
    "SippStats",
    "render_digits",
    "scenario_globals",
    "scenario_path",
]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
#: Where Debian's sip-tester installs its RTP captures.
PCAP_DIR = Path("/usr/share/sip-tester")
SIPP = "sipp"

#: RFC 4733 §3.2 event names of the DTMF captures shipped with SIPp.
_DTMF_FILE_NAMES = {**{d: d for d in "0123456789"}, "*": "star", "#": "pound"}
_DTMF_BLOCK = re.compile(r"(?P<indent>[ \t]*)<!-- DTMF-BEGIN.*?<!-- DTMF-END -->", re.DOTALL)
_GLOBALS = re.compile(r"<Global\s+variables\s*=\s*\"([^\"]*)\"")

#: SIPp's exit codes (sipp -h), for messages.
_EXIT_CODES = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    253: "fatal error (-3)",
    254: "fatal error binding a socket (-2)",
    255: "fatal error, or -timeout reached with -timeout_error (-1)",
}

_names = itertools.count(1)


class SippError(PeerError):
    """SIPp exited with a failure, or did not finish in time."""


def scenario_path(name: str) -> Path:
    """A scenario of ``tests/integration/scenarios`` by file name."""
    path = SCENARIO_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no SIPp scenario {name!r} in {SCENARIO_DIR}")
    return path


def scenario_globals(path: Path) -> set[str]:
    """The global variables a scenario declares (``<Global variables="a,b"/>``).

    SIPp 3.6.1 refuses ``-set`` for a variable no loaded scenario declares
    ("Can not set the global variable ..., because it does not exist").
    """
    names: set[str] = set()
    for declared in _GLOBALS.findall(path.read_text(encoding="latin-1")):
        names.update(n.strip() for n in declared.split(",") if n.strip())
    return names


def render_digits(template: Path, digits: str, out_dir: Path, *, gap_ms: int = 300) -> Path:
    """A copy of ``template`` whose DTMF block plays ``digits``, one capture each.

    SIPp opens ``play_pcap_audio`` files when it loads a scenario, so a
    variable cannot choose the digit; the block between the DTMF markers is
    rewritten instead. Each capture lasts 140 ms and a new play cancels the
    one still running, hence the gap after each key.

    The captures of one key are identical every time (same SSRC, sequence
    numbers and RTP timestamp), so a key repeated in ``digits`` would look
    like a retransmission of the first (RFC 4733 §2.5.1.3): refused.
    """
    if not digits:
        raise ValueError("at least one digit is needed")
    unknown = sorted(set(digits) - _DTMF_FILE_NAMES.keys())
    if unknown:
        raise ValueError(f"no DTMF capture for {unknown}: SIPp ships 0-9, * and #")
    if len(set(digits)) != len(digits):
        raise ValueError(
            f"digits {digits!r} repeat a key: SIPp's captures of one key are byte-identical, "
            "so a receiver would take the repeat for a retransmission"
        )
    if gap_ms < 200:
        raise ValueError(f"gap_ms {gap_ms} is shorter than a DTMF capture (140 ms) plus margin")
    source = template.read_text(encoding="latin-1")
    match = _DTMF_BLOCK.search(source)
    if match is None:
        raise ValueError(f"{template.name} has no DTMF-BEGIN/DTMF-END block")
    indent = match.group("indent")
    plays = [f"{indent}<!-- DTMF-BEGIN: keys {digits} -->"]
    for i, digit in enumerate(digits):
        pcap = PCAP_DIR / f"dtmf_2833_{_DTMF_FILE_NAMES[digit]}.pcap"
        # After the last key only long enough for its capture to finish.
        pause = gap_ms if i < len(digits) - 1 else min(gap_ms, 300)
        plays += [
            f"{indent}<nop>",
            f"{indent}  <action>",
            f'{indent}    <exec play_pcap_audio="{pcap}" />',
            f"{indent}  </action>",
            f"{indent}</nop>",
            f'{indent}<pause milliseconds="{pause}" />',
        ]
    plays.append(f"{indent}<!-- DTMF-END -->")
    rendered = source[: match.start()] + "\n".join(plays) + source[match.end() :]
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / template.name
    out.write_text(rendered, encoding="latin-1")
    return out


@dataclass(frozen=True, slots=True)
class SippStats:
    """Cumulative call counters at SIPp's exit."""

    created: int
    successful: int
    failed: int
    #: Non-zero cumulative failure counters by name, e.g. FailedMaxUDPRetrans.
    failures: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_csv(cls, path: Path) -> SippStats | None:
        """Read the last row of a ``-trace_stat`` file (``;``-separated)."""
        try:
            with path.open(newline="", encoding="latin-1") as stream:
                rows = list(csv.reader(stream, delimiter=";"))
        except OSError:
            return None
        if len(rows) < 2:
            return None
        header, last = rows[0], rows[-1]
        values = dict(zip(header, last, strict=False))

        def count(name: str) -> int:
            try:
                return int(values.get(name, "0") or 0)
            except ValueError:
                return 0

        failures = {
            name.removesuffix("(C)"): count(name)
            for name in header
            if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)"
        }
        return cls(
            created=count("TotalCallCreated"),
            successful=count("SuccessfulCall(C)"),
            failed=count("FailedCall(C)"),
            failures={name: n for name, n in failures.items() if n},
        )

    @classmethod
    def from_screen(cls, text: str) -> SippStats | None:
        """Read the final statistics screen SIPp prints on stdout."""

        def cumulative(label: str) -> int | None:
            found = re.findall(rf"^\s*{label}\s*\|[^|\n]*\|\s*(\d+)", text, re.MULTILINE)
            return int(found[-1]) if found else None

        successful = cumulative("Successful call")
        failed = cumulative("Failed call")
        if successful is None or failed is None:
            return None
        created = re.findall(r"^\s*Total Calls created\s*\|[^|\n]*\|\s*(\d+)", text, re.MULTILINE)
        return cls(
            created=int(created[-1]) if created else successful + failed,
            successful=successful,
            failed=failed,
        )


@dataclass(frozen=True, slots=True)
class SippMessage:
    """One SIP message from SIPp's ``-trace_msg`` log."""

    sent: bool
    text: str
    at: float | None = None
    """When SIPp logged it (seconds since the epoch), from the log entry's header."""

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        """The status code of a response, None for a request."""
        if not self.is_response:
            return None
        return int(self.first_line.split()[1])

    @property
    def method(self) -> str:
        """The request's method, or for a response the method of its CSeq."""
        if not self.is_response:
            return self.first_line.split(" ", 1)[0]
        cseq = self.header("CSeq")
        return cseq.split()[-1] if cseq else ""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), if present."""
        prefix = name.lower() + ":"
        for line in self.text.split("\n")[1:]:
            if not line.strip():
                return None
            if line.lower().startswith(prefix):
                return line[len(prefix) :].strip()
        return None


_LOG_ENTRY = re.compile(
    r"^-{20,} (?P<when>[^\n]*)\n\w+ message (?P<dir>sent|received) [^\n]*\n\n", re.MULTILINE
)


def _log_time(when: str) -> float | None:
    """SIPp's ``YYYY-MM-DD HH:MM:SS.ffffff`` (local time) as seconds since the epoch."""
    try:
        return datetime.strptime(" ".join(when.split()), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def _parse_message_log(text: str) -> list[SippMessage]:
    starts = list(_LOG_ENTRY.finditer(text))
    messages = []
    for entry, following in itertools.zip_longest(starts, starts[1:]):
        end = following.start() if following is not None else len(text)
        body = text[entry.end() : end].replace("\r\n", "\n").strip("\n")
        messages.append(
            SippMessage(
                sent=entry.group("dir") == "sent", text=body, at=_log_time(entry.group("when"))
            )
        )
    return messages


@dataclass(frozen=True, slots=True)
class SippResult:
    """How a SIPp run ended."""

    name: str
    returncode: int
    stats: SippStats | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(encoding="latin-1", errors="replace")
    except OSError:
        return ""
    return text if len(text) <= limit else "…" + text[-limit:]


class SippProcess:
    """One ``sipp`` run on 127.0.0.1, owned by the test that starts it.

    ``scenario`` is a scenario file (see `scenario_path`) or, with
    ``builtin=True``, the name of a scenario embedded in SIPp (``uas``).
    ``remote`` is ``host:port`` for client scenarios. ``keys`` become
    ``-key name value`` (text in messages: ``[name]``), ``variables`` become
    ``-set name value`` (global variables: ``[$name]``, and every name must be
    declared by the scenario or the out-of-call scenario).

    All files go to ``workdir``: ``NAME.out`` (SIPp's screen, its stdout),
    ``NAME.err`` (stderr), ``NAME_errors.log``, ``NAME_messages.log`` and
    ``NAME_stats.csv``.
    """

    def __init__(
        self,
        scenario: Path | str,
        *,
        workdir: Path,
        remote: str | None = None,
        name: str | None = None,
        builtin: bool = False,
        ooc_scenario: Path | None = None,
        local_port: int | None = None,
        media_port: int | None = None,
        service: str | None = None,
        auth_user: str | None = None,
        auth_password: str | None = None,
        keys: Mapping[str, str | int] | None = None,
        variables: Mapping[str, str | int] | None = None,
        calls: int | None = 1,
        limit: int | None = None,
        rate: float | None = None,
        timeout: float = 30.0,
        rtp_echo: bool = False,
        trace_msg: bool = True,
        default_behaviors: str | None = None,
        extra_args: Sequence[str] = (),
        local_ip: str = LOOPBACK,
    ) -> None:
        self.scenario = scenario
        self.local_ip = local_ip
        self.builtin = builtin
        self.ooc_scenario = ooc_scenario
        scenario_label = str(scenario) if builtin else Path(scenario).stem
        self.name = name or f"{scenario_label}-{next(_names)}"
        self.workdir = workdir
        self.remote = remote
        self.local_port = local_port if local_port is not None else free_udp_port()
        self.media_port = media_port if media_port is not None else free_port_block(4)
        self.control_port = free_udp_port()
        self.service = service
        self.auth_user = auth_user
        self.auth_password = auth_password
        self.keys = dict(keys or {})
        self.variables = dict(variables or {})
        self.calls = calls
        self.limit = limit
        self.rate = rate
        self.timeout = timeout
        self.rtp_echo = rtp_echo
        self.trace_msg = trace_msg
        self.default_behaviors = default_behaviors
        self.extra_args = list(extra_args)
        self._process: asyncio.subprocess.Process | None = None
        self._check_variables()

    # -- files -------------------------------------------------------------

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"{self.name}.out"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"{self.name}.err"

    @property
    def error_log(self) -> Path:
        return self.workdir / f"{self.name}_errors.log"

    @property
    def message_log(self) -> Path:
        return self.workdir / f"{self.name}_messages.log"

    @property
    def stats_path(self) -> Path:
        return self.workdir / f"{self.name}_stats.csv"

    @property
    def contact(self) -> str:
        """``host:port`` where this SIPp receives SIP."""
        return f"{self.local_ip}:{self.local_port}"

    # -- command line --------------------------------------------------------

    def _check_variables(self) -> None:
        if self.builtin or not self.variables:
            return
        declared = scenario_globals(Path(self.scenario))
        if self.ooc_scenario is not None:
            declared |= scenario_globals(self.ooc_scenario)
        unknown = sorted(set(self.variables) - declared)
        if unknown:
            raise ValueError(
                f"{self.name}: -set {unknown} not declared by the scenario "
                f"(declared: {sorted(declared)}); SIPp would refuse to start"
            )

    @property
    def command(self) -> list[str]:
        """The full ``sipp`` command line."""
        cmd = [SIPP]
        if self.remote is not None:
            cmd.append(self.remote)
        if self.builtin:
            cmd += ["-sn", str(self.scenario)]
        else:
            cmd += ["-sf", str(self.scenario)]
        if self.ooc_scenario is not None:
            cmd += ["-oocsf", str(self.ooc_scenario)]
        cmd += [
            "-nostdin",
            "-i", self.local_ip,
            "-p", str(self.local_port),
            "-mi", self.local_ip,
            "-mp", str(self.media_port),
            # The control socket (-cp) binds 0.0.0.0:8888 or the next free port by default.
            "-ci", LOOPBACK,
            "-cp", str(self.control_port),
            "-timeout", f"{self.timeout:g}s",
            "-timeout_error",
            "-trace_err", "-error_file", str(self.error_log),
            "-trace_stat", "-stf", str(self.stats_path),
        ]  # fmt: skip
        if self.trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self.message_log)]
        if self.calls is not None:
            cmd += ["-m", str(self.calls)]
        if self.limit is not None:
            cmd += ["-l", str(self.limit)]
        if self.rate is not None:
            cmd += ["-r", f"{self.rate:g}"]
        if self.service is not None:
            cmd += ["-s", self.service]
        if self.auth_user is not None:
            cmd += ["-au", self.auth_user]
        if self.auth_password is not None:
            cmd += ["-ap", self.auth_password]
        if self.rtp_echo:
            cmd.append("-rtp_echo")
        if self.default_behaviors is not None:
            cmd += ["-default_behaviors", self.default_behaviors]
        for key, value in self.keys.items():
            cmd += ["-key", key, str(value)]
        for variable, value in self.variables.items():
            cmd += ["-set", variable, str(value)]
        return cmd + self.extra_args

    # -- life cycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"{self.name} already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.workdir,
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until SIPp listens on its SIP port (and its echo port with -rtp_echo)."""
        process = self._require_process()
        ports = [self.local_port] + ([self.media_port] if self.rtp_echo else [])

        def ready() -> bool:
            if process.returncode is not None:
                raise SippError(f"{self.name} exited before listening\n{self.diagnostics()}")
            return is_bound(ports)

        await wait_for(ready, timeout, f"{self.name} to bind {ports}", diagnose=self.diagnostics)

    async def wait(self, timeout: float | None = None, *, check: bool = True) -> SippResult:
        """Wait for SIPp to exit; raise `SippError` on a failure when ``check``.

        ``timeout`` defaults to SIPp's own ``-timeout`` plus five seconds.
        """
        process = self._require_process()
        limit = self.timeout + 5.0 if timeout is None else timeout
        try:
            returncode = await asyncio.wait_for(process.wait(), limit)
        except TimeoutError:
            await self.stop()
            raise SippError(
                f"{self.name} still running after {limit:.1f} s\n{self.diagnostics()}"
            ) from None
        result = self.result(returncode)
        if check and not result.ok:
            raise SippError(f"{self.name} failed\n{self.diagnostics()}")
        return result

    async def stop(self, timeout: float = 3.0) -> int | None:
        """Stop SIPp (SIGTERM, which still writes the statistics; SIGKILL after ``timeout``)."""
        if self._process is None:
            return None
        return await stop_process(self._process, timeout=timeout)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _require_process(self) -> asyncio.subprocess.Process:
        if self._process is None:
            raise RuntimeError(f"{self.name} not started")
        return self._process

    # -- results ---------------------------------------------------------------

    def stats(self) -> SippStats | None:
        """Final counters: the statistics CSV, else the screen on stdout."""
        return SippStats.from_csv(self.stats_path) or SippStats.from_screen(_tail(self.stdout_path))

    def result(self, returncode: int) -> SippResult:
        return SippResult(name=self.name, returncode=returncode, stats=self.stats())

    def messages(self) -> list[SippMessage]:
        """Every SIP message SIPp sent or received so far (``-trace_msg``)."""
        try:
            text = self.message_log.read_text(encoding="latin-1", errors="replace")
        except OSError:
            return []
        return _parse_message_log(text)

    def diagnostics(self) -> str:
        """Everything useful to explain a failure, for exception messages."""
        returncode = self._process.returncode if self._process is not None else None
        meaning = _EXIT_CODES.get(returncode, "") if returncode is not None else "running"
        parts = [
            f"command: {' '.join(self.command)}",
            f"exit status: {returncode} ({meaning})",
            f"statistics: {self.stats()}",
        ]
        for label, path, limit in (
            ("stderr", self.stderr_path, 2000),
            ("error log", self.error_log, 4000),
            ("screen", self.stdout_path, 3500),
        ):
            text = _tail(path, limit).strip()
            if text:
                parts.append(f"--- {label} ({path}) ---\n{text}")
        return "\n".join(parts)

    # -- builders ---------------------------------------------------------------

    @classmethod
    def caller(
        cls,
        target: str,
        workdir: Path,
        *,
        service: str = "5000",
        caller_id: str = "0600000001",
        digits: str = "1",
        greet_ms: int = 2500,
        talk_ms: int = 3000,
        wait_bye: bool = False,
        timeout: float = 30.0,
        name: str | None = None,
        local_ip: str = LOOPBACK,
        gap_ms: int = 300,
    ) -> SippProcess:
        """A caller dialling ``service`` at ``target`` (caller_dtmf.xml or caller_wait_bye.xml).

        It listens ``greet_ms``, presses ``digits`` (RFC 4733), plays
        g711a.pcap as its voice, then hangs up after ``talk_ms`` or, with
        ``wait_bye``, waits for the far end's BYE.
        """
        template = scenario_path("caller_wait_bye.xml" if wait_bye else "caller_dtmf.xml")
        name = name or f"{template.stem}-{next(_names)}"
        scenario = render_digits(template, digits, workdir / f"{name}.scenario", gap_ms=gap_ms)
        variables: dict[str, str | int] = {"greet_ms": greet_ms}
        if not wait_bye:
            variables["talk_ms"] = talk_ms
        return cls(
            scenario,
            workdir=workdir,
            remote=target,
            name=name,
            service=service,
            keys={"caller": caller_id},
            variables=variables,
            timeout=timeout,
            local_ip=local_ip,
        )

    @classmethod
    def agent(
        cls,
        registrar: str,
        workdir: Path,
        *,
        extension: str = "1001",
        password: str = "agent1001pw",
        behaviour: Literal["answer", "answer_hangup", "noanswer"] = "answer",
        ring_ms: int = 500,
        talk_ms: int = 3000,
        wait_ms: int = 20000,
        expect_call: bool = True,
        expires: int = 300,
        timeout: float | None = None,
        name: str | None = None,
    ) -> SippProcess:
        """An agent phone: registers ``extension`` at ``registrar`` (agent_register.xml),
        handles one call with agent_<behaviour>.xml, then unregisters.

        The call scenario runs out of call (``-oocsf``): the platform's INVITE
        has its own Call-ID, which SIPp would otherwise discard.
        """
        ooc = scenario_path(f"agent_{behaviour}.xml")
        variables: dict[str, str | int] = {
            "wait_ms": wait_ms,
            "expect_call": int(expect_call),
        }
        if behaviour != "noanswer":
            variables["ring_ms"] = ring_ms
        if behaviour == "answer_hangup":
            variables["talk_ms"] = talk_ms
        return cls(
            scenario_path("agent_register.xml"),
            workdir=workdir,
            remote=registrar,
            name=name or f"agent{extension}-{behaviour}-{next(_names)}",
            ooc_scenario=ooc,
            service=extension,
            auth_user=extension,
            auth_password=password,
            keys={"expires": expires},
            variables=variables,
            timeout=timeout if timeout is not None else wait_ms / 1000 + 15,
            # An aborted REGISTER dialog must not end with a stray BYE.
            default_behaviors="all,-bye",
        )

    @classmethod
    def uas(
        cls,
        workdir: Path,
        *,
        rtp_echo: bool = True,
        calls: int | None = 1,
        timeout: float = 30.0,
        name: str | None = None,
        local_ip: str = LOOPBACK,
    ) -> SippProcess:
        """SIPp's built-in UAS (``-sn uas``): 180, 200 (PCMU SDP), waits for BYE.

        With ``rtp_echo`` it sends every RTP packet it receives back to its
        sender, so one caller sees media in both directions. After the BYE
        it lingers 4 s (``timewait``) before counting the call done.
        ``local_ip="127.0.0.2"`` makes it the demo carrier.
        """
        return cls(
            "uas",
            builtin=True,
            workdir=workdir,
            name=name or f"uas-{next(_names)}",
            calls=calls,
            timeout=timeout,
            rtp_echo=rtp_echo,
            local_ip=local_ip,
        )

    async def wait_registered(self, timeout: float = 5.0) -> SippMessage:
        """Wait until the message log shows a 200 to an authenticated REGISTER.

        For agent runs; needs ``trace_msg`` (on by default). Returns the 200.
        """
        process = self._require_process()

        def registered() -> SippMessage | None:
            for message in self.messages():
                # The first 200 to a REGISTER is the registration; the
                # unregistration's comes after it.
                if not message.sent and message.status == 200 and message.method == "REGISTER":
                    return message
            if process.returncode is not None:
                raise SippError(f"{self.name} exited before registering\n{self.diagnostics()}")
            return None

        return await wait_for(
            registered, timeout, f"{self.name} to register", diagnose=self.diagnostics
        )
