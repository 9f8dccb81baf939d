"""The shipped Demo Bank line (config/flows/bank.toml), walked end to end.

A scripted caller plays each prompt to its end (or interrupts it), presses
keys, speaks, and the directory answers lookups the way the CTI module does
for the demo customers; the wall clock is pinned to a known day.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ccserver.config import load_config
from ccserver.config.flows import ANY_LANGUAGE, PlayNode
from ivr.flow import (
    Enqueue,
    FlowRun,
    Hangup,
    Lookup,
    Play,
    RequestCallback,
    SetAttribute,
    StartSpeech,
    Step,
    SurveyScore,
    Wait,
)
from ivr.schedule import fixed_wall_clock
from ivr.speech import SpeechResult

TUESDAY_NOON = datetime(2025, 6, 3, 10, 0, tzinfo=UTC)  # 12:00 in Paris: open
SUNDAY = datetime(2025, 6, 8, 10, 0, tzinfo=UTC)
CHRISTMAS = datetime(2025, 12, 25, 10, 0, tzinfo=UTC)  # a Thursday

ALICE = {  # standard customer C0001, as the call model maps a cti Customer
    "customer_id": "C0001",
    "customer_name": "Alice Martin",
    "tier": "standard",
    "customer_language": "en",
}
YUJIN = {
    "customer_id": "C0011",
    "customer_name": "최유진",
    "tier": "VIP",
    "customer_language": "ko",
}


class Caller:
    """One scripted call: every action the flow returned is kept in order."""

    def __init__(self, caller: str = "0600000001", when: datetime = TUESDAY_NOON) -> None:
        config = load_config()
        self.run = FlowRun(
            config.flows["bank"],
            "bank",
            flows=config.flows,
            variables={"caller": caller, "dialed": "5000"},
            wall_clock=fixed_wall_clock(when),
            call_id="test",
        )
        self.now = 0.0
        self.actions: list[Any] = []
        self.take(self.run.start(self.now))

    def take(self, actions: list[Any]) -> list[Any]:
        self.actions += actions
        return actions

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now

    @property
    def waiting_for_prompt(self) -> bool:
        last = [a for a in self.actions if not isinstance(a, Step | StartSpeech | SetAttribute)]
        return bool(last) and isinstance(last[-1], Play)

    def listen(self) -> list[Any]:
        """Hear every prompt to its end; stops when the flow waits for something else."""
        out: list[Any] = []
        while self.waiting_for_prompt:
            out += self.take(self.run.prompt_finished(self.tick(2.0)))
        return out

    def press(self, keys: str) -> list[Any]:
        out: list[Any] = []
        for key in keys:
            out += self.take(self.run.digit(key, self.tick(0.3), "rfc4733"))
        return out

    def say(self, phrase: str, confidence: float = 0.95) -> list[Any]:
        self.take(self.run.speech_started(self.tick(0.2)))
        result = SpeechResult("match", phrase, confidence, phrase, 1.2)
        return self.take(self.run.speech_result(result, self.tick(1.0)))

    def directory(self, customer: dict[str, Any] | None) -> list[Any]:
        return self.take(self.run.lookup_result(customer, self.tick(0.1)))

    def silence(self) -> list[Any]:
        assert self.run.deadline is not None
        self.now = self.run.deadline
        return self.take(self.run.handle_timer(self.now))

    def heard(self) -> list[tuple[str, str]]:
        return [(a.text, a.voice) for a in self.actions if isinstance(a, Play)]

    def steps(self, kind: str) -> list[dict[str, Any]]:
        return [a.data for a in self.actions if isinstance(a, Step) and a.type == kind]

    def last(self, kind: type) -> Any:
        return [a for a in self.actions if isinstance(a, kind)][-1]

    def nodes(self) -> list[str]:
        return [data["node"] for data in self.steps("node")]


def choose(language_key: str, customer: dict[str, Any] | None = ALICE, **kw: Any) -> Caller:
    call = Caller(**kw)
    call.listen()  # the greeting
    call.press(language_key)  # during the language menu
    call.directory(customer)
    call.listen()
    return call


# -- DID 5000 as the integration tests see it ---------------------------------------------


def test_key_0_during_the_language_menu_reaches_the_general_queue() -> None:
    """The timeline the SIPp tests expect: greeting, menu prompt, key, branch, queue."""
    call = Caller()
    call.take(call.run.prompt_finished(call.tick(1.7)))  # the greeting ends
    out = call.press("0")  # during "For service in English, press 1."
    types = [a.type for a in call.actions if isinstance(a, Step)]
    assert types == ["node", "prompt", "node", "prompt", "digit", "branch", "node"]
    assert call.steps("node")[1] == {"node": "language", "kind": "menu"}
    assert call.steps("branch") == [{"node": "language", "digit": "0", "to": "agent"}]
    assert out[-1] == Enqueue("general", 0, {}, None)


def test_key_0_during_the_greeting_is_typed_ahead() -> None:
    call = Caller()
    out = call.press("0")
    assert [a.type for a in out if isinstance(a, Step)] == ["digit", "node", "branch", "node"]
    assert out[-1] == Enqueue("general", 0, {}, None)
    assert call.steps("branch")[-1]["to"] == "agent"


def test_no_choice_of_language_carries_on_in_english() -> None:
    call = Caller()
    call.listen()
    call.silence()
    call.listen()
    out = call.silence()
    assert call.steps("fallback") == [{"node": "language", "why": "no_input", "to": "english"}]
    assert out[-2] == Lookup("number", "0600000001") and isinstance(out[-1], Wait)
    assert call.run.variables["language"] == "en"


# -- English ---------------------------------------------------------------------------------


def test_english_balance_by_account_number() -> None:
    call = choose("1")
    assert call.last(StartSpeech) == StartSpeech(("balance", "agent"), "en", 5.0, 0.5)
    assert call.heard()[-1][0].startswith("For your account balance, press 1")
    call.press("1")
    call.listen()
    out = call.press("100001")  # six digits: no hash needed
    assert call.steps("collected")[-1]["value"] == "100001"
    assert Lookup("account", "ACC-100001") in out
    call.directory({**ALICE, "account_balance": "1523.40"})
    assert call.heard()[-1] == ("The balance of account 1 0 0 0 0 1 is 1523.40 euros.", "en")
    call.listen()
    assert call.nodes()[-1] == "main_menu"
    assert SetAttribute("account", "100001") in call.actions


def test_english_balance_by_voice() -> None:
    call = choose("1")
    call.say("balance")
    assert call.steps("branch")[-1] == {
        "node": "main_menu",
        "phrase": "balance",
        "to": "ask_account",
    }
    assert call.heard()[-1] == ("Please enter your six-digit account number.", "en")


def test_three_unknown_accounts_go_to_an_agent() -> None:
    call = choose("1")
    call.press("1")
    for attempt in range(3):
        call.listen()
        call.press("999999")
        call.directory(None)
        if attempt < 2:
            assert call.heard()[-1] == ("We could not find account 9 9 9 9 9 9.", "en")
    assert call.heard()[-1][0].startswith("We still could not find your account.")
    out = call.listen()
    assert out[-1] == Enqueue("general", 0, {"english": 5}, "standard")
    assert call.run.variables["wrong_accounts"] == 3


def test_a_short_account_number_is_asked_again() -> None:
    call = choose("1")
    call.press("1")
    call.listen()
    call.press("123")
    out = call.silence()  # inter-digit timeout with three digits
    assert call.steps("no_match")[-1]["reason"] == "too short"
    assert [a.text for a in out if isinstance(a, Play)] == ["An account number has six digits."]


def test_balance_not_known_to_the_directory_goes_to_an_agent() -> None:
    call = choose("1")
    call.press("1")
    call.listen()
    call.press("100001")
    call.directory(ALICE)  # found, but no balance in the customer record
    assert call.heard()[-1] == (
        "Thank you, Alice Martin. An agent will tell you your balance.",
        "en",
    )
    assert call.listen()[-1] == Enqueue("general", 0, {"english": 5}, "standard")


# -- 普通话 ----------------------------------------------------------------------------------


def test_mandarin_caller_reaches_card_services_by_key() -> None:
    call = choose("2", customer=None)
    assert call.heard()[-1] == (
        "查询账户余额，请按1。信用卡服务，请按2。营业时间，请按3。人工服务，请按0。",
        "zh",
    )
    assert not any(isinstance(a, StartSpeech) for a in call.actions)  # keys only in Mandarin
    out = call.press("2")
    assert out[-1] == Enqueue("cards", 0, {"mandarin": 5}, None)


def test_mandarin_opening_hours_then_back_to_the_menu() -> None:
    call = choose("2", customer=None)
    call.press("3")
    assert call.heard()[-1][1] == "zh" and "营业时间" in call.heard()[-1][0]
    call.listen()
    assert call.nodes()[-1] == "main_menu"


# -- 한국어 ----------------------------------------------------------------------------------


def test_korean_vip_asks_for_an_agent_by_voice_then_rates_the_call() -> None:
    call = choose("3", customer=YUJIN, caller="0600000011")
    assert ("최유진 고객님, 다시 찾아 주셔서 감사합니다.", "ko") in call.heard()
    assert call.last(StartSpeech) == StartSpeech(("상담원 연결",), "ko", 5.0, 0.5)
    out = call.say("상담원 연결")
    assert out[-1] == Enqueue("general", 10, {"korean": 5}, "VIP")
    assert call.run.wants_survey
    survey = call.take(call.run.agent_hung_up(call.tick(120.0)))
    assert [a.voice for a in survey if isinstance(a, Play)] == ["ko"]
    scored = call.press("5")
    assert SurveyScore(5, 5) in scored
    assert call.heard()[-1] == ("소중한 의견 감사합니다. 안녕히 계세요.", "ko")
    assert call.listen()[-1] == Hangup("flow-end")


def test_korean_timeline_and_attached_data() -> None:
    call = choose("3", customer=YUJIN, caller="0600000011")
    attached = {a.name: a.value for a in call.actions if isinstance(a, SetAttribute)}
    assert attached == {"language": "ko", "customer_name": "최유진", "tier": "VIP"}
    assert call.nodes() == [
        "welcome",
        "language",
        "korean",
        "identify",
        "is_vip",
        "vip",
        "vip_greeting",
        "hours",
        "main_menu",
    ]
    assert call.steps("lookup") == [
        {"node": "identify", "by": "number", "found": True, "customer_id": "C0011"}
    ]


def test_korean_low_confidence_is_asked_again_in_korean() -> None:
    call = choose("3", customer=None)
    call.say("상담원 연결", confidence=0.3)
    assert call.steps("no_match")[-1] == {"node": "main_menu", "attempt": 1, "by": "speech"}
    assert call.heard()[-1] == ("죄송합니다. 잘 이해하지 못했습니다.", "ko")


# -- closed ------------------------------------------------------------------------------------


def test_after_hours_offers_a_callback_and_books_it_by_voice_in_korean() -> None:
    call = choose("3", customer=None, when=SUNDAY)
    closed = call.steps("schedule")[-1]
    assert closed["open"] is False and closed["local"] == "2025-06-08T12:00+02:00"
    assert [text for text, voice in call.heard()[-3:-1]] == [
        "지금은 영업 시간이 아닙니다.",
        "영업 시간은 월요일부터 금요일까지 오전 8시부터 오후 8시까지, 토요일은 오전 9시부터 "
        "오후 1시까지입니다.",
    ]
    assert call.last(StartSpeech).phrases == ("네", "아니요")
    out = call.say("네")
    assert RequestCallback("0600000001", "general") in out
    assert call.heard()[-1][1] == "ko"
    assert call.listen()[-1] == Hangup("flow-end")


def test_after_hours_no_thanks_by_key() -> None:
    call = choose("1", customer=None, when=SUNDAY)
    call.press("2")
    assert call.heard()[-1] == ("Thank you for calling Demo Bank. Goodbye.", "en")
    assert not any(isinstance(a, RequestCallback) for a in call.actions)


def test_holidays_are_closed() -> None:
    call = choose("1", customer=None, when=CHRISTMAS)
    assert call.steps("schedule")[-1]["holiday"] is True
    assert call.nodes()[-1] == "offer_callback"


def test_silence_after_hours_says_goodbye_rather_than_queueing() -> None:
    call = choose("1", customer=None, when=SUNDAY)
    for _ in range(3):
        call.silence()
        call.listen()
    assert call.steps("fallback")[-1] == {
        "node": "offer_callback",
        "why": "no_input",
        "to": "goodbye",
    }
    assert not any(isinstance(a, Enqueue) for a in call.actions)


# -- every language everywhere ----------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh", "ko"])
def test_every_prompt_after_the_language_choice_speaks_it(language: str) -> None:
    flow = load_config().flows["bank"]
    before_choice = {"welcome", "language"}
    for name, node in flow.nodes.items():
        segments = getattr(node, "prompt", None) or ()
        if name in before_choice or not segments:
            continue
        for segment in segments:
            assert language in segment or ANY_LANGUAGE in segment, (name, segment)
    for prompt in (flow.defaults.no_input_prompt, flow.defaults.no_match_prompt):
        assert all(language in segment for segment in prompt or ())


def test_the_greeting_is_short_enough_for_the_integration_timing() -> None:
    welcome = load_config().flows["bank"].nodes["welcome"]
    assert isinstance(welcome, PlayNode) and welcome.prompt == ({"*": "Welcome to Demo Bank."},)
