"""The instruction grammar: the patterns that recognise phrasings (see :mod:`.parse`).

Text is first cleaned (lower case, punctuation dropped, politeness such as "could you ...
please" removed), then matched in full against the ordered :data:`PATTERNS`. Slots ``x``
(instrument), ``y`` (new instrument) and ``s`` (style) are resolved by :func:`resolve_phrase`,
which drops articles, adjectives and filler nouns ("the funky bass part" -> "bass").
"""

from __future__ import annotations

import re
from collections.abc import Callable

_THING = r"(?:mix|song|track|tune|music|piece|recording|arrangement|audio|clip|whole thing|rest)"
_IT = (r"(?:this|that|it|everything|the " + _THING + r"|this (?:song|track|tune|piece|clip|mix"
       r"|one|music)|the whole (?:song|track|thing))")
_PREP = (r"(?:to|on|in|into|from|out of|over|under|underneath|with|within|throughout|across|of"
         r"|for|behind|alongside)")
#: Optional trailing words that carry no meaning for the edit ("... to this track too").
_FILLER = (r"(?: (?:on top(?: of (?:it|this|that|everything))?|too|as well|also|here|again"
           r"|instead|anymore|any more|now|please|in there|altogether|completely|entirely"
           r"|for me|in the (?:background|back)|" + _PREP + " " + _IT + "))*")
_ALONE = r"(?: (?:alone|on its own|by itself|only|solo|soloed|isolated))?"
_V_REMIX = (r"(?:remix|rearrange|re arrange|rework|reimagine|re imagine|restyle|reinterpret"
            r"|redo|arrange|recast|reinvent|cover|adapt|play|perform|do|render)")
_V_EXTRACT = r"(?:extract|isolate|solo|separate out|separate|split out|unmix|demix|bounce)"
_V_REMOVE = (r"(?:remove|delete|mute|drop|cut|kill|lose|silence|ditch|eliminate|erase|subtract"
             r"|strip out|strip|take out|leave out|cut out|filter out|get rid of|take away"
             r"|turn off|switch off|knock out|throw out|nix|scrap)")
_V_ADD = (r"(?:add in|add|bring in|throw in|put in|drop in|mix in|layer in|layer|include|insert"
          r"|overdub|introduce|stack|put|place|lay down|blend in)")
_EVERYTHING = (r"(?:everything|all|anything|all the rest|the rest|every other (?:instrument|part"
               r"|track)|all (?:the )?other (?:instruments|parts|tracks)|all instruments"
               r"|all parts)")
_BUT = r"(?:but|except(?: for)?|other than|apart from|besides|save|aside from)"

_SOURCES: list[tuple[str, str]] = [
    # replace X with Y
    ("replace", r"(?:replace|swap|switch|exchange|trade) <X> out (?:with|for) <Y>"),
    ("replace", r"(?:replace|swap|switch|exchange|trade)(?: out)? <X> (?:with|for|by|to|into) <Y>"),
    ("replace", r"substitute <X> with <Y>"),
    ("replace", r"substitute <Y> for <X>"),
    ("replace", r"(?:change|turn|convert|transform|make) <X> (?:into|to) <Y>"),
    ("replace", r"(?:use|put|try) <Y> instead of <X>"),
    ("replace", r"instead of <X> (?:use|put|try|have|play) <Y>"),
    ("replace", r"<Y> instead of <X>"),
    ("replace", r"(?:play|do|perform|redo) <X> (?:part|parts|line|melody)"
                r" (?:on|with|using|as) <Y>"),
    ("replace", r"(?:have|let|get) <Y> (?:play|take over|take|cover|double|replace) <X>"),
    # remix (to style S)
    ("remix", r"<VR>(?: <IT>)? (?:as|in|into|to|like) <S>"),
    ("remix", r"(?:make|turn|convert|change|transform|switch) <IT> (?:into|to|in) <S>"),
    ("remix", r"make <IT> (?:sound|feel) (?:like |more |more like )?<S>"),
    ("remix", r"make <IT> <S>"),
    ("remix", r"give <IT> (?:a|an|some) <S>"),
    ("remix", r"(?:give me|make|do|create|produce|try|let's do|can i get|can i have|i want"
              r"|i'd like) (?:a|an|some) <S>"
              r" (?:version|remix|cover|rendition|take|arrangement|edit)(?: of <IT>)?"),
    ("remix", r"(?:a |an )?<S> (?:version|remix|cover|rendition|take|arrangement|style|edit)"
              r"(?: of <IT>)?"),
    ("remix", r"(?:change|switch|set) the (?:style|genre) (?:to|into) <S>"),
    ("remix", r"(?:how would|what if|what would) <IT> (?:sound|sounded|be) (?:as|like|in) <S>"),
    ("remix", r"(?:in|as) <S>"),
    ("remix", r"<S> (?:it|this|that) up"),
    # remix without a style
    ("remix", r"(?:remix|rearrange|re arrange|restyle|rework|reimagine|reinvent)(?: <IT>)?"
              r"(?: in (?:a |an )?(?:new|different|another|other|fresh) (?:style|genre|way))?"),
    ("remix", r"(?:give me|make|do|create|produce|try) (?:a |an )?(?:new |different |fresh )?"
              r"(?:remix|rearrangement)(?: of <IT>)?"),
    # extract X
    ("extract", r"<VE> (?:only |just )?<X><ALONE>"),
    ("extract", r"(?:keep|leave|give me|get|play|output|return|export|want|i want|i need"
                r"|bring out|let through) (?:only|just) <X><ALONE>"),
    ("extract", r"(?:keep|leave|give me|get|play|output|return|export) <X>"
                r" (?:alone|on its own|by itself|only|solo|soloed|isolated)"),
    ("extract", r"(?:i )?(?:only|just) (?:want (?:to hear )?|need (?:to hear )?|hear )?<X><ALONE>"),
    ("extract", r"(?:let me )?hear (?:only|just) <X>"),
    ("extract", r"<X> (?:only|alone|on its own|by itself|solo|soloed|isolated)"),
    ("extract", r"(?:" + _V_REMOVE[3:-1] + r") " + _EVERYTHING + r" " + _BUT + r" <X>"),
    ("extract", r"(?:nothing|no instruments?) " + _BUT + r" <X>"),
    ("extract", r"(?:give me|get|grab|export|bounce|output) <X> (?:stem|track)"),
    # remove X
    ("remove", r"<VRM> <X>"),
    ("remove", r"(?:take|cut|leave|strip|filter|knock|throw|mute) <X> out"),
    ("remove", r"(?:take|turn|switch) <X> (?:away|off)"),
    ("remove", r"(?:make|play|do|render|give me|i want) <IT> without <X>"),
    ("remove", r"without <X>"),
    ("remove", r"no (?:more )?<X>"),
    ("remove", r"(?:i )?(?:don't|do not|dont) (?:want|need|like)(?: to hear)? <X>"),
    ("remove", r"(?:keep|leave|play) everything " + _BUT + r" <X>"),
    ("remove", r"<X> (?:has|have|need|needs|must|should) (?:to )?(?:go|be removed|be muted)"),
    # add X
    ("add", r"<VA> <X>"),
    ("add", r"(?:have|let|get) <X> (?:join|join in|come in|play along|chime in|enter)"),
    ("add", r"(?:give|let) <IT> (?:have )?<X>"),
    ("add", r"(?:hear|have|get) <X>"),
    ("add", r"(?:i want|i'd like|i would like|i need|we need|i'd love|i wanna hear|let's have)"
            r" <X>"),
    ("add", r"<IT> (?:needs|could use|should have|deserves|wants|lacks|is missing) <X>"),
    ("add", r"(?:can|could) <IT> (?:have|get|use) <X>"),
    ("add", r"(?:accompany|back|back up|support|double|enrich|augment|complement|fill out|fill"
            r"|thicken|decorate|embellish|sweeten) <IT>(?: up)? with <X>"),
]


def _compile(src: str) -> re.Pattern[str]:
    for token, rx in (("<X>", r"(?P<x>.+?)"), ("<Y>", r"(?P<y>.+?)"), ("<S>", r"(?P<s>.+?)"),
                      ("<IT>", _IT), ("<ALONE>", _ALONE), ("<VR>", _V_REMIX),
                      ("<VE>", _V_EXTRACT), ("<VRM>", _V_REMOVE), ("<VA>", _V_ADD)):
        src = src.replace(token, rx)
    return re.compile(src + _FILLER)


#: (task, pattern) in priority order; a pattern wins only if all its slots resolve.
PATTERNS: list[tuple[str, re.Pattern[str]]] = [(t, _compile(s)) for t, s in _SOURCES]

_PREFIXES = sorted([
    "please", "pls", "plz", "kindly", "could you", "can you", "would you", "will you",
    "could we", "can we", "i'd like you to", "i would like you to", "i want you to",
    "i need you to", "i want to", "i'd like to", "i would like to", "we need to", "i need to",
    "go ahead and", "now", "ok", "okay", "hey", "hi", "so", "and", "also", "then", "first",
    "firstly", "next", "finally", "lastly", "try to", "try and", "maybe", "let's", "lets",
    "let us", "let me",
], key=len, reverse=True)
_SUFFIXES = sorted([
    "please", "pls", "plz", "thanks", "thank you", "thx", "for me", "if you can",
    "if possible", "if you could", "if you don't mind", "now", "ok", "okay", "right now",
], key=len, reverse=True)


def clean(text: str) -> str:
    """Lower case, unify quotes, drop punctuation (keeping in-word apostrophes)."""
    s = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("&", " and ")
    s = re.sub(r"[^a-z0-9' ]+", " ", s)
    s = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", s)
    return " ".join(s.split())


def strip_politeness(s: str) -> str:
    """Remove leading/trailing politeness and sequencing words from cleaned text."""
    changed = True
    while changed and s:
        changed = False
        for p in _PREFIXES:
            if s == p or s.startswith(p + " "):
                s, changed = s[len(p):].strip(), True
                break
        for p in _SUFFIXES:
            if s == p or s.endswith(" " + p):
                s, changed = s[: len(s) - len(p)].strip(), True
                break
    return s


_CHAIN = re.compile(r"\s*(?:[;\n]+|(?<=[.!?])\s+|,?\s*\b(?:and then|then|after that|afterwards"
                    r"|and finally|and lastly)\b,?)\s*", re.IGNORECASE)


def split_chain(text: str) -> list[str]:
    """Raw text -> clauses at ';', sentence ends and 'then' / 'after that' (empties dropped)."""
    return [c for c in _CHAIN.split(text) if c and clean(c)]


_DETERMINERS = {
    "a", "an", "the", "some", "any", "more", "my", "our", "your", "that", "this", "those",
    "these", "all", "of", "its", "another", "extra", "additional", "one", "new", "little",
    "bit", "lot", "very", "really", "much", "nice", "different", "other",
}
_FUNCTION = {
    "in", "out", "of", "on", "off", "with", "without", "to", "into", "for", "from", "and", "or",
    "but", "except", "not", "no", "instead", "by", "away", "up", "down", "over", "under",
    "than", "then", "is", "are", "it", "plus",
}
_TRAILING = {
    "instrument": {
        "part", "parts", "track", "tracks", "sound", "sounds", "stem", "stems", "layer",
        "layers", "line", "lines", "player", "players", "section", "sections", "instrument",
        "instruments", "channel", "audio", "only", "alone", "solo", "accompaniment", "melody",
        "riff", "riffs", "chords", "groove", "loop", "sample",
    },
    "style": {
        "music", "song", "songs", "version", "style", "styled", "track", "tune", "piece",
        "feel", "vibe", "vibes", "remix", "arrangement", "genre", "sound", "cover", "rendition",
        "take", "mix", "kind", "type", "thing", "number", "edit", "flavor", "flavour", "groove",
    },
}
_STYLE_OF = re.compile(r"^(?:(?:the|a|an) )?(?:style|genre|kind|sort|type|manner) of ")
_MAX_DROP = 3


def strip_determiners(phrase: str) -> str:
    """Drop leading articles and quantifiers: "all the drums" -> "drums"."""
    words = phrase.split()
    while words and words[0] in _DETERMINERS:
        words = words[1:]
    return " ".join(words)


def resolve_phrase(phrase: str, kind: str, resolve: Callable[[str], str | None]) -> str | None:
    """Slot text -> class/style via ``resolve``, trying the whole phrase, then without
    trailing filler nouns, then without up to 3 leading adjectives. ``None`` if nothing fits.
    """
    if kind == "style":
        phrase = _STYLE_OF.sub("", phrase)
    words = strip_determiners(phrase).split()
    trailing = _TRAILING[kind]
    for drop in range(min(_MAX_DROP, len(words)) + 1):
        if any(w in _FUNCTION for w in words[:drop]):
            break
        cand = words[drop:]
        while cand:
            hit = resolve(" ".join(cand))
            if hit is not None:
                return hit
            if cand[-1] not in trailing:
                break
            cand = cand[:-1]
    return None
