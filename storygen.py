"""Seeded generator of short children's stories in simple English: the embedded corpus.

    python storygen.py --n 3 --seed 0 --version 2   # print 3 stories, the vocabulary size and stories/s

Story i of a split is a pure function of (version, seed, split, i) and of the version's data files
in storygen_data/v<version>/ (or $STORYGEN_DATA/v<version>/): word tables (tables*.txt), macros
(macros.txt) and a template grammar (templates*.txt), all read by the same parsers below. A story
is a list of whitespace-free tokens from a closed vocabulary (`Stories.vocab`): lowercase words,
capitalized proper names (and week days) and separate punctuation, so a word-level tokenizer is
exact. `detokenize` makes readable text.

Version 1 (archived): one slot table is drawn per story (a protagonist with gender and pronouns, a
friend, a parent, a pet, a favourite object, a place, numbers and schema-specific fillers); then an
opening, a few introductory facts, the steps of one of about forty plot schemas and an ending are
joined and formatted with the table. What the opening introduces comes back later, correctly
inflected, which rewards long context.

Version 2 (see the section "version 2" below) adds an open lexicon with Zipf-like frequencies, more
free choices per sentence, longer stories, threads that are set up early and paid off 80-300 tokens
later, and records the log-probability of every random choice, so each story's nats are known.
"""
from __future__ import annotations

import bisect
import functools
import math
import os
import random
import re
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_ENV = "STORYGEN_DATA"  # a folder holding v1/, v2/ (a copy of storygen_data/, for experiments and tests)
VERSIONS = (1,)
LATEST = 1
_SPLITS = {"train": 0, "val": 1}


# ----------------------------------------------------------------------------- data files
def data_dir(version: int) -> str:
    if version not in VERSIONS:
        raise ValueError(f"unknown story generator version {version!r} (known: {VERSIONS})")
    return os.path.join(os.environ.get(DATA_ENV) or os.path.join(HERE, "storygen_data"), f"v{version}")


def data_files(version: int) -> list[str]:
    """Paths of the data files of a version, sorted: everything the stories depend on besides code."""
    d = data_dir(version)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"story generator data folder not found: {d}")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".txt"))


def _read(paths: list[str]) -> str:
    return "\n".join(open(p, encoding="utf-8").read() for p in paths)


class Table(list):
    """The items of one word table, in file order, plus the attributes of its header (`zipf=5`)."""
    attrs: dict


def read_tables(text: str) -> dict[str, Table]:
    """Word tables: `@name words` (items separated by white space), `@name lines` (one item per line) or
    `@name rows` (one tuple per line, fields separated by `|`), each optionally followed by key=value
    attributes; `#` starts a comment line."""
    tables, cur, kind = {}, None, None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            name, kind, *attrs = line[1:].split()
            if kind not in ("words", "lines", "rows") or name in tables:
                raise ValueError(f"line {n}: bad or repeated table header {line!r}")
            cur = tables[name] = Table()
            cur.attrs = dict(a.split("=", 1) for a in attrs)
        elif cur is None:
            raise ValueError(f"line {n}: item before any table header")
        elif kind == "words":
            cur.extend(line.split())
        elif kind == "lines":
            cur.append(" ".join(line.split()))
        else:
            cur.append(tuple(" ".join(f.split()) for f in line.split("|")))
    return tables


def read_macros(text: str, tables: dict) -> dict[str, str]:
    """`name = a|b|c` lines; `name = @table` is the choice among the items of a table."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, body = (s.strip() for s in line.partition("="))
            out[name] = "|".join(tables[body[1:]]) if body.startswith("@") else body
    return out


# ----------------------------------------------------------------------------- template grammar
# "@name !flag" starts a section; "/" starts a step ("/0.5": optional, kept with p = 0.5); every other
# line is one alternative of the current step. "[a|b|]" is an inline choice (nested groups are expanded
# into one flat choice); "<name>" is a macro; "<@table>" or "<@table.k>" draws an item (field k) of a
# word table afresh, with the table's weights; "{x}" is a slot of the story.
PLACEHOLDER = re.compile(r"\{(\w+)\}")
_MACRO = re.compile(r"<(\w+)>")
_DRAW = re.compile(r"<@(\w+)(?:\.(\d+))?>")


class Draw:
    """A part of a template line: an item drawn afresh from a word table each time the line is written."""
    __slots__ = ("table", "field")

    def __init__(self, table: str, field: int):
        self.table, self.field = table, field


class Section:
    def __init__(self, name: str, flags: frozenset):
        self.name, self.flags = name, flags
        self.steps: list[tuple[float, list[tuple[tuple, tuple]]]] = []  # (p, [(parts, slot keys)])


def _expand(line: str) -> list[str]:
    """All strings of a line whose [a|b] groups (nested or not) are expanded."""
    m = re.search(r"\[([^\[\]]*)\]", line)
    if not m:
        return [" ".join(line.split())]
    return [x for alt in m.group(1).split("|") for x in _expand(line[:m.start()] + alt + line[m.end():])]


def _parts(line: str) -> tuple:
    """A line as literal strings and tuples of choices (its top-level [..] groups), chosen per story."""
    parts, depth, start, alts = [], 0, 0, []
    for j, ch in enumerate(line):
        if ch == "[":
            if depth == 0:
                parts.append(line[start:j])
                start, alts = j + 1, []
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                alts.append(line[start:j])
                parts.append(tuple(x for a in alts for x in _expand(a)))
                start = j + 1
        elif ch == "|" and depth == 1:
            alts.append(line[start:j])
            start = j + 1
    parts.append(line[start:])
    out = []
    for p in parts:
        if isinstance(p, str):
            p = " ".join(p.split())
            if p:
                out.append(p)
        else:
            out.append(p)
    return tuple(out)


def _line_parts(line: str) -> tuple:
    """_parts, with each <@table.k> as a Draw between the literal and choice parts around it."""
    out, start = [], 0
    for m in _DRAW.finditer(line):
        out += _parts(line[start:m.start()])
        out.append(Draw(m.group(1), int(m.group(2) or 0)))
        start = m.end()
    return tuple(out) + _parts(line[start:])


def parse_templates(text: str, macros: dict[str, str], forbidden: frozenset = frozenset()) -> dict[str, Section]:
    """Sections of a template grammar. Words in `forbidden` may only come from slots (gendered words)."""
    sections, cur = {}, None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            name, *flags = line[1:].split()
            if name in sections:
                raise ValueError(f"line {n}: section {name!r} defined twice")
            cur = sections[name] = Section(name, frozenset(f[1:] for f in flags))
        elif cur is None:
            raise ValueError(f"line {n}: template line before any section")
        elif line.startswith("/"):
            cur.steps.append((float(line[1:] or 1.0), []))
        elif not cur.steps:
            raise ValueError(f"line {n}: alternative before any step ('/') in section {cur.name!r}")
        else:
            while _MACRO.search(line):
                line = _MACRO.sub(lambda m: "[" + macros[m.group(1)] + "]", line)
            words = set(re.sub(r"[\[\]|]", " ", PLACEHOLDER.sub(" ", _DRAW.sub(" ", line))).split())
            if words & forbidden:
                raise ValueError(f"line {n}: {sorted(words & forbidden)} must come from slots: {line!r}")
            cur.steps[-1][1].append((_line_parts(line), tuple(PLACEHOLDER.findall(line))))
    return sections


def _template_words(sections: dict[str, Section]) -> set[str]:
    words = set()
    for sec in sections.values():
        for _, alts in sec.steps:
            for parts, _ in alts:
                for p in parts:
                    if not isinstance(p, Draw):
                        for text in ((p,) if isinstance(p, str) else p):
                            words.update(PLACEHOLDER.sub(" ", text).split())
    return words


def _rng(seed: int, split: str, i: int) -> random.Random:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if not 0 <= i < 1 << 48:
        raise ValueError(f"story index out of range: {i}")
    # An injective integer key: distinct (seed mod 2^64, split, i) never share a stream, unlike a sum.
    return random.Random(((seed % (1 << 64)) << 52) | (_SPLITS[split] << 48) | i)


def _zipf(items: list, offset: float = 12.0) -> tuple[list, list, float]:
    """Items with weights 1/(rank + offset), in an order fixed by a constant seed: a few items are
    common and a long tail is rare (about 15x rarer for 180 names), like words in real text."""
    items = list(items)
    random.Random(len(items)).shuffle(items)
    cum, t = [], 0.0
    for j in range(len(items)):
        t += 1.0 / (j + offset)
        cum.append(t)
    return items, cum, t


def _art(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


GENDERED = {"female": {"she", "her", "hers", "herself", "girl", "sister"},
            "male": {"he", "him", "his", "himself", "boy", "brother"}}


def _pronouns(prefix: str, female: bool) -> dict[str, str]:
    words = ("she", "her", "her", "herself") if female else ("he", "him", "his", "himself")
    return dict(zip((prefix + w for w in ("he", "him", "his", "himself")), words))


# ----------------------------------------------------------------------------- version 1
class StoriesV1:
    """The archived generator (corpus version 1): its stories must never change."""
    version = 1
    # Which placeholders belong to which entity the intro may introduce, and to which gendered role.
    _FACTS = ("home", "pet", "obj", "friend", "food")
    _ENTITY_OF = {"F": "friend", "f_kid": "friend", "a_f_kid": "friend", "A": "pet", "pet": "pet",
                  "pet_habit": "pet", "obj": "obj", "color": "obj", "a_color": "obj", "obj_desc": "obj",
                  "fds": "food", "food_adj": "food", "home": "home", "home_where": "home", "home_view": "home",
                  **{f"f_{w}": "friend" for w in ("he", "him", "his", "himself")},
                  **{f"a_{w}": "pet" for w in ("he", "him", "his", "himself", "sound")}}
    _ROLE_BITS = {"N": 1, "kid": 1, "sib": 1, "F": 2, "f_kid": 2, "a_f_kid": 2, "P": 4, "A": 8, "X": 16, "S": 32,
                  "s_kid": 32, **{p + w: bit for p, bit in (("", 1), ("f_", 2), ("p_", 4), ("a_", 8), ("x_", 16),
                                                              ("s_", 32)) for w in ("he", "him", "his", "himself")}}
    ROLES = {1: "protagonist", 2: "friend", 4: "parent", 8: "pet", 16: "extra", 32: "sibling"}
    _NUMBERS = {"n", "k", "sum", "age", "n_fds", "k_fds", "rest_fds", "n_coins", "k_coins", "rest_coins"}
    _PRON = {(p, f): _pronouns(p, f) for p in ("", "f_", "p_", "a_", "x_", "s_") for f in (False, True)}

    def __init__(self, path: str):
        self.path = path
        files = [os.path.join(path, f) for f in ("tables.txt", "macros.txt", "templates.txt")]
        tables = read_tables(_read(files[:1]))
        self.t = t = {k: list(v) for k, v in tables.items()}
        t["pets"] = [(p, tuple(a.split(" ; ")), tuple(b.split(" ; "))) for p, a, b in t["pets"]]
        t["parents"] = [(p, g == "female") for p, g in t["parents"]]
        t["dests"] = [(d, a, s.split()) for d, a, s in t["dests"]]
        self.num = ["zero"] + t["numbers"]  # index = value; zero never appears in a story
        self.counts = {n: " , ".join(self.num[1:n + 1]) for n in range(5, 11)}
        self.sheep = {n: " , ".join(f"{w} sheep" for w in self.num[1:n + 1]) for n in range(4, 10)}
        self.z = {k: _zipf(t[k]) for k in ("girls", "boys", "pet_names", "objects", "acts", "foods", "animals",
                                           "skills")}
        self.sections = parse_templates(_read(files[2:]), read_macros(_read(files[1:2]), tables),
                                        frozenset(GENDERED["female"] | GENDERED["male"]))
        self._alts = {name: self._section(sec) for name, sec in self.sections.items()}
        special = {"opening", "ending"} | {f"fact_{f}" for f in self._FACTS}
        self.schemas = sorted(k for k in self.sections if k not in special)
        self._schema_list = [(k, *self._alts[k]) for k in self.schemas]
        self._endings: dict[frozenset, list] = {}  # introduced entities -> ending alternatives that only use them
        self.vocab = self._vocab()

    def _section(self, sec: Section) -> tuple:
        """(steps with alternatives as (parts, role bits, entities), facts it needs, slot keys, self-intro)."""
        steps = []
        for p, alts in sec.steps:
            out = []
            for parts, keys in alts:
                roles = 1
                for k in keys:
                    roles |= self._ROLE_BITS.get(k, 0)
                out.append((parts, roles, frozenset(self._ENTITY_OF[k] for k in keys if k in self._ENTITY_OF)))
            steps.append((p, out))
        used = {e for _, alts in steps for _, _, ents in alts for e in ents}
        needs = tuple(f for f in self._FACTS if f in used and f not in sec.flags)
        keys = frozenset(k for _, alts in sec.steps for _, ks in alts for k in ks)
        if keys & self._NUMBERS:
            keys |= {"numbers"}
        return steps, needs, keys, sec.flags

    def _ending(self, present: frozenset) -> list:
        if present not in self._endings:
            self._endings[present] = [a for a in self._alts["ending"][0][0][1] if a[2] <= present]
        return self._endings[present]

    def _slots(self, rng: random.Random, need: frozenset, gender: str | None = None) -> tuple[dict, dict]:
        """One story's slot table (the common slots and those in `need`) and its characters. Consumes
        the same random numbers whatever `gender` forces, so a forced-gender story differs only in
        gendered words and names."""
        t, z, num, PRON = self.t, self.z, self.num, self._PRON
        r = rng.random

        def pick(seq):
            return seq[int(r() * len(seq))]

        def zpick(name, taken=(), u=None):  # one draw whatever the collisions, so forced genders stay aligned
            items, cum, tot = z[name]
            j = bisect.bisect_right(cum, (r() if u is None else u) * tot)
            while items[j] in taken:
                j = (j + 1) % len(items)
            return items[j]

        def pick_k(seq, k):  # k distinct items, cheaper than rng.sample for small k
            idx = []
            while len(idx) < k:
                j = int(r() * len(seq))
                if j not in idx:
                    idx.append(j)
            return [seq[j] for j in idx]

        female = r() < 0.5
        if gender is not None:
            female = gender == "female"
        animal = r() < 0.25
        u = r()
        both = (zpick("girls", u=u), zpick("boys", u=u))  # others avoid both, so forcing a gender changes no one else
        s = {"N": both[0] if female else both[1]}
        s.update(PRON["", female])
        kind, feat = zpick("animals")
        s["kid"], s["kid_feat"] = (kind, feat) if animal else ("girl" if female else "boy", pick(t["child_feats"]))
        s["sib"] = "sister" if female else "brother"
        f_female = r() < 0.5
        s["F"] = F = zpick("girls" if f_female else "boys", both)
        s.update(PRON["f_", f_female])
        f_kind = zpick("animals")[0]
        s["f_kid"] = f_kind if animal else ("girl" if f_female else "boy")
        s["a_f_kid"] = _art(s["f_kid"])
        s["P"], p_female = pick(t["parents"])
        s.update(PRON["p_", p_female])
        s["pet"], sounds, habits = pick(t["pets"])
        s.update(a_sound=pick(sounds), pet_habit=pick(habits), A=zpick("pet_names"))
        a_female = r() < 0.5
        s.update(PRON["a_", a_female])
        x_female = r() < 0.5
        s["X"] = ("Miss " if x_female else "Mister ") + pick(t["surnames"])
        s.update(PRON["x_", x_female])
        s_female = r() < 0.5
        S = zpick("girls" if s_female else "boys", both + (F,))
        s.update(S=S, s_kid="sister" if s_female else "brother")
        s.update(PRON["s_", s_female])

        s["obj"], s["obj_desc"] = obj = zpick("objects")
        s["color"], s["c2"] = pick_k(t["colors"], 2)
        s["a_color"] = _art(s["color"])
        s["place"], s["in_place"], s["place_desc"] = pick(t["places"])
        s["home"] = pick(t["homes"])
        s["home_where"], s["home_view"] = pick(t["home_where"])
        fd, fds, s["food_adj"] = zpick("foods")
        s["fds"] = fds
        s["act"], s["act_ed"], s["act_ing"] = act = zpick("acts")
        s["act2"], s["act2_ed"], _ = zpick("acts", (act,))
        s["day"] = pick(t["days"])
        # The rest only where the schema uses it (most fillers belong to one schema): drawing them all
        # would triple the cost of a story.
        if "obj2" in need:
            s["obj2"] = zpick("objects", (obj,))[0]
        if "s1" in need:
            s["s1"], s["s2"], s["s3"] = pick_k(t["spots"], 3)
        if "o1" in need:
            s["o1"], s["o2"] = pick_k(t["out_spots"], 2)
        if "numbers" in need:
            n = 3 + int(r() * 7)
            k = 1 + int(r() * (n - 1))
            s.update(n=num[n], k=num[k], sum=num[n + k], age=num[3 + int(r() * 7)])
            for key, m in (("n", n), ("k", k), ("rest", n - k)):
                s[key + "_fds"] = f"{num[m]} {fd if m == 1 else fds}"
                s[key + "_coins"] = f"{num[m]} {'coin' if m == 1 else 'coins'}"
        if "cnt" in need:
            s["cnt"] = self.counts[5 + int(r() * 6)]
        if "sheep" in need:
            s["sheep"] = self.sheep[4 + int(r() * 6)]
        if "dest" in need:
            s["dest"], s["at_dest"], sights = pick(t["dests"])
            s["d1"], s["d2"], s["d3"] = pick_k(sights, 3)
            s["tr"], s["in_tr"] = pick(t["transport"])
        if "sk" in need or "sk_ing" in need:
            s["sk"], s["sk_ed"], s["sk_ing"] = zpick("skills")
        if "inst" in need:
            s["inst"] = pick(t["instruments"])
        if "dm" in need:
            dream = pick(t["dreams"])
            s["dm"] = dream[0]
            s["dm1"], s["dm2"] = pick_k(dream[1:], 2)
        if "mg" in need:
            s["mg"], s["mg_adj"] = pick(t["magic"]), pick(t["magic_adj"])
        if "seed" in need:
            s["seed"], s["seed_grown"] = pick(t["seeds"])
        if "cloth" in need:
            s["cloth"] = pick(t["clothes"])
        if "bake" in need:
            s["bake_a"], s["bake"], s["b_was"], s["b_them"] = pick(t["bakes"])
            s["i1"], s["i2"], s["i3"] = pick_k(t["ingredients"], 3)
        if "m1" in need:
            s["m1"], s["m2"], s["m3"] = pick_k(t["meals"], 3)
        if "brk" in need:
            s["brk"] = pick(t["breakables"])
        if "bld" in need:
            s["bld"], s["bld_n"], s["bld_mat"] = pick(t["builds"])
        if "ill" in need:
            s["ill"] = pick(t["ills"])
        if "noise" in need:
            s["noise"], s["cause"] = pick(t["noises"])
        if "W" in need:
            s["W"], s["w_part"], s["w_food"], s["w_move"] = pick(t["wild"])
        if "wise" in need:
            s["wise"] = pick(t["wise"])
        if "topic" in need:
            s["topic"], s["role"], s["made"] = pick(t["topics"])
        genders = {"protagonist": female, "friend": f_female, "parent": p_female, "pet": a_female,
                   "extra": x_female, "sibling": s_female}
        names = {"protagonist": s["N"], "friend": F, "parent": s["P"], "pet": s["A"], "extra": s["X"], "sibling": S}
        return s, {"animal": animal, "genders": genders, "names": names}

    def _compose(self, rng: random.Random, gender: str | None) -> tuple[list[str], dict]:
        r = rng.random
        name, steps, needs, keys, self_intro = self._schema_list[int(r() * len(self._schema_list))]
        s, info = self._slots(rng, keys, gender)
        facts = [f for f in self._FACTS if f in needs or (f not in self_intro and r() < 0.35)]
        rng.shuffle(facts)  # the order of introductions varies: a reader must look them up, not count
        plan = list(self._alts["opening"][0])
        for f in facts:
            plan += self._alts["fact_" + f][0]
        plan += steps
        ending = self._alts["ending"][0]
        plan += [(1.0, self._ending(frozenset(facts) | self_intro)), ending[1]]
        out, roles = [], 0
        for p, alts in plan:
            if p < 1.0 and r() >= p:
                continue
            parts, bits, _ = alts[int(r() * len(alts))]
            roles |= bits
            for part in parts:
                out.append(part if part.__class__ is str else part[int(r() * len(part))])
        tokens = " ".join(out).format_map(s).split()
        present = [role for bit, role in self.ROLES.items() if roles & bit]
        meta = {"schema": name, "animal": info["animal"], "object": f'{s["color"]} {s["obj"]}',
                "characters": {role: {"name": info["names"][role],
                                      "gender": "female" if info["genders"][role] else "male"} for role in present}}
        return tokens, meta

    def story(self, seed: int, split: str, i: int, gender: str | None = None) -> tuple[list[str], dict]:
        """Story i of a split and its metadata: the schema, the favourite object ("red kite") and the
        characters that may appear in it (role -> name, gender). `gender` ("female"/"male") forces the
        protagonist's gender and changes nothing else but gendered words and names (for tests)."""
        rng = _rng(seed, split, i)
        while True:  # a rare out-of-range length is redrawn from the same stream: still deterministic
            tokens, meta = self._compose(rng, gender)
            if 100 <= len(tokens) <= 400:
                return tokens, meta

    def tokens(self, seed: int, split: str, i: int) -> list[str]:
        return self.story(seed, split, i)[0]

    def _vocab(self) -> list[str]:
        """Every token a story can contain: template words plus every word of every table."""
        words = _template_words(self.sections)

        def walk(x):
            if isinstance(x, str):
                words.update(x.split())
            elif isinstance(x, (list, tuple, dict)):
                for y in (x.values() if isinstance(x, dict) else x):
                    walk(y)

        t = self.t
        walk([t[k] for k in t if k not in ("parents", "scenery")] + [[p for p, _ in t["parents"]], self.num[1:],
              self.counts, self.sheep, list(self._PRON.values()), "a an Miss Mister coin coins girl boy sister brother"])
        return sorted(words)


# ----------------------------------------------------------------------------- text
PUNCT = frozenset(". , ! ? \" 's :".split())
_SPEECH = {"said", "asked", "shouted", "cried", "whispered", "called", "replied", "wondered", "yelled"}


def detokenize(tokens: list[str]) -> str:
    """Readable text: punctuation attached, quotes paired, sentences and speech capitalized."""
    out, in_quote, cap, prev = [], False, True, ""
    for j, t in enumerate(tokens):
        if t == '"':
            if in_quote:
                out.append('"')
                cap = prev in ".!?"  # a new sentence may follow the quote ...
                nxt = tokens[j + 1: j + 3]
                if nxt and (nxt[0] in _SPEECH or nxt[-1] in _SPEECH):  # ... but not in '"Go!" she said'
                    cap = False
            else:
                out.append(' "' if out else '"')
                cap = True
            in_quote = not in_quote
            prev = t
            continue
        w = t
        if cap and t not in PUNCT:
            w = t[0].upper() + t[1:]
            cap = False
        if w == "i":
            w = "I"
        if t in ".!?":
            cap = True
        glue = t in PUNCT or (prev == '"' and in_quote) or not out
        out.append(w if glue else " " + w)
        prev = t
    return "".join(out)


# ----------------------------------------------------------------------------- entry points
@functools.lru_cache(maxsize=8)
def _load(version: int, path: str):
    return {1: StoriesV1}[version](path)


def generator(version: int = LATEST):
    """The generator of a corpus version, reading its data files from data_dir(version)."""
    return _load(version, data_dir(version))


def main():
    from config import Parser  # one-line errors, exit code 2
    ap = Parser(description="Print sample stories and time the generator.")
    ap.add_argument("--n", type=int, default=3, help="stories to print")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--version", type=int, default=LATEST, choices=VERSIONS, help="corpus version")
    ap.add_argument("--split", default="train", choices=sorted(_SPLITS))
    ap.add_argument("--time", type=int, default=5000, help="stories to time (0 skips)")
    args = ap.parse_args()
    try:
        gen = generator(args.version)
    except (OSError, ValueError) as e:
        ap.error(str(e))
    for i in range(args.n):
        tokens, meta = gen.story(args.seed, args.split, i)
        nats = f", {meta['nats']:.1f} nats" if "nats" in meta else ""
        print(f"--- story {i} ({meta['schema']}, {len(tokens)} tokens{nats})\n{detokenize(tokens)}\n")
    n_words = sum(1 for w in gen.vocab if w not in PUNCT)
    print(f"vocabulary: {len(gen.vocab)} tokens ({n_words} words + {len(gen.vocab) - n_words} punctuation), "
          f"{len(gen.schemas)} schemas")
    if args.time:
        t0, c0 = time.perf_counter(), time.process_time()
        total = sum(len(gen.tokens(args.seed, args.split, i)) for i in range(args.time))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"{args.time / dt:,.0f} stories/s on one core ({args.time / dc:,.0f} per CPU-second), "
              f"{total / dt:,.0f} tokens/s, {total / args.time:.1f} tokens/story")


if __name__ == "__main__":
    main()
