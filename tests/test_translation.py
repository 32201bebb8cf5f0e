"""The Chinese edition's catalogues (issue 21):
locale/zh_CN/LC_MESSAGES/**/*.po.

- Every catalogue listed in locale/zh_CN/final.txt is complete: no
  untranslated and no fuzzy message. The others are reported by file
  (skipped, with their counts) until a translator finishes them and lists
  them there.
- In every translated message, the formulas ($...$), the inline code, the
  emphasis (as CommonMark renders it) and the targets of the MyST roles
  ({term}, {doc}, {ref}, {numref}, {cite}, ...) are those of the English.
- Terms: wherever an English message of a final catalogue uses a glossary
  term, its translation uses that entry's Chinese term, and no translation
  uses a rendering the glossary replaced (回合 for episode, 内循环 for inner
  loop, ...).

Needs only Babel (installed with Sphinx); the catalogues are updated by
``python tools/i18n.py gettext`` (``make gettext``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

babel_pofile = pytest.importorskip("babel.messages.pofile")

ROOT = Path(__file__).resolve().parents[1]
PO_DIR = ROOT / "locale" / "zh_CN" / "LC_MESSAGES"
FINAL_LIST = ROOT / "locale" / "zh_CN" / "final.txt"
GLOSSARY = ROOT / "chapters" / "glossary.md"

# renderings the glossary replaced (issue 21); none may appear in a translation
RETIRED = {"回合": "episode · 情景", "中心核对齐": "CKA · 中心化核对齐"}
# English synonyms of a glossary term (regular expression -> the term)
ALIASES = {r"permutation feature importance": "permutation importance"}


def _catalogues() -> list[str]:
    return sorted(str(p.relative_to(PO_DIR)) for p in PO_DIR.rglob("*.po"))


def _final() -> list[str]:
    lines = FINAL_LIST.read_text(encoding="utf-8").splitlines()
    return [
        line.strip()
        for line in lines
        if line.strip() and not line.startswith("#")
    ]


def _messages(rel: str) -> list:
    with (PO_DIR / rel).open("rb") as f:
        catalog = babel_pofile.read_po(f)
    return [m for m in catalog if m.id]


def _glossary_terms() -> list[tuple[str, str, list[str]]]:
    """(English, Chinese term, alternatives in parentheses) per entry with a
    Chinese part."""
    terms, inside = [], False
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.startswith("```{glossary}")
            continue
        if inside and line and not line[0].isspace() and " · " in line:
            english, chinese = line.split(" · ", 1)
            terms.append(
                (
                    english.strip(),
                    re.sub(r"（[^）]*）", "", chinese).strip(),
                    re.findall(r"（([^）]*)）", chinese),
                )
            )
    return terms


ROLE = re.compile(r"\{([a-z:-]+)\}`([^`]*)`")
CODE = re.compile(r"(?<![}`])`([^`]+)`")
MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.S)


def _role_targets(text: str) -> Counter:
    targets = Counter()
    for role, content in ROLE.findall(text):
        explicit = re.search(r"<([^<>]*)>\s*$", content)
        if role == "cite" or explicit is None:
            targets[
                (
                    role,
                    (
                        content.strip()
                        if explicit is None or role == "cite"
                        else explicit.group(1)
                    ),
                )
            ] += 1
        else:
            targets[(role, explicit.group(1))] += 1
    return targets


def _without_roles(text: str) -> str:
    return ROLE.sub(" ", text)


def _code(text: str) -> Counter:
    return Counter(CODE.findall(_without_roles(text)))


def _math(text: str) -> Counter:
    return Counter(m.strip() for m in MATH.findall(_without_roles(text)))


def _emphasis(text: str) -> Counter:
    """Emphasis and bold as CommonMark renders them.

    Chinese has no spaces, and CommonMark only closes ``**`` that is not
    preceded by punctuation unless punctuation or a space follows:
    ``**你需要了解：**通过`` shows its asterisks. Put the punctuation outside
    (``**你需要了解**：``) or a space beside.
    """
    from markdown_it import MarkdownIt

    html = MarkdownIt("commonmark").render(text)
    return Counter(
        {"<em>": html.count("<em>"), "<strong>": html.count("<strong>")}
    )


def test_there_are_catalogues_and_the_final_list_names_them():
    cats = _catalogues()
    assert cats, f"no catalogue in {PO_DIR}: run `make gettext`"
    missing = [f for f in _final() if f not in cats]
    assert (
        not missing
    ), f"{FINAL_LIST.name} lists catalogues that do not exist: {missing}"


@pytest.mark.parametrize("rel", _catalogues())
def test_catalogue_is_translated(rel):
    msgs = _messages(rel)
    empty = [m.id for m in msgs if not m.string]
    fuzzy = [m.id for m in msgs if m.fuzzy]
    if rel not in _final():
        if empty or fuzzy:
            pytest.skip(
                f"{rel}: {len(empty)} untranslated, {len(fuzzy)} fuzzy of "
                f"{len(msgs)} "
                f"(not yet listed in locale/zh_CN/final.txt)"
            )
        return
    report = [f"untranslated: {m[:70]!r}" for m in empty] + [
        f"fuzzy: {m[:70]!r}" for m in fuzzy
    ]
    assert (
        not report
    ), f"{rel}: {len(empty)} untranslated, {len(fuzzy)} fuzzy:\n" + "\n".join(
        report
    )


@pytest.mark.parametrize("rel", _catalogues())
def test_formulas_code_and_roles_are_intact(rel):
    problems = []
    for m in _messages(rel):
        if not m.string or m.fuzzy:  # Sphinx does not use a fuzzy translation
            continue
        for what, extract in (
            ("role targets", _role_targets),
            ("formulas", _math),
            ("inline code", _code),
            ("emphasis", _emphasis),
        ):
            want, got = extract(m.id), extract(m.string)
            if want != got:
                problems.append(
                    f"{what} differ in {m.id[:60]!r}: "
                    f"missing {dict(want - got)}, extra {dict(got - want)}"
                )
    assert not problems, f"{rel}:\n" + "\n".join(problems)


def _english_pattern(english: str) -> re.Pattern:
    words = [re.escape(w) for w in re.split(r"[\s-]+", english)]
    # a term in its usual inflections: plural, past participle, -ing, -ation
    return re.compile(
        r"\b" + r"[\s-]+".join(words) + r"(?:s|es|d|ed|ing|ation|ations)?\b",
        re.I,
    )


def _prose(text: str) -> str:
    """A message without its role targets, inline code and formulas (where
    terms stay English)."""
    text = ROLE.sub(
        lambda m: (
            re.sub(r"<[^<>]*>\s*$", "", m.group(2))
            if m.group(1) == "term"
            else " "
        ),
        text,
    )
    return MATH.sub(" ", CODE.sub(" ", text))


def test_glossary_has_the_issue_terms():
    chinese = {c for _, c, _ in _glossary_terms()}
    for term in (
        "内部循环",
        "外部循环",
        "模型相关方法",
        "中心化核对齐",
        "情景",
        "黑盒",
        "调试、改进、信任",
        "通用学习策略",
        "基于梯度的元学习",
        "基于度量学习的元学习",
        "参数初始化",
        "预训练模型",
        "目标函数",
        "欧氏距离",
        "低维空间",
        "样本对",
        "共享参数",
        "局部可解释模型",
        "注意力机制可视化",
        "神经元激活分析",
        "批量规范化",
        "直推式",
        "原型",
        "留一法",
        "影响函数",
    ):
        assert (
            term in chinese
        ), f"glossary.md has no entry with the Chinese term {term}"


@pytest.mark.parametrize("rel", _final())
def test_translations_use_the_glossary_terms(rel):
    """Where the English uses a glossary term, the Chinese uses the
    glossary's Chinese term."""
    terms = [
        (e, c, alts, _english_pattern(e)) for e, c, alts in _glossary_terms()
    ]
    term_lines = {f"{e} · {c}" for e, c, _ in _glossary_terms()}
    retired = dict(RETIRED)
    for e, c, alts in _glossary_terms():
        for alt in alts:
            retired.setdefault(alt, f"{e} · {c}")
    problems = []
    for m in _messages(rel):
        if (
            not m.string
            or m.fuzzy
            or m.string == m.id
            or any(m.id.startswith(t) for t in term_lines)
        ):
            # untranslated (reported above), or a glossary entry's own name
            continue
        english, chinese = _prose(m.id), _prose(m.string)
        for alias, term in ALIASES.items():
            english = re.sub(alias, term, english, flags=re.I)
        # longest terms first, each match removed, so that "inner loop" inside
        # "first-order MAML's inner loop" or "meta-learning" inside
        # "gradient-based meta-learning" is checked once, as the longer term
        for e, c, _, pattern in sorted(terms, key=lambda t: -len(t[0])):
            found = pattern.search(english)
            english = pattern.sub(" ", english)
            # an acronym (MAML, ANIL, CKA) may stay as it is, as Chinese texts
            # keep it
            acronym = e.isupper() and re.search(
                rf"\b{re.escape(e)}\b", chinese
            )
            if found and c not in chinese and not acronym:
                problems.append(f"{e!r} not rendered {c!r} in {m.id[:60]!r}")
        for old, entry in retired.items():
            if old in chinese and not any(
                old in c and c in chinese
                for _, c, _ in _glossary_terms()
                if c != old
            ):
                problems.append(
                    f"{old!r} used (glossary: {entry}) in {m.string[:40]!r}"
                )
    assert not problems, f"{rel}:\n" + "\n".join(problems)
