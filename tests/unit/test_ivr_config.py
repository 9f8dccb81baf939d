"""Flow files at load time: every mistake named by file, key path and reason.

Each test adds one flow file to a copy of the shipped demo and shows the
exact line an operator would read.
"""

from __future__ import annotations

import shutil
import tomllib
import wave
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from ccserver.config import ConfigError, load_config, schema, shipped_config_dir
from ccserver.config import flows as flow_models
from ccserver.config.flows import FlowDefaults, Node


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCSERVER_CONFIG", raising=False)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), target)
    return target


def write_flow(cfg: Path, text: str, name: str = "t") -> None:
    (cfg / "flows" / f"{name}.toml").write_text(text)


def problems(cfg: Path, name: str = "t") -> list[tuple[str, str]]:
    """``(key, reason)`` of every problem reported in ``flows/<name>.toml``."""
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    found = []
    for error in caught.value.errors:
        assert error.file.endswith(f"flows/{name}.toml"), str(error)
        found.append((error.key, error.reason))
    return found


def warnings(cfg: Path) -> list[str]:
    return [w.split("flows/t.toml: ")[1] for w in load_config(cfg).warnings]


HEAD = '[flow]\nstart = "m"\n'
MENU = '[nodes.m]\nkind = "menu"\nprompt = "Press 1."\nchoices = { "1" = "bye" }\n'
BYE = '[nodes.bye]\nkind = "hangup"\n'


def test_the_flow_models_share_the_schema_rules() -> None:
    # One definition (ccserver.config.checks), imported by both.
    assert flow_models._check_name is schema._check_name
    assert flow_models._check_language is schema._check_language
    assert flow_models.DTMF_KEYS is schema.DTMF_KEYS


def test_a_valid_flow_loads(cfg: Path) -> None:
    write_flow(cfg, HEAD + MENU + BYE)
    flow = load_config(cfg).flows["t"]
    assert flow.language == "en" and flow.defaults.retries == 2 and flow.attach == ()


def test_unknown_targets_name_their_key(cfg: Path) -> None:
    write_flow(
        cfg,
        HEAD
        + '[flow.defaults]\nfallback = "helpdesk"\n'
        + '[nodes.m]\nkind = "menu"\nprompt = "Press 1."\nchoices = { "1" = "nowhere" }\n'
        + 'phrases.ko = { "상담원 연결" = "agnet" }\nno_input = "bye"\n'
        + '[nodes.c]\nkind = "branch"\ncases = [{ var = "x", equals = 1, next = "m" }, '
        + '{ var = "x", equals = 2, next = "elsewhere" }]\ndefault = "bye"\n'
        + '[nodes.s]\nkind = "schedule"\ntimezone = "UTC"\nhours = { mon = "09:00-17:00" }\n'
        + 'open = "m"\nclosed = "shut"\nholiday = "feast"\n'
        + '[nodes.l]\nkind = "lookup"\nby = "number"\nfound = "m"\nnot_found = "who"\n'
        + BYE,
    )
    nodes = "(defined nodes: bye, c, l, m, s)"
    assert problems(cfg) == [
        ("flow.defaults.fallback", f"unknown node 'helpdesk' {nodes}"),
        ("nodes.m.choices.1", f"unknown node 'nowhere' {nodes}"),
        ("nodes.m.phrases.ko.상담원 연결", f"unknown node 'agnet' {nodes}"),
        ("nodes.c.cases.1.next", f"unknown node 'elsewhere' {nodes}"),
        ("nodes.s.closed", f"unknown node 'shut' {nodes}"),
        ("nodes.s.holiday", f"unknown node 'feast' {nodes}"),
        ("nodes.l.not_found", f"unknown node 'who' {nodes}"),
    ]


def test_unknown_queue_extension_and_flows(cfg: Path) -> None:
    write_flow(
        cfg,
        HEAD
        + '[nodes.m]\nkind = "menu"\nprompt = "P."\n'
        + 'choices = { "1" = "q", "2" = "cb", "3" = "tr", "4" = "sub", "5" = "go" }\n'
        + '[nodes.q]\nkind = "queue"\nqueue = "sales"\n'
        + '[nodes.cb]\nkind = "callback"\nqueue = "billing"\n'
        + '[nodes.tr]\nkind = "transfer"\nextension = "1099"\n'
        + '[nodes.sub]\nkind = "subflow"\nflow = "shop"\n'
        + '[nodes.go]\nkind = "goto"\nflow = "bank"\nnode = "main_manu"\n',
    )
    found = problems(cfg)
    assert found[:4] == [
        ("nodes.q.queue", "unknown queue 'sales' (defined queues: cards, general)"),
        ("nodes.cb.queue", "unknown queue 'billing' (defined queues: cards, general)"),
        ("nodes.tr.extension", "unknown extension '1099' (see extensions.toml)"),
        ("nodes.sub.flow", "unknown flow 'shop' (defined flows: bank, t)"),
    ]
    key, reason = found[4]
    assert key == "nodes.go.node"
    assert reason.startswith("unknown node 'main_manu' in flow 'bank' (defined nodes: ")
    assert len(found) == 5


def test_prompt_files_must_exist_and_be_wav(cfg: Path) -> None:
    (cfg / "prompts").mkdir()
    with wave.open(str(cfg / "prompts" / "hello.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 800)
    (cfg / "prompts" / "broken.wav").write_text("not audio")
    write_flow(
        cfg,
        '[flow]\nstart = "a"\n'
        + '[nodes.a]\nkind = "play"\naudio = "prompts/hello.wav"\nnext = "b"\n'
        + '[nodes.b]\nkind = "play"\naudio = { en = "prompts/hello.wav", ko = "prompts/ko.wav" }\n'
        + 'next = "c"\n'
        + '[nodes.c]\nkind = "play"\naudio = ["prompts/hello.wav", "prompts/broken.wav"]\n',
    )
    found = problems(cfg)
    assert found[0] == ("nodes.b.audio.ko", f"no such file: {cfg / 'prompts' / 'ko.wav'}")
    assert found[1][0] == "nodes.c.audio.1"
    assert found[1][1].startswith(f"not a readable PCM WAV file ({cfg / 'prompts' / 'broken.wav'})")
    assert len(found) == 2


def test_survey_must_name_a_survey_node(cfg: Path) -> None:
    write_flow(cfg, HEAD.replace('start = "m"', 'start = "m"\nsurvey = "m"') + MENU + BYE)
    assert problems(cfg) == [("flow.survey", "'m' is a menu node, not a survey")]
    write_flow(cfg, HEAD.replace('start = "m"', 'start = "m"\nsurvey = "rate"') + MENU + BYE)
    assert problems(cfg) == [
        ("flow.survey", "unknown node 'rate' (defined nodes: bye, m)"),
    ]


@pytest.mark.parametrize(
    ("node", "key", "reason"),
    [
        (
            'kind = "menu"\nprompt = "x"',
            "nodes.n",
            "set choices (keys) or phrases (speech), or both",
        ),
        (
            'kind = "menu"\nprompt = "Hi {name"\nchoices = { "1" = "bye" }',
            "nodes.n.prompt",
            "stray '{' at position 3: write {name} for a variable, '{{' for the character itself",
        ),
        (
            'kind = "menu"\nprompt = { english = "x" }\nchoices = { "1" = "bye" }',
            "nodes.n.prompt",
            "'english' is not a voice/language tag such as 'en' or 'en-us'",
        ),
        (
            'kind = "menu"\nprompt = ["x", ""]\nchoices = { "1" = "bye" }',
            "nodes.n.prompt",
            "segment 1: *: must not be empty",
        ),
        (
            'kind = "play"\nprompt = "x"\naudio = "a.wav"',
            "nodes.n",
            "set prompt (TTS text) or audio (WAV files), not both",
        ),
        ('kind = "play"', "nodes.n", "set prompt (TTS text) or audio (WAV files)"),
        (
            'kind = "collect"\nvariable = "pin"\nnext = "bye"\nmin_length = 6\nmax_length = 4',
            "nodes.n",
            "min_length (6) is above max_length (4)",
        ),
        (
            'kind = "collect"\nvariable = "pin"\nnext = "bye"\npattern = "[0-9"',
            "nodes.n.pattern",
            "not a regular expression: unterminated character set at position 0",
        ),
        (
            'kind = "collect"\nvariable = "pin"\nnext = "bye"\nterminator = "##"',
            "nodes.n.terminator",
            "'##' is not a DTMF key: use one of 0-9, *, #, A-D, or ''",
        ),
        (
            'kind = "speech"\nvariable = "a"\nnext = "bye"\nphrases = []',
            "nodes.n",
            "phrases must not be empty",
        ),
        (
            'kind = "speech"\nvariable = "a"\nnext = "bye"\nphrases = { yes = 1 }',
            "nodes.n.phrases",
            "*: 'yes': expected a string",
        ),
        (
            'kind = "transfer"\nextension = "1001"\nnumber = "+3312"',
            "nodes.n",
            "set exactly one of 'extension' or 'number'",
        ),
        (
            'kind = "lookup"\nby = "account"',
            "nodes.n",
            "by = 'account' needs value, e.g. value = '{account}'",
        ),
        (
            'kind = "lookup"\nby = "name"',
            "nodes.n.by",
            "must be one of 'number' or 'account'; got the string 'name'",
        ),
        ('kind = "set"\nnext = "bye"', "nodes.n", "does nothing: set values or add"),
        (
            'kind = "set"\nvalues = { x = { a = 1 } }',
            "nodes.n.values.x",
            "expected text, a number, true or false",
        ),
        ('kind = "goto"', "nodes.n", "set node, flow, or both"),
        (
            'kind = "queue"\nqueue = "general"\npriority = 101',
            "nodes.n.priority",
            "101 is not from 0 to 100",
        ),
        (
            'kind = "queue"\nqueue = "general"\npriority = 1.5',
            "nodes.n.priority",
            "expected an integer from 0 to 100 or a template such as '{priority}'",
        ),
        (
            'kind = "queue"\nqueue = "general"\nskills = { "bad skill" = 3 }',
            "nodes.n.skills.bad skill",
            "invalid name 'bad skill': use a letter then letters, digits, '-' or '_' "
            "(at most 64 characters)",
        ),
        (
            'kind = "branch"\ncases = []\ndefault = "bye"',
            "nodes.n.cases",
            "must not be empty",
        ),
        (
            'kind = "branch"\ncases = [{ var = "x", in = ["a"], next = "bye" }]\ndefault = "bye"',
            "nodes.n.cases.0.in",
            "unknown key (allowed: var, next, equals, not_equals, one_of, lt, le, gt, ge, "
            "matches, is_set)",
        ),
        (
            'kind = "menu"\nprompt = "x"\nchoices = { "1" = "bye" }\ntimeout = 0',
            "nodes.n.timeout",
            "must be greater than 0; got the integer 0",
        ),
        (
            'kind = "survey"\nmax_score = 5',
            "nodes.n",
            "set prompt (TTS text) or audio (WAV files): ask the question",
        ),
    ],
)
def test_node_mistakes(cfg: Path, node: str, key: str, reason: str) -> None:
    write_flow(cfg, '[flow]\nstart = "n"\n[nodes.n]\n' + node + "\n" + BYE)
    assert problems(cfg) == [(key, reason)]


def test_unknown_kind_lists_the_kinds(cfg: Path) -> None:
    write_flow(cfg, HEAD + MENU + BYE + '[nodes.x]\nkind = "dance"\n')
    ((key, reason),) = problems(cfg)
    assert key == "nodes.x"
    assert reason == (
        "unknown kind 'dance'; use one of 'play', 'menu', 'collect', 'speech', 'branch', "
        "'set', 'lookup', 'schedule', 'queue', 'transfer', 'voicemail', 'callback', "
        "'survey', 'hangup', 'goto', 'subflow'"
    )


def test_flow_table_keys(cfg: Path) -> None:
    write_flow(cfg, HEAD + 'attach = ["bad name"]\n[flow.defaults]\nretrys = 3\n' + MENU + BYE)
    assert problems(cfg) == [
        ("flow.defaults.retrys", "unknown key; did you mean 'retries'?"),
        (
            "flow.attach.0",
            "invalid name 'bad name': use a letter then letters, digits, '-' or '_' "
            "(at most 64 characters)",
        ),
    ]


# -- warnings ---------------------------------------------------------------------------


def test_variables_nobody_sets_are_warned_about(cfg: Path) -> None:
    write_flow(
        cfg,
        '[flow]\nstart = "a"\nattach = ["acount"]\n'
        + '[nodes.a]\nkind = "play"\nprompt = "Hello {customer_name}, {nmae}."\nnext = "q"\n'
        + '[nodes.q]\nkind = "queue"\nqueue = "general"\npriority = "{prio}"\n',
    )
    never = "is never set (by a set, collect, speech, survey or lookup node)"
    assert warnings(cfg) == [
        f"flow.attach.0: variable 'acount' {never}",
        f"nodes.a.prompt: variable 'nmae' {never}",
        f"nodes.q.priority: variable 'prio' {never}",
    ]


def test_unreachable_nodes_are_warned_about_but_the_survey_is_reachable(cfg: Path) -> None:
    write_flow(
        cfg,
        HEAD.replace('start = "m"', 'start = "m"\nsurvey = "rate"')
        + MENU
        + BYE
        + '[nodes.rate]\nkind = "survey"\nprompt = "Rate us."\nnext = "thanks"\n'
        + '[nodes.thanks]\nkind = "play"\nprompt = "Thanks."\n'
        + '[nodes.lost]\nkind = "hangup"\n',
    )
    assert warnings(cfg) == ["nodes.lost: unreachable from start node 'm'"]


def test_the_shipped_demo_has_no_warnings() -> None:
    assert load_config(shipped_config_dir()).warnings == ()


# -- the guide's examples ------------------------------------------------------------------


NODE: TypeAdapter[Node] = TypeAdapter(Node)


def guide_examples() -> list[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "ivr.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```toml\n")[1:]]


@pytest.mark.parametrize("example", guide_examples())
def test_every_example_in_the_guide_is_a_valid_node(example: str) -> None:
    data = tomllib.loads(example)
    for node in data.get("nodes", {}).values():
        NODE.validate_python(node)
    if "prompt" in data:  # the shapes of a prompt, shown alone
        NODE.validate_python({"kind": "play", **data})
    if "defaults" in data.get("flow", {}):
        FlowDefaults.model_validate(data["flow"]["defaults"])
