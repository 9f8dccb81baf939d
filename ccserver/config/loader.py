"""Read a config directory into a :class:`Config`, or say precisely why not.

Each TOML file is parsed and validated on its own, so one broken file does
not hide the problems in the others; references between files are checked
afterwards, skipping those that point into a file that already failed (an
"unknown queue" caused by a syntax error in ``queues.toml`` is noise).
Every problem is reported at once as ``file: key.path: reason``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import tomllib
import wave
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import Field, TypeAdapter, ValidationError

from ccserver.config.flows import (
    BUILTIN_VARIABLES,
    Flow,
    FlowDefaults,
    Node,
    SurveyNode,
    flow_refs,
    node_targets,
    node_templates,
    template_names,
    variables_set,
)
from ccserver.config.messages import (
    _pydantic_problems,
    _reason,
    _toml_reason,
    _toml_type,
    _unknown_key,
)
from ccserver.config.schema import (
    AcdConfig,
    AmiConfig,
    ApiConfig,
    Config,
    ConsoleConfig,
    ConsoleUser,
    CtiConfig,
    DatabaseConfig,
    Did,
    DidNumber,
    Extension,
    ExtensionNumber,
    KnowledgeArticle,
    Language,
    MediaConfig,
    Name,
    Queue,
    ServerConfig,
    SpeechConfig,
    StateConfig,
    Trunk,
    TtsConfig,
    WebhooksConfig,
    _Model,
)

__all__ = [
    "ENV_VAR",
    "ConfigError",
    "ConfigErrors",
    "apply_overrides",
    "default_config_dir",
    "load_config",
    "shipped_config_dir",
]

ENV_VAR = "CCSERVER_CONFIG"
"""Names the config directory used when none is given."""

COMMAND_LINE = "<command line>"
"""The ``file`` of errors caused by command-line overrides."""


class ConfigError(Exception):
    """A config that must not start: names the file, the key path and the reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file = file
        self.key = key
        self.reason = reason

    @property
    def errors(self) -> list[ConfigError]:
        """Every problem carried; one here, several in :class:`ConfigErrors`."""
        return [self]


class ConfigErrors(ConfigError):
    """Several problems found in one pass; ``str()`` gives one per line.

    ``file``, ``key`` and ``reason`` are the first problem's, so code that
    handles a single :class:`ConfigError` still gets something precise.
    """

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = errors[0]
        super().__init__(first.file, first.key, first.reason)
        self.args = ("\n".join(str(error) for error in errors),)
        self._errors = list(errors)

    @property
    def errors(self) -> list[ConfigError]:
        return list(self._errors)


def _combined(errors: Sequence[ConfigError]) -> ConfigError:
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)


def _raise_all(errors: Sequence[ConfigError]) -> None:
    if errors:
        raise _combined(errors)


# ------------------------------------------------------------ where configs live


def shipped_config_dir() -> Path:
    """The demo config in the source tree (``<repo>/config``)."""
    return Path(__file__).resolve().parents[2] / "config"


def default_config_dir() -> Path:
    """The directory used when none is given: ``$CCSERVER_CONFIG``, else the shipped demo."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    return shipped_config_dir()


# ------------------------------------------------------------- file layout

SERVER_FILE = "ccserver.toml"
FLOWS_DIR = "flows"

_T = TypeVar("_T")


def _toml_files(directory: Path) -> list[Path]:
    """The ``*.toml`` files of a directory, without hidden ones (editor locks, backups)."""
    return sorted(path for path in directory.glob("*.toml") if not path.name.startswith("."))


def _file_rank(relative: str | Path) -> tuple[int, str]:
    """Sort key for reports: stray files, then the area files in a fixed order, then flows."""
    path = Path(relative)
    if path.name in _AREA_FILES and len(path.parts) == 1:
        return (1 + _AREA_FILES.index(path.name), "")
    if path.parts[0] == FLOWS_DIR and len(path.parts) > 1:
        return (1 + len(_AREA_FILES), path.name)
    return (0, str(path))


@dataclass(frozen=True)
class _Schema(Generic[_T]):
    """A validator and the type it validates, which error messages walk to name keys."""

    root: Any
    adapter: TypeAdapter[_T]

    @classmethod
    def of(cls, root: type[_T]) -> _Schema[_T]:
        return cls(root, TypeAdapter(root))


_SECTIONS: dict[str, _Schema[Any]] = {
    "server": _Schema.of(ServerConfig),
    "database": _Schema.of(DatabaseConfig),
    "state": _Schema.of(StateConfig),
    "cti": _Schema.of(CtiConfig),
    "speech": _Schema.of(SpeechConfig),
    "media": _Schema.of(MediaConfig),
    "tts": _Schema.of(TtsConfig),
    "acd": _Schema.of(AcdConfig),
    "api": _Schema.of(ApiConfig),
    "ami": _Schema.of(AmiConfig),
    "webhooks": _Schema.of(WebhooksConfig),
    "console": _Schema.of(ConsoleConfig),
}


@dataclass(frozen=True)
class _TableFile:
    """A file holding one table of named entries, e.g. ``[queues.<name>]``."""

    file: str
    table: str
    key: TypeAdapter[str]
    entry: _Schema[Any]


_NAME: TypeAdapter[str] = TypeAdapter(Name)
_EXTENSIONS = _TableFile(
    "extensions.toml", "extensions", TypeAdapter(ExtensionNumber), _Schema.of(Extension)
)
_TRUNKS = _TableFile("trunks.toml", "trunks", _NAME, _Schema.of(Trunk))
_DIDS = _TableFile("dids.toml", "dids", TypeAdapter(DidNumber), _Schema.of(Did))
_QUEUES = _TableFile("queues.toml", "queues", _NAME, _Schema.of(Queue))
_USERS = _TableFile("users.toml", "users", _NAME, _Schema.of(ConsoleUser))
_KNOWLEDGE = _TableFile("knowledge.toml", "articles", _NAME, _Schema.of(KnowledgeArticle))
_TABLE_FILES = (_EXTENSIONS, _TRUNKS, _DIDS, _QUEUES, _USERS, _KNOWLEDGE)
_AREA_FILES = (SERVER_FILE, *(spec.file for spec in _TABLE_FILES))

# Which file a top-level table belongs in, to answer "[queues] in dids.toml".
_HOME_OF_TABLE = {
    **dict.fromkeys(_SECTIONS, SERVER_FILE),
    **{spec.table: spec.file for spec in _TABLE_FILES},
}


class _FlowSettings(_Model):
    """The ``[flow]`` table of a flow file (``[flow.defaults]`` inside it)."""

    language: Language | None = None
    start: str
    defaults: FlowDefaults = FlowDefaults()
    survey: str | None = None
    attach: tuple[Name, ...] = Field(default=(), strict=False)


_FLOW_SETTINGS = _Schema.of(_FlowSettings)
_NODE: _Schema[Node] = _Schema(Node, TypeAdapter(Node))


@dataclass
class _Table:
    """The valid entries of a table file, and the names of all its entries.

    ``names`` is None when the file could not be read at all, so references
    into it cannot be judged.
    """

    entries: dict[str, Any] = field(default_factory=dict)
    names: set[str] | None = field(default_factory=set)


@dataclass
class _FlowParts:
    """What could be read of one flow file, for checks that work on partial flows."""

    name: str
    file: Path
    settings: _FlowSettings | None = None
    nodes: dict[str, Node] = field(default_factory=dict)
    node_names: set[str] = field(default_factory=set)
    has_nodes: bool = False
    complete: bool = False


# ----------------------------------------------------------------- the loader


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and check a config directory; None means :func:`default_config_dir`.

    Raises :class:`ConfigError` (a :class:`ConfigErrors` when there are
    several problems) naming every problem found.
    """
    directory = Path(path).expanduser() if path is not None else default_config_dir()
    return _Loader(directory).load()


class _Loader:
    """One pass over one directory, collecting every problem before raising."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.errors: list[tuple[tuple[int, str], ConfigError]] = []
        self.warnings: list[tuple[tuple[int, str], ConfigError]] = []

    def display(self, relative: str | Path) -> str:
        """A file name for messages: relative to the working directory when inside it."""
        path = self.directory / relative
        if path.is_absolute():
            try:
                return str(path.relative_to(Path.cwd()))
            except ValueError:
                return str(path)
        return str(path)

    def error(self, relative: str | Path, key: str, reason: str) -> None:
        self.errors.append((_file_rank(relative), ConfigError(self.display(relative), key, reason)))

    def warn(self, relative: str | Path, key: str, reason: str) -> None:
        self.warnings.append(
            (_file_rank(relative), ConfigError(self.display(relative), key, reason))
        )

    def sorted_errors(self) -> list[ConfigError]:
        """Errors grouped by file in a fixed order, keeping the order within each file."""
        return [error for _, error in sorted(self.errors, key=lambda item: item[0])]

    def load(self) -> Config:
        if not self.directory.is_dir():
            reason = (
                "is not a directory" if self.directory.exists() else "config directory not found"
            )
            raise ConfigError(str(self.directory), "<dir>", reason)
        self._check_file_names()
        sections = self._load_sections()
        tables = {spec.table: self._load_table(spec) for spec in _TABLE_FILES}
        tts = sections.get("tts")
        default_voice = tts.voice if isinstance(tts, TtsConfig) else TtsConfig().voice
        flow_parts = self._load_flows()
        flows = {
            parts.name: Flow(
                name=parts.name,
                language=parts.settings.language or default_voice,
                start=parts.settings.start,
                nodes=parts.nodes,
                defaults=parts.settings.defaults,
                survey=parts.settings.survey,
                attach=parts.settings.attach,
            )
            for parts in flow_parts
            if parts.complete and parts.settings is not None
        }
        config = Config.model_validate(
            {
                **sections,
                **{table: loaded.entries for table, loaded in tables.items()},
                "flows": flows,
                "source_dir": Path(os.path.abspath(self.directory)),
            }
        )
        _References(self, config, set(sections), tables, flow_parts).run()
        _raise_all(self.sorted_errors())
        warnings = sorted(self.warnings, key=lambda item: item[0])
        return config.model_copy(update={"warnings": tuple(str(w) for _, w in warnings)})

    # -- files and tables

    def _check_file_names(self) -> None:
        expected = ", ".join([*_AREA_FILES, f"{FLOWS_DIR}/*.toml"])
        for entry in _toml_files(self.directory):
            if entry.name not in _AREA_FILES:
                close = difflib.get_close_matches(entry.name, _AREA_FILES, n=1)
                hint = f"did you mean {close[0]}?" if close else f"expected one of: {expected}"
                self.error(entry.name, "<file>", f"unknown config file; {hint}")
        flows = self.directory / FLOWS_DIR
        if flows.exists() and not flows.is_dir():
            self.error(FLOWS_DIR, "<file>", "must be a directory of flow files")

    def _read_toml(self, relative: str | Path) -> dict[str, Any] | None:
        """The parsed file, {} when it does not exist, None (and an error) when unreadable."""
        path = self.directory / relative
        if not path.exists():
            return {}
        try:
            with path.open("rb") as handle:
                return tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            self.error(relative, "<syntax>", _toml_reason(str(exc)))
        except UnicodeDecodeError as exc:
            self.error(relative, "<syntax>", f"not UTF-8 text (byte {exc.start})")
        except OSError as exc:
            self.error(relative, "<file>", f"cannot read: {exc.strerror or exc}")
        return None

    def _tables(
        self, relative: str | Path, data: dict[str, Any], allowed: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        """The allowed top-level tables of a file; anything else is reported."""
        allowed = list(allowed)
        tables: dict[str, dict[str, Any]] = {}
        for name, value in data.items():
            if name not in allowed:
                self.error(relative, name, _unknown_key(name, allowed, homes=_HOME_OF_TABLE))
            elif not isinstance(value, dict):
                self.error(relative, name, f"expected a table, got {_toml_type(value)}")
            else:
                tables[name] = value
        return tables

    def _validate(
        self, relative: str | Path, prefix: str, schema: _Schema[_T], value: Any
    ) -> _T | None:
        try:
            return schema.adapter.validate_python(value)
        except ValidationError as exc:
            for key, reason in _pydantic_problems(exc, schema.root):
                self.error(relative, f"{prefix}.{key}" if key else prefix, reason)
            return None

    def _valid_name(self, relative: str | Path, key: str, adapter: TypeAdapter[str]) -> bool:
        name = key.rsplit(".", 1)[-1]
        try:
            adapter.validate_python(name)
        except ValidationError as exc:
            self.error(relative, key, _reason(exc.errors(include_url=False)[0], "", None, None))
            return False
        return True

    def _load_sections(self) -> dict[str, _Model]:
        """The valid sections of ccserver.toml: absent ones get defaults, broken ones none."""
        data = self._read_toml(SERVER_FILE)
        if data is None:
            return {}
        tables = self._tables(SERVER_FILE, data, _SECTIONS)
        sections: dict[str, _Model] = {}
        for name, schema in _SECTIONS.items():
            if name in data and name not in tables:
                continue
            parsed = self._validate(SERVER_FILE, name, schema, tables.get(name, {}))
            if parsed is not None:
                sections[name] = parsed
        return sections

    def _load_table(self, spec: _TableFile) -> _Table:
        data = self._read_toml(spec.file)
        if data is None:
            return _Table(names=None)
        tables = self._tables(spec.file, data, [spec.table])
        if spec.table in data and spec.table not in tables:
            return _Table(names=None)
        loaded = _Table()
        for name, value in tables.get(spec.table, {}).items():
            key = f"{spec.table}.{name}"
            assert loaded.names is not None
            loaded.names.add(name)
            if not self._valid_name(spec.file, key, spec.key):
                continue
            if not isinstance(value, dict):
                self.error(spec.file, key, f"expected a table, got {_toml_type(value)}")
                continue
            parsed = self._validate(spec.file, key, spec.entry, value)
            if parsed is not None:
                loaded.entries[name] = parsed
        return loaded

    def _load_flows(self) -> list[_FlowParts]:
        directory = self.directory / FLOWS_DIR
        if not directory.is_dir():
            return []
        return [self._load_flow(path) for path in _toml_files(directory)]

    def _load_flow(self, path: Path) -> _FlowParts:
        relative = Path(FLOWS_DIR) / path.name
        parts = _FlowParts(name=path.stem, file=relative)
        try:
            _NAME.validate_python(parts.name)
        except ValidationError as exc:
            reason = _reason(exc.errors(include_url=False)[0], "", None, None)
            self.error(relative, "<file>", f"bad flow file name: {reason}")
            return parts
        data = self._read_toml(relative)
        if data is None:
            return parts
        tables = self._tables(relative, data, ["flow", "nodes"])
        complete = len(tables) == len(data)
        if "flow" not in data:
            self.error(relative, "flow", "required table is missing: [flow] with start = NODE")
        if "nodes" not in data:
            self.error(relative, "nodes", "required table is missing: add [nodes.NAME] tables")
        if "flow" in tables:
            parts.settings = self._validate(relative, "flow", _FLOW_SETTINGS, tables["flow"])
        parts.has_nodes = "nodes" in tables
        for name, value in tables.get("nodes", {}).items():
            key = f"nodes.{name}"
            parts.node_names.add(name)
            complete = self._valid_name(relative, key, _NAME) and complete
            node = self._validate(relative, key, _NODE, value)
            if node is None:
                complete = False
            else:
                parts.nodes[name] = node
        parts.complete = complete and parts.settings is not None and bool(parts.nodes)
        return parts


# ------------------------------------------------------- checks across files


class _References:
    """Checks that need more than one model: references, port plans, files on disk.

    Only valid entries are checked, but references are judged against every
    name defined, valid or not, so one broken queue does not also make every
    DID that uses it "unknown".
    """

    def __init__(
        self,
        loader: _Loader,
        config: Config,
        sections: set[str],
        tables: dict[str, _Table],
        flows: list[_FlowParts],
    ) -> None:
        self.loader = loader
        self.config = config
        self.sections = sections
        self.extension_names = tables[_EXTENSIONS.table].names
        self.queue_names = tables[_QUEUES.table].names
        self.flows = flows
        self.flow_names = {parts.name for parts in flows}

    def run(self) -> None:
        if "server" in self.sections:
            for key, reason in server_problems(self.config.server):
                self.loader.error(SERVER_FILE, key, reason)
        if "media" in self.sections:
            self._check_moh(SERVER_FILE, "media.moh", self.config.media.moh)
        self._check_dids()
        self._check_extensions()
        self._check_queues()
        self._check_trunks()
        self._check_users()
        for parts in self.flows:
            self._check_flow(parts)

    def _check_moh(self, file: str, key: str, moh: str) -> None:
        path = self.config.resolve_moh(moh)
        problem = None if path is None else _wav_problem(path)
        if problem is not None:
            self.loader.error(file, key, problem)

    def _check_queue_ref(self, file: str | Path, key: str, queue: str) -> None:
        if self.queue_names is not None and queue not in self.queue_names:
            self.loader.error(
                file, key, f"unknown queue {queue!r} ({_defined('queues', self.queue_names)})"
            )

    def _check_dids(self) -> None:
        for number, did in self.config.dids.items():
            if self.extension_names is not None and number in self.extension_names:
                self.loader.error(
                    _DIDS.file,
                    f"dids.{number}",
                    f"{number} is also an extension in {_EXTENSIONS.file}; "
                    "a dialled number must mean one thing",
                )
            if did.flow is not None and did.flow not in self.flow_names:
                self.loader.error(
                    _DIDS.file,
                    f"dids.{number}.flow",
                    f"unknown flow {did.flow!r} ({_defined('flows', self.flow_names)})",
                )
            if did.queue is not None:
                self._check_queue_ref(_DIDS.file, f"dids.{number}.queue", did.queue)

    def _check_extensions(self) -> None:
        for number, extension in self.config.extensions.items():
            if extension.skills and not extension.agent:
                self.loader.error(
                    _EXTENSIONS.file,
                    f"extensions.{number}.skills",
                    "only agents have skills: set agent = true",
                )

    def _check_users(self) -> None:
        for name, user in self.config.users.items():
            if user.agent is None or self.extension_names is None:
                continue
            ext = self.config.extensions.get(user.agent)
            if user.agent not in self.extension_names or (ext is not None and not ext.agent):
                self.loader.error(
                    _USERS.file,
                    f"users.{name}.agent",
                    f"{user.agent} is not an agent extension of {_EXTENSIONS.file}",
                )

    def _check_queues(self) -> None:
        for name, queue in self.config.queues.items():
            prefix = f"queues.{name}"
            seen: set[str] = set()
            for index, member in enumerate(queue.members):
                self._check_member(f"{prefix}.members.{index}", member, seen)
            for member in queue.penalties:
                if member not in seen:
                    self.loader.error(
                        _QUEUES.file,
                        f"{prefix}.penalties.{member}",
                        f"{member} is not a member of this queue (add it to members)",
                    )
            target = queue.overflow_target
            if target is not None:
                self._check_overflow(name, target)
            if queue.moh is not None:
                self._check_moh(_QUEUES.file, f"{prefix}.moh", queue.moh)
            self._check_escalation(name, queue)
            self._check_skills(name, queue)
            self._check_callback(name, queue)
            if queue.strategy == "ring-all" and self.config.state.backend == "redis":
                self.loader.error(
                    _QUEUES.file,
                    f"{prefix}.strategy",
                    'ring-all is not supported with [state] backend = "redis": a node '
                    "reserves one agent per call (docs/cluster.md)",
                )

    def _check_member(self, key: str, member: str, seen: set[str]) -> None:
        if member in seen:
            self.loader.error(_QUEUES.file, key, f"{member} is listed twice")
        seen.add(member)
        if self.extension_names is None:
            return
        if member not in self.extension_names:
            self.loader.error(
                _QUEUES.file, key, f"unknown extension {member!r} (see {_EXTENSIONS.file})"
            )
            return
        extension = self.config.extensions.get(member)
        if extension is not None and not extension.agent:
            self.loader.error(
                _QUEUES.file,
                key,
                f"extension {member} is not an agent (set agent = true in {_EXTENSIONS.file})",
            )

    def _check_overflow(self, name: str, target: tuple[str | None, str]) -> None:
        key = f"queues.{name}.overflow"
        kind, dest = target
        queues = self.queue_names or set()
        is_queue = dest in queues
        is_flow = dest in self.flow_names
        if kind in ("queue", None) and dest == name:
            self.loader.error(_QUEUES.file, key, "a queue cannot overflow into itself")
        elif kind is None and is_queue and is_flow:
            self.loader.error(
                _QUEUES.file,
                key,
                f"ambiguous: {dest!r} names both a queue and a flow; "
                f"write 'queue:{dest}' or 'flow:{dest}'",
            )
        elif kind is None and not is_queue and not is_flow:
            self.loader.error(
                _QUEUES.file,
                key,
                f"unknown queue or flow {dest!r} "
                f"({_defined('queues', queues)}; {_defined('flows', self.flow_names)})",
            )
        elif kind == "queue":
            self._check_queue_ref(_QUEUES.file, key, dest)
        elif kind == "flow" and not is_flow:
            self.loader.error(
                _QUEUES.file, key, f"unknown flow {dest!r} ({_defined('flows', self.flow_names)})"
            )

    def _check_callback(self, name: str, queue: Queue) -> None:
        """A queue callback calls the customer through a trunk's outbound route.

        Only a warning: the queue still works, callers just cannot be called
        back (the key is ignored, a callback overflow keeps them waiting).
        """
        if any(trunk.outbound for trunk in self.config.trunks.values()):
            return
        uses = [
            key
            for key, used in (
                ("callback_key", queue.callback_key is not None),
                ("overflow", queue.overflow == "callback"),
            )
            if used
        ]
        for key in uses:
            self.loader.warn(
                _QUEUES.file,
                f"queues.{name}.{key}",
                "a callback calls the customer through a trunk's outbound route, and no "
                f'trunk has one (set outbound = "host:port" in {_TRUNKS.file})',
            )

    def _check_escalation(self, name: str, queue: Queue) -> None:
        previous = 0.0
        for index, step in enumerate(queue.escalation):
            key = f"queues.{name}.escalation.{index}"
            if step.after <= previous:
                self.loader.error(
                    _QUEUES.file,
                    f"{key}.after",
                    f"must be later than the step before ({previous:g} s): steps run in order",
                )
            previous = max(previous, step.after)
            if queue.max_wait is not None and step.after >= queue.max_wait:
                self.loader.warn(
                    _QUEUES.file,
                    f"{key}.after",
                    f"never reached: calls overflow after max_wait ({queue.max_wait:g} s)",
                )
            for n, other in enumerate(step.add_queues):
                if other == name:
                    self.loader.error(
                        _QUEUES.file, f"{key}.add_queues.{n}", "a queue is always its own"
                    )
                else:
                    self._check_queue_ref(_QUEUES.file, f"{key}.add_queues.{n}", other)
            known = set(queue.required_skills) | self._all_skills()
            for n, skill in enumerate(step.drop):
                if skill not in known:
                    self.loader.warn(
                        _QUEUES.file,
                        f"{key}.drop.{n}",
                        f"no agent has skill {skill!r} and the queue does not require it",
                    )

    def _all_skills(self) -> set[str]:
        return {skill for ext in self.config.extensions.values() for skill in ext.skills}

    def _check_skills(self, name: str, queue: Queue) -> None:
        """Warn when no member could ever take the queue's calls as configured."""
        if not queue.required_skills or self.extension_names is None:
            return
        members = [self.config.extensions.get(m) for m in queue.members]
        if any(
            ext is not None
            and all(ext.skills.get(s, 0) >= level for s, level in queue.required_skills.items())
            for ext in members
        ):
            return
        wanted = ", ".join(f"{s} >= {level}" for s, level in sorted(queue.required_skills.items()))
        self.loader.warn(
            _QUEUES.file,
            f"queues.{name}.required_skills",
            f"no member has {wanted}: calls wait for escalation or overflow",
        )

    def _check_trunks(self) -> None:
        owner: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
        own_address = None
        if "server" in self.sections:
            own_address = ipaddress.ip_address(self.config.server.advertised_address)
        for name, trunk in self.config.trunks.items():
            for index, network in enumerate(trunk.addresses):
                key = f"trunks.{name}.addresses.{index}"
                if network in owner:
                    self.loader.error(
                        _TRUNKS.file,
                        key,
                        f"{network} is already listed by trunk {owner[network]!r}",
                    )
                owner.setdefault(network, name)
                if own_address is not None and own_address in network:
                    self.loader.warn(
                        _TRUNKS.file,
                        key,
                        f"{network} holds this server's own address {own_address}: "
                        "every phone on this host can call without a password",
                    )

    def _check_flow(self, parts: _FlowParts) -> None:
        file = parts.file
        names = parts.node_names

        def check_node(key: str, target: str | None) -> None:
            if target is not None and target not in names:
                self.loader.error(
                    file, key, f"unknown node {target!r} ({_defined('nodes', names)})"
                )

        settings = parts.settings
        if settings is not None and parts.has_nodes:
            check_node("flow.start", settings.start)
            check_node("flow.defaults.fallback", settings.defaults.fallback)
            check_node("flow.survey", settings.survey)
            survey = parts.nodes.get(settings.survey or "")
            if survey is not None and not isinstance(survey, SurveyNode):
                self.loader.error(
                    file,
                    "flow.survey",
                    f"{settings.survey!r} is a {survey.kind} node, not a survey",
                )
        known = self._known_variables()
        if settings is not None:
            for index, name in enumerate(settings.attach):
                if name not in known:
                    self.loader.warn(file, f"flow.attach.{index}", _never_set(name))
        for name, node in parts.nodes.items():
            prefix = f"nodes.{name}"
            for key, target in node_targets(node):
                check_node(f"{prefix}.{key}", target)
            for key, flow, entry in flow_refs(node):
                self._check_flow_ref(file, f"{prefix}.{key}", flow, entry)
            queue = getattr(node, "queue", None)
            if isinstance(queue, str):
                self._check_queue_ref(file, f"{prefix}.queue", queue)
            extension = getattr(node, "extension", None)
            if (
                isinstance(extension, str)
                and self.extension_names is not None
                and extension not in self.extension_names
            ):
                self.loader.error(
                    file,
                    f"{prefix}.extension",
                    f"unknown extension {extension!r} (see {_EXTENSIONS.file})",
                )
            for index, segment in enumerate(getattr(node, "audio", None) or ()):
                for language, audio in segment.items():
                    key = f"{prefix}.audio" + (f".{index}" if index else "")
                    key += "" if language == "*" else f".{language}"
                    problem = _wav_problem(self.config.source_dir / Path(audio).expanduser())
                    if problem is not None:
                        self.loader.error(file, key, problem)
            for key, template in node_templates(node):
                for variable in sorted(template_names(template) - known):
                    self.loader.warn(file, f"{prefix}.{key}", _never_set(variable))
        if parts.complete and settings is not None and settings.start in names:
            entries = [settings.start] + ([settings.survey] if settings.survey else [])
            reachable = _reachable(entries, parts.nodes)
            for name in parts.nodes:
                if name not in reachable:
                    self.loader.warn(
                        file,
                        f"nodes.{name}",
                        f"unreachable from start node {settings.start!r}",
                    )

    def _check_flow_ref(self, file: Path, key: str, flow: str, node: str | None) -> None:
        """A subflow or goto naming another flow (and maybe one of its nodes)."""
        other = next((parts for parts in self.flows if parts.name == flow), None)
        if other is None:
            self.loader.error(
                file, key, f"unknown flow {flow!r} ({_defined('flows', self.flow_names)})"
            )
        elif node is not None and other.has_nodes and node not in other.node_names:
            self.loader.error(
                file,
                key.rsplit(".", 1)[0] + ".node",
                f"unknown node {node!r} in flow {flow!r} ({_defined('nodes', other.node_names)})",
            )

    def _known_variables(self) -> set[str]:
        """Variables some node of some flow sets: subflows share the caller's variables."""
        known = set(BUILTIN_VARIABLES)
        for parts in self.flows:
            for node in parts.nodes.values():
                known |= variables_set(node)
        return known


def _never_set(variable: str) -> str:
    return f"variable {variable!r} is never set (by a set, collect, speech, survey or lookup node)"


def _reachable(entries: Iterable[str], nodes: Mapping[str, Node]) -> set[str]:
    seen = set(entries)
    todo = list(seen)
    while todo:
        node = nodes.get(todo.pop())
        if node is None:
            continue
        for _, target in node_targets(node):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _defined(what: str, names: Iterable[str]) -> str:
    listed = ", ".join(sorted(names))
    return f"defined {what}: {listed}" if listed else f"no {what} are defined"


def _wav_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"no such file: {path}"
    try:
        with wave.open(str(path), "rb") as audio:
            audio.getnframes()
    except (wave.Error, EOFError, OSError) as exc:
        return f"not a readable PCM WAV file ({path}): {exc}"
    return None


# ------------------------------------------------------------ the port plan


def server_problems(server: ServerConfig) -> list[tuple[str, str]]:
    """``(key, reason)`` for a ``[server]`` table whose values clash with each other."""
    problems: list[tuple[str, str]] = []
    low, high = server.rtp_port_min, server.rtp_port_max
    if low >= high:
        problems.append(("server.rtp_port_min", f"must be below rtp_port_max ({low} >= {high})"))
    else:
        # RFC 3550 §11: RTP on an even port, its RTCP on the next (odd) one.
        if low % 2:
            problems.append(
                ("server.rtp_port_min", f"must be even ({low}): RTP uses even ports, RFC 3550 §11")
            )
        elif (high - low + 1) % 2:
            problems.append(
                (
                    "server.rtp_port_max",
                    f"the range {low}-{high} holds an odd number of ports; end it on an odd "
                    "port so every RTP port has its RTCP port above it (RFC 3550 §11)",
                )
            )
        if "udp" in server.sip_transports and server.sip_port and low <= server.sip_port <= high:
            problems.append(
                ("server.sip_port", f"{server.sip_port} is inside the RTP range {low}-{high}")
            )
    if "tcp" in server.sip_transports and server.sip_port and server.http_port == server.sip_port:
        problems.append(
            ("server.http_port", f"{server.http_port} is also the SIP TCP port (sip_port)")
        )
    if ipaddress.ip_address(server.bind).is_unspecified and server.public_address is None:
        problems.append(
            (
                "server.public_address",
                f"required when bind is {server.bind}: Contact headers and SDP need an "
                "address peers can reach",
            )
        )
    if (
        server.public_address is not None
        and ipaddress.ip_address(server.public_address).is_unspecified
    ):
        problems.append(
            ("server.public_address", f"{server.public_address} is not an address peers can reach")
        )
    return problems


def apply_overrides(config: Config, overrides: Mapping[str, object]) -> Config:
    """``config`` with some ``[server]`` values replaced (command-line options).

    Keys are :class:`ServerConfig` field names; None values are ignored. The
    result is validated like a file: errors name the option (``--sip-port``).
    """
    changes = {key: value for key, value in overrides.items() if value is not None}
    if not changes:
        return config

    def option(field: str) -> str:
        return "--" + field.replace("_", "-")

    errors: list[ConfigError] = []
    unknown = [key for key in changes if key not in ServerConfig.model_fields]
    for key in unknown:
        errors.append(ConfigError(COMMAND_LINE, option(key), "not a [server] setting"))
    _raise_all(errors)

    try:
        server = ServerConfig.model_validate({**config.server.model_dump(), **changes})
    except ValidationError as exc:
        raise _combined(
            [
                ConfigError(COMMAND_LINE, option(key.split(".")[0] or "server"), reason)
                for key, reason in _pydantic_problems(exc, ServerConfig)
            ]
        ) from None
    toml_file = str(config.source_dir / "ccserver.toml")
    for key, reason in server_problems(server):
        field = key.removeprefix("server.")
        if field in changes:
            errors.append(ConfigError(COMMAND_LINE, option(field), reason))
        else:
            errors.append(ConfigError(toml_file, key, f"{reason} (after command-line options)"))
    _raise_all(errors)
    return config.model_copy(update={"server": server})
