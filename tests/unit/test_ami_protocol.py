"""The AMI framer and serialiser, whole and byte by byte."""

from __future__ import annotations

import pytest

from cti.ami.protocol import (
    BANNER,
    LocalProtocolError,
    Message,
    Parser,
    RemoteProtocolError,
    clean,
    serialize,
)

LOGIN = (
    b"Action: Login\r\nActionID: 1\r\nUsername: crm\r\nSecret: s:e:cret\r\nEvents: off\r\n\r\n"
    b"Action: Setvar\r\nChannel: PJSIP/trunk-00000001\r\n"
    b"Variable: A=1\r\nVariable: B=2\r\n\r\n"
)


class TestParser:
    def feed(self, parser: Parser, data: bytes) -> None:
        parser.receive_data(data)

    def parse(self, data: bytes) -> list[Message]:
        parser = Parser()
        self.feed(parser, data)
        return list(parser.messages())

    def test_two_blocks(self) -> None:
        login, setvar = self.parse(LOGIN)
        assert login.action == "login"
        assert login.get("username") == "crm"
        assert login.get("Secret") == "s:e:cret"  # only the first colon splits
        assert login.get("ActionID") == "1"
        assert setvar.get_all("Variable") == ["A=1", "B=2"]
        assert "Channel" in setvar and "Nope" not in setvar

    def test_incomplete_block_waits(self) -> None:
        parser = Parser()
        self.feed(parser, b"Action: Ping\r\nActionID: 7\r\n")
        assert parser.next_message() is None
        self.feed(parser, b"\r\n")
        msg = parser.next_message()
        assert msg is not None and msg.pairs == [("Action", "Ping"), ("ActionID", "7")]

    def test_bare_lf_and_stray_lines(self) -> None:
        (msg,) = self.parse(b"\r\n\r\nAction: Ping\nnot a header\nActionID: x\n\n")
        assert msg.pairs == [("Action", "Ping"), ("ActionID", "x")]

    def test_oversized_block_is_refused(self) -> None:
        parser = Parser(max_message=64)
        with pytest.raises(RemoteProtocolError):
            self.feed(parser, b"Action: Ping\r\nX: " + b"y" * 100)

    def test_many_small_blocks_are_not_oversized(self) -> None:
        assert len(self.parse(b"Action: Ping\r\n\r\n" * 10_000)) == 10_000


class TestParserByteByByte(TestParser):
    """The same cases with the stream cut into single bytes (as Twisted's SIP tests do)."""

    def feed(self, parser: Parser, data: bytes) -> None:
        for i in range(len(data)):
            parser.receive_data(data[i : i + 1])


def test_serialize_round_trip() -> None:
    pairs = [("Response", "Success"), ("ActionID", "42"), ("Message", "Authentication accepted")]
    raw = serialize(pairs)
    assert raw == (b"Response: Success\r\nActionID: 42\r\nMessage: Authentication accepted\r\n\r\n")
    parser = Parser()
    parser.receive_data(raw)
    msg = parser.next_message()
    assert msg is not None and msg.pairs == pairs and bytes(msg) == raw


def test_serialize_refuses_line_breaks() -> None:
    with pytest.raises(LocalProtocolError):
        serialize([("CallerIDName", "a\r\nEvent: Fake")])
    with pytest.raises(LocalProtocolError):
        serialize([("Bad:Key", "x")])
    assert clean("a\r\nb\nc") == "a b c"


def test_banner() -> None:
    assert BANNER == b"Asterisk Call Manager/6.0.0\r\n"
