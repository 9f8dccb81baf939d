"""The knowledge base: config validation, search by words and intents, the HTTP route."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ccserver.config import ConfigError, load_config, shipped_config_dir
from ccserver.events import EventBus
from cti.api import ApiSettings, build_app
from cti.auth import Authenticator
from cti.knowledge import KNOWLEDGE, KnowledgeBase
from tests.unit.test_cti_api import AGENT, SUP, TOKENS, FakeContacts, FakeControl, auth, error

DEMO = load_config(shipped_config_dir())


@pytest.fixture
def kb() -> KnowledgeBase:
    return KnowledgeBase(DEMO.articles)


def ids(found: list[Any]) -> list[str]:
    return [s.id for s in found]


def test_the_demo_articles_load_in_both_languages() -> None:
    languages = {a.language for a in DEMO.articles.values()}
    assert {"en", "zh"} <= languages
    assert {"card-lost", "card-lost-zh", "balance", "opening-hours"} <= set(DEMO.articles)


def test_an_intent_of_the_call_suggests_its_articles_in_the_caller_s_language(
    kb: KnowledgeBase,
) -> None:
    assert ids(kb.search(intents=["card-lost"], language="en")) == ["card-lost"]
    assert ids(kb.search(intents=["card-lost"], language="zh")) == ["card-lost-zh"]
    # The flow nodes a caller went through count as what the IVR recognised.
    assert ids(kb.search(intents=["language", "ask_account"], language="en")) == ["balance"]
    assert kb.search(intents=["nothing-like-it"]) == []


def test_words_match_keywords_title_and_body_and_rank_by_score(kb: KnowledgeBase) -> None:
    found = kb.search("lost card", language="en")
    assert ids(found)[0] == "card-lost"
    assert found[0].score == 10 and found[0].matched == ("keyword:lost", "keyword:card")
    assert ids(kb.search("SWIFT", language="en")) == ["international-wire"]
    # Chinese without spaces: a keyword inside the sentence.
    assert ids(kb.search("我的卡丢了", language="zh")) == ["card-lost-zh"]
    # No article in the wanted language matched: the others are offered.
    assert ids(kb.search("swift", language="zh")) == ["international-wire"]


def test_limit_and_ties_keep_the_file_order(kb: KnowledgeBase) -> None:
    both = kb.search(intents=["cards"])
    assert ids(both) == ["card-lost", "card-lost-zh"]
    assert ids(kb.search(intents=["cards"], limit=1)) == ["card-lost"]


def test_a_bad_article_is_refused_at_start_with_file_key_and_reason(tmp_path: Path) -> None:
    cfg = tmp_path / "config"
    shutil.copytree(shipped_config_dir(), cfg)
    (cfg / "knowledge.toml").write_text(
        '[articles.no-body]\ntitle = "Lost card"\n\n'
        '[articles.bad-lang]\ntitle = "x"\nbody = "y"\nlanguage = "english please"\n\n'
        '[articles.typo]\ntitle = "x"\nbody = "y"\nkeyword = ["card"]\n\n'
        '[articles."9 lives"]\ntitle = "x"\nbody = "y"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(cfg)
    problems = {(e.key, e.file.rsplit("/", 1)[-1]): e.reason for e in caught.value.errors}
    assert ("articles.no-body.body", "knowledge.toml") in problems, problems
    assert ("articles.bad-lang.language", "knowledge.toml") in problems, problems
    assert ("articles.typo.keyword", "knowledge.toml") in problems, problems
    assert ("articles.9 lives", "knowledge.toml") in problems, problems


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(kb: KnowledgeBase) -> AsyncIterator[Client]:
    app = build_app(
        control=FakeControl(),
        bus=EventBus(),
        auth=Authenticator.from_tokens(TOKENS),
        contacts=FakeContacts(),
        settings=ApiSettings(),
    )
    app[KNOWLEDGE] = kb
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_route_searches_by_words_and_repeated_intents(client: Client) -> None:
    resp = await client.get(
        "/api/knowledge",
        params=[("intent", "language"), ("intent", "cards"), ("lang", "zh")],
        headers=auth(AGENT),
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["intents"] == ["language", "cards"]
    (article,) = body["articles"]
    assert article["id"] == "card-lost-zh" and article["title"] == "银行卡挂失"
    assert article["matched"] == ["intent:cards"] and "冻结" in article["body"]
    resp = await client.get("/api/knowledge", params={"q": "opening hours"}, headers=auth(SUP))
    assert (await resp.json())["articles"][0]["id"] == "opening-hours"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": "  "}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "card", "limit": "0"}, "limit"),
        ({"q": "card", "limit": "21"}, "limit"),
        ({"q": "card", "lang": "not a language"}, "lang"),
        ({"intent": "x" * 101}, "intent"),
    ],
)
async def test_bad_queries_are_422_naming_the_field(
    client: Client, params: dict[str, str], field: str
) -> None:
    body = await error(
        await client.get("/api/knowledge", params=params, headers=auth(AGENT)),
        422,
        "invalid-query",
    )
    assert field in [e["field"] for e in body["details"]["errors"]], body


async def test_route_needs_a_token(client: Client) -> None:
    await error(await client.get("/api/knowledge", params={"q": "card"}), 401, "unauthorized")
