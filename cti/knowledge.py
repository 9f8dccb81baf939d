"""The knowledge base: articles from ``knowledge.toml``, found by words or by what the IVR heard.

Articles are validated with the rest of the config at start (a bad one stops
the node with file, key and reason: ``ccserver.config.schema.KnowledgeArticle``)
and held in memory: a search is a scan of a few hundred short texts, far below
a millisecond, and needs no database.

``GET /api/knowledge?q=&intent=&lang=`` (agent role; route in cti/api.py):

- ``intent`` (repeatable) names what the IVR recognised for the call: its
  ``intent`` attribute, the flow nodes it went through, the phrases the speech
  recogniser heard. An article listing one of them in its ``intents`` scores 10
  per match: that is how the console suggests articles for the current call.
- ``q`` is typed text. Each word equal to a keyword scores 5, found in the
  title 3, in the body 1; a keyword found inside the text scores 2 (Chinese is
  written without spaces, so "我的卡丢了" still finds the keyword "卡").
- ``lang`` puts articles in that language first, and leaves the others out
  when any article in that language matched.

Articles that score nothing are not returned; ties keep the file's order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ccserver.calls.control import ControlError
from ccserver.config.checks import check_language
from ccserver.config.schema import KnowledgeArticle
from cti.auth import Principal
from cti.openapi import QueryParam

__all__ = ["KNOWLEDGE", "KNOWLEDGE_QUERY", "KnowledgeBase", "Suggestion", "get_knowledge"]

INTENT_SCORE = 10
KEYWORD_SCORE = 5
TITLE_SCORE = 3
BODY_SCORE = 1
KEYWORD_INSIDE_SCORE = 2
MAX_QUERY = 200
MAX_INTENTS = 20
MAX_RESULTS = 20

_WORDS = re.compile(r"\w+")


def _fold(text: str) -> str:
    return text.casefold().strip()


@dataclass(frozen=True, slots=True)
class _Prepared:
    id: str
    article: KnowledgeArticle
    title: str
    body: str
    keywords: frozenset[str]
    intents: frozenset[str]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """An article that matched, with its score and what it matched on."""

    id: str
    title: str
    body: str
    language: str
    keywords: tuple[str, ...]
    intents: tuple[str, ...]
    score: float
    matched: tuple[str, ...]


class KnowledgeBase:
    """The configured articles, searched in memory."""

    def __init__(self, articles: Mapping[str, KnowledgeArticle]) -> None:
        self._articles = [
            _Prepared(
                id=key,
                article=a,
                title=_fold(a.title),
                body=_fold(a.body),
                keywords=frozenset(_fold(k) for k in a.keywords),
                intents=frozenset(_fold(i) for i in a.intents),
            )
            for key, a in articles.items()
        ]

    def __len__(self) -> int:
        return len(self._articles)

    def _score(
        self, p: _Prepared, text: str, words: Sequence[str], intents: frozenset[str]
    ) -> tuple[float, list[str]]:
        score = 0.0
        matched: list[str] = []
        for intent in sorted(intents & p.intents):
            score += INTENT_SCORE
            matched.append(f"intent:{intent}")
        for word in words:
            if word in p.keywords:
                score += KEYWORD_SCORE
                matched.append(f"keyword:{word}")
            elif word in p.title:
                score += TITLE_SCORE
                matched.append(f"title:{word}")
            elif len(word) > 1 and word in p.body:
                score += BODY_SCORE
                matched.append(f"body:{word}")
        for keyword in sorted(p.keywords):
            if keyword not in words and keyword in text:
                score += KEYWORD_INSIDE_SCORE
                matched.append(f"keyword:{keyword}")
        return score, matched

    def search(
        self,
        q: str = "",
        intents: Iterable[str] = (),
        language: str | None = None,
        limit: int = 5,
    ) -> list[Suggestion]:
        text = _fold(q)
        words = list(dict.fromkeys(_WORDS.findall(text)))
        wanted = frozenset(_fold(i) for i in intents if i.strip())
        found: list[tuple[float, bool, int, Suggestion]] = []
        for order, p in enumerate(self._articles):
            score, matched = self._score(p, text, words, wanted)
            if score <= 0:
                continue
            a = p.article
            same = language is not None and _fold(a.language) == _fold(language)
            found.append(
                (
                    score,
                    same,
                    -order,
                    Suggestion(
                        p.id, a.title, a.body, a.language, a.keywords, a.intents, score,
                        tuple(matched),
                    ),
                )
            )  # fmt: skip
        if any(same for _, same, _, _ in found):
            found = [f for f in found if f[1]]
        found.sort(key=lambda f: (f[1], f[0], f[2]), reverse=True)
        return [s for _, _, _, s in found[:limit]]


KNOWLEDGE = web.AppKey("knowledge", KnowledgeBase)

KNOWLEDGE_QUERY = (
    QueryParam("q", f"typed text, at most {MAX_QUERY} characters"),
    QueryParam(
        "intent",
        "what the IVR recognised for the call (its intent attribute, flow nodes, phrases); "
        f"repeat it for several, at most {MAX_INTENTS}; `q`, `intent` or both are required",
    ),
    QueryParam("lang", "language of the articles wanted first, e.g. en or zh"),
    QueryParam("limit", f"at most this many articles, 1 to {MAX_RESULTS} (default 5)"),
)


def _invalid(errors: list[dict[str, str]]) -> ControlError:
    names = ", ".join(e["field"] for e in errors)
    return ControlError(
        422, "invalid-query", f"invalid query parameters: {names}", {"errors": errors}
    )


async def get_knowledge(request: web.Request, who: Principal) -> Any:
    params = request.query
    q = params.get("q", "").strip()
    intents = [i.strip() for i in params.getall("intent", []) if i.strip()]
    language = params.get("lang") or None
    errors: list[dict[str, str]] = []
    if len(q) > MAX_QUERY:
        errors.append({"field": "q", "message": f"at most {MAX_QUERY} characters"})
    if len(intents) > MAX_INTENTS or any(len(i) > 100 for i in intents):
        errors.append({"field": "intent", "message": f"at most {MAX_INTENTS}, of 100 characters"})
    if not q and not intents:
        errors.append({"field": "q", "message": "give q, intent or both"})
    if language is not None:
        try:
            check_language(language)
        except ValueError as exc:
            errors.append({"field": "lang", "message": str(exc)})
    try:
        limit = int(params.get("limit", "5"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_RESULTS:
        errors.append({"field": "limit", "message": f"a whole number from 1 to {MAX_RESULTS}"})
    if errors:
        raise _invalid(errors)
    kb = request.app.get(KNOWLEDGE)
    found = kb.search(q, intents, language, limit) if kb is not None else []
    return {"query": q, "intents": intents, "articles": found}
