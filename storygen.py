"""Seeded generator of short children's stories in simple English: the embedded corpus.

    # 3 stories with their nats, the vocabulary, stories/s
    python storygen.py --n 3 --seed 0 --version 2

Story i of a split is a pure function of (version, seed, split, i) and of the version's data files
in storygen_data/v<version>/ (or $STORYGEN_DATA/v<version>/): word tables (tables*.txt), macros
(macros.txt), slot groups (slots.txt, version 2) and a template grammar (templates*.txt), all read
by the same parsers below. A story is a list of whitespace-free tokens from a closed vocabulary
(`vocab`): lowercase words, capitalized names and separate punctuation, so a word-level tokenizer is
exact. `detokenize` makes readable text.

Version 1 (archived, `StoriesV1`): one slot table per story (a protagonist with gender and
pronouns, a friend, a parent, a pet, a favourite object, a place, numbers); an opening, a few
introductory facts, one of about forty plot schemas and an ending are joined and formatted with it.

Version 2 (`StoriesV2`, the default): an opening, introductions, one or two threads whose setup
comes early and whose payoff repeats what it set up 80-300 tokens later (a hidden toy found where
it was hidden, a seed grown into its plant, coins left after spending), two to five episodes and an
ending. Words come from tables of a few thousand word types drawn with Zipf-like weights; animals,
foods, jobs, places and plants carry facts that never change (a fox has a bushy red tail and lives
in a den), learned late for the rare ones; numbers add up. Every random choice records its
log-probability, so each story's nats are known exactly, and `StoriesV2.parse` recovers the choices
of a story from its tokens alone (H_choice is then the corpus entropy rate, not only a bound).
"""
from __future__ import annotations

import bisect
import collections
import functools
import itertools
import math
import os
import random
import re
import time

from config import Parser  # one-line errors, exit code 2

HERE = os.path.dirname(os.path.abspath(__file__))
# a folder holding v1/, v2/ (a copy of storygen_data/, for experiments and tests)
DATA_ENV = "STORYGEN_DATA"
VERSIONS = (1, 2)
LATEST = 2
_SPLITS = {"train": 0, "val": 1}


# ----------------------------------------------------------------------------- data files
def data_dir(version: int) -> str:
    if version not in VERSIONS:
        raise ValueError(f"unknown story generator version {version!r} (known: {VERSIONS})")
    return os.path.join(
        os.environ.get(DATA_ENV) or os.path.join(HERE, "storygen_data"), f"v{version}")


def data_files(version: int) -> list[str]:
    """Paths of the data files of a version, sorted: everything the stories depend on besides
    code."""
    d = data_dir(version)
    if not os.path.isdir(d):
        raise FileNotFoundError(f"story generator data folder not found: {d}")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".txt"))


def _read(paths: list[str]) -> str:
    return "\n".join(open(p, encoding="utf-8").read() for p in paths)


def _read_each(paths: list[str], parse) -> dict:
    """parse(text) of every file, merged; an error names its file, and a name defined twice is
    one."""
    out = {}
    for path in paths:
        try:
            part = parse(open(path, encoding="utf-8").read())
        except (ValueError, KeyError) as e:
            raise ValueError(f"{os.path.basename(path)}: {e}") from None
        if out.keys() & part.keys():
            raise ValueError(
                f"{os.path.basename(path)}: {sorted(out.keys() & part.keys())} defined twice"
            )
        out.update(part)
    return out


class Table(list):
    """The items of one word table, in file order, plus the attributes of its header (`zipf=5`)."""
    attrs: dict


def read_tables(text: str) -> dict[str, Table]:
    """Word tables: `@name words` (items separated by white space), `@name lines` (one item per
    line) or `@name rows` (one tuple per line, fields separated by `|`), each optionally followed by
    key=value attributes; `#` starts a comment line."""
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
# "@name !flag" starts a section; "/" starts a step ("/0.5": optional, kept with p = 0.5); every
# other line is one alternative of the current step. "[a|b|]" is an inline choice (nested groups are
# expanded
# into one flat choice); "<name>" is a macro; "{x}" is a slot of the story. In version 2, the word
# "<@table>" or "<@table.k>" draws an item (field k) of a word table afresh, with the table's
# weights.
PLACEHOLDER = re.compile(r"\{(\w+)\}")
_MACRO = re.compile(r"<(\w+)>")
_DRAW = re.compile(r"<@(\w+)(?:\.(\d+))?>")


class Section:
    def __init__(self, name: str, flags: frozenset):
        self.name, self.flags = name, flags
        self.steps: list[tuple[float, list[tuple[tuple, tuple]]]] = []  # (p, [(parts, slot keys)])


def _expand(line: str) -> list[str]:
    """All strings of a line whose [a|b] groups (nested or not) are expanded."""
    m = re.search(r"\[([^\[\]]*)\]", line)
    if not m:
        return [" ".join(line.split())]
    return [
        x for alt in m.group(1).split("|") for x in _expand(line[:m.start()] + alt + line[m.end():])
    ]


def _parts(line: str) -> tuple:
    """A line as literal strings and tuples of choices (its top-level [..] groups), chosen per
    story."""
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


def parse_templates(text: str, macros: dict[str, str], forbidden: frozenset = frozenset()) -> dict:
    """Sections of a template grammar. Words in `forbidden` may only come from slots (gendered
    words)."""
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
                raise ValueError(
                    f"line {n}: {sorted(words & forbidden)} must come from slots: {line!r}"
                )
            cur.steps[-1][1].append((_parts(line), tuple(PLACEHOLDER.findall(line))))
    return sections


def _template_words(sections: dict[str, Section]) -> set[str]:
    words = set()
    for sec in sections.values():
        for _, alts in sec.steps:
            for parts, _ in alts:
                for p in parts:
                    for text in ((p,) if isinstance(p, str) else p):
                        words.update(_DRAW.sub(" ", PLACEHOLDER.sub(" ", text)).split())
    return words


def _rng(seed: int, split: str, i: int) -> random.Random:
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if not 0 <= i < 1 << 48:
        raise ValueError(f"story index out of range: {i}")
    # An injective integer key: distinct (seed mod 2^64, split, i) never share a stream, unlike
    # a sum.
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
    _ENTITY_OF = {
        "F": "friend",
        "f_kid": "friend",
        "a_f_kid": "friend",
        "A": "pet",
        "pet": "pet",
        "pet_habit": "pet",
        "obj": "obj",
        "color": "obj",
        "a_color": "obj",
        "obj_desc": "obj",
        "fds": "food",
        "food_adj": "food",
        "home": "home",
        "home_where": "home",
        "home_view": "home",
        **{f"f_{w}": "friend" for w in ("he", "him", "his", "himself")},
        **{f"a_{w}": "pet" for w in ("he", "him", "his", "himself", "sound")},
    }
    _ROLE_BITS = {
        "N": 1,
        "kid": 1,
        "sib": 1,
        "F": 2,
        "f_kid": 2,
        "a_f_kid": 2,
        "P": 4,
        "A": 8,
        "X": 16,
        "S": 32,
        "s_kid": 32,
        **{
            p + w: bit
            for p, bit in (("", 1), ("f_", 2), ("p_", 4), ("a_", 8), ("x_", 16), ("s_", 32))
            for w in ("he", "him", "his", "himself")
        },
    }
    ROLES = {1: "protagonist", 2: "friend", 4: "parent", 8: "pet", 16: "extra", 32: "sibling"}
    _NUMBERS = {
        "n", "k", "sum", "age", "n_fds", "k_fds", "rest_fds", "n_coins", "k_coins", "rest_coins"
    }
    _PRON = {(p, f): _pronouns(p, f)
             for p in ("", "f_", "p_", "a_", "x_", "s_")
             for f in (False, True)}

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
        self.z = {k: _zipf(t[k]) for k in
                  ("girls", "boys", "pet_names", "objects", "acts", "foods", "animals", "skills")}
        self.sections = parse_templates(_read(files[2:]), read_macros(_read(files[1:2]), tables),
                                        frozenset(GENDERED["female"] | GENDERED["male"]))
        self._alts = {name: self._section(sec) for name, sec in self.sections.items()}
        special = {"opening", "ending"} | {f"fact_{f}" for f in self._FACTS}
        self.schemas = sorted(k for k in self.sections if k not in special)
        self._schema_list = [(k, *self._alts[k]) for k in self.schemas]
        # introduced entities -> the endings using only them
        self._endings: dict[frozenset, list] = {}
        self.vocab = self._vocab()

    def _section(self, sec: Section) -> tuple:
        """(steps, alternatives as (parts, role bits, entities); facts it needs, slot keys,
        self-intro)."""
        steps = []
        for p, alts in sec.steps:
            out = []
            for parts, keys in alts:
                roles = 1
                for k in keys:
                    roles |= self._ROLE_BITS.get(k, 0)
                entities = frozenset(self._ENTITY_OF[k] for k in keys if k in self._ENTITY_OF)
                out.append((parts, roles, entities))
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

    def _slots(self, rng: random.Random, need: frozenset,
               gender: str | None = None) -> tuple[dict, dict]:
        """One story's slot table (the common slots and those in `need`) and its characters.
        Consumes the same random numbers whatever `gender` forces, so a forced-gender story differs
        only in gendered words and names."""
        t, z, num, PRON = self.t, self.z, self.num, self._PRON
        r = rng.random

        def pick(seq):
            return seq[int(r() * len(seq))]

        # one draw whatever the collisions, so forced genders stay aligned
        def zpick(name, taken=(), u=None):
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
        # others avoid both: forcing a gender changes no one
        both = (zpick("girls", u=u), zpick("boys", u=u))
        s = {"N": both[0] if female else both[1]}
        s.update(PRON["", female])
        kind, feat = zpick("animals")
        s["kid"], s["kid_feat"] = ((kind, feat) if animal
                                   else ("girl" if female else "boy", pick(t["child_feats"])))
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
        # The rest only where the schema uses it (most fillers belong to one schema): drawing them
        # all would triple the cost of a story.
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
        names = {
            "protagonist": s["N"],
            "friend": F,
            "parent": s["P"],
            "pet": s["A"],
            "extra": s["X"],
            "sibling": S,
        }
        return s, {"animal": animal, "genders": genders, "names": names}

    def _compose(self, rng: random.Random, gender: str | None) -> tuple[list[str], dict]:
        r = rng.random
        name, steps, needs, keys, self_intro = self._schema_list[int(r() * len(self._schema_list))]
        s, info = self._slots(rng, keys, gender)
        facts = [f for f in self._FACTS if f in needs or (f not in self_intro and r() < 0.35)]
        # the order of introductions varies: a reader must look them up, not count
        rng.shuffle(facts)
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
        gender = {True: "female", False: "male"}
        characters = {role: {"name": info["names"][role], "gender": gender[info["genders"][role]]}
                      for role in present}
        meta = {"schema": name, "animal": info["animal"], "object": f'{s["color"]} {s["obj"]}',
                "characters": characters}
        return tokens, meta

    def story(self, seed: int, split: str, i: int,
              gender: str | None = None) -> tuple[list[str], dict]:
        """Story i of a split and its metadata: the schema, the favourite object ("red kite") and
        the characters that may appear in it (role -> name, gender). `gender` ("female"/"male")
        forces the protagonist's gender and changes nothing else but gendered words and names (for
        tests)."""
        rng = _rng(seed, split, i)
        # a rare out-of-range length is redrawn from the same stream: still deterministic
        while True:
            tokens, meta = self._compose(rng, gender)
            if 100 <= len(tokens) <= 400:
                return tokens, meta

    def tokens(self, seed: int, split: str, i: int) -> list[str]:
        return self.story(seed, split, i)[0]

    def tokens_and_nats(self, seed: int, split: str, i: int) -> tuple[list[str], float]:
        return self.tokens(seed, split, i), math.nan  # version 1 does not record its choices

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
        walk([t[k] for k in t if k not in ("parents", "scenery")] + [[p for p, _ in t["parents"]],
              self.num[1:], self.counts, self.sheep, list(self._PRON.values()),
              "a an Miss Mister coin coins girl boy sister brother"])
        return sorted(words)


# ----------------------------------------------------------------------------- version 2
# Every random choice goes through `_Story.pick` or `_Story.coin`, which add its -log p to
# the story's nats, so H_choice is known exactly. A story is written token by token: literal words,
# slots (drawn
# when first written, so nothing is drawn that the text does not show), inline choices and fresh
# draws from word tables. `StoriesV2.parse` runs the same code with replayed choices and finds every
# choice
# sequence that writes a given story: exactly one means that its choices can be read back from its
# text, and its nats are then exactly -log P(story).
# A compiled template line is a tuple of ops: (_LIT, words), (_SLOT, key), (_CHOICE, choice among
# ops), (_WORDS, choice, its options' words) or (_DRAWN, table, field). Words are vocabulary ids.
_LIT, _SLOT, _CHOICE, _DRAWN, _WORDS = range(5)


class _Choice:
    """A choice among distinct outcomes: option j has probability weights[j] / sum(weights)."""
    __slots__ = ("options", "n", "cum", "total", "nats", "emits", "uniform", "label")

    def __init__(self, options: list, weights: list, label: str, emits: list | None = None):
        self.options, self.n, self.label, self.emits = options, len(options), label, emits
        self.total = float(sum(weights))
        self.cum = list(itertools.accumulate(float(w) for w in weights))
        self.nats = [math.log(self.total / w) for w in weights]
        self.uniform = len(set(weights)) == 1


class _Branch(Exception):
    """Parse mode: the first choice beyond the replayed prefix, with the options worth trying."""

    def __init__(self, options: list):
        self.options = options


class _Story:
    """One story being written: its random stream, tokens, slots, nats (and, on request,
    the positions of its entity mentions)."""
    __slots__ = ("r", "out", "slots", "local", "nats", "trace", "mentions", "sections", "draws")
    parsing = False

    def __init__(self, rng: random.Random | None, mentions: bool = False):
        self.r = rng.random if rng is not None else None
        self.out, self.slots, self.local, self.nats, self.sections = [], {}, [], 0.0, []
        self.trace = None
        self.mentions = [] if mentions else None  # (slot, position) of every slot written
        self.draws = {}  # with mentions: slot group -> the nats of its draw

    def pick(self, ch: _Choice, exclude: frozenset = frozenset(), emits: list | None = None) -> int:
        """Option j of a choice, drawn with p = w_j / total, or w_j / (total - excluded weight)."""
        r = self.r
        j = int(r() * ch.n) if ch.uniform else bisect.bisect_right(ch.cum, r() * ch.total)
        if exclude:
            while j in exclude:  # drawn again
                j = int(r() * ch.n) if ch.uniform else bisect.bisect_right(ch.cum, r() * ch.total)
            self.nats += _excluded_nats(ch, exclude)
        self.nats += ch.nats[j]
        return j

    def coin(self, p: float) -> bool:
        yes = self.r() < p
        self.nats -= math.log(p if yes else 1.0 - p)
        return yes


class _Traced(_Story):
    """A story that also keeps the trace of its choices: (label, option, excluded options,
    the choice: None for a coin)."""
    __slots__ = ()

    def __init__(self, rng: random.Random, mentions: bool = False):
        super().__init__(rng, mentions)
        self.trace = []

    def pick(self, ch, exclude=frozenset(), emits=None):
        j = _Story.pick(self, ch, exclude)
        self.trace.append((ch.label, j, exclude, ch))
        return j

    def coin(self, p):
        yes = _Story.coin(self, p)
        self.trace.append((f"coin {p}", int(yes), frozenset(), None))
        return yes


def _excluded_nats(ch: _Choice, exclude: frozenset) -> float:
    return math.log1p(-sum(math.exp(-ch.nats[e]) for e in exclude))


class _Dead(Exception):
    """Parse mode: what has been written disagrees with the target text."""


class _Parse(_Story):
    """Parse mode: choices come from `prefix`; beyond it, a choice that only one option can satisfy
    (judged by the next words of the target text) is made at once, and one with several raises
    _Branch so that the caller tries each."""
    __slots__ = ("prefix", "k", "target", "checked")
    parsing = True

    def __init__(self, prefix: list, target: list):
        super().__init__(None)
        self.prefix, self.k, self.target, self.checked, self.trace = prefix, 0, target, 0, []

    def _replay(self, options, emits) -> int:
        """The next choice: replayed, or made here if the target text allows only one option.
        `options` and `emits` may be callables, evaluated only then."""
        out, t = self.out, self.target
        if out[self.checked:] != t[self.checked:len(out)]:
            raise _Dead
        self.checked = len(out)
        if self.k == len(self.prefix):
            options = options() if callable(options) else options
            emits = emits() if callable(emits) else emits
            if emits is not None:
                options = [j for j in options if _agrees(emits[j], t, len(out))]
            if len(options) != 1:
                raise _Branch(options)
            self.prefix.append(options[0])
        self.k += 1
        return self.prefix[self.k - 1]

    def pick(self, ch, exclude=frozenset(), emits=None):
        if emits is None:
            emits = ch.emits
            if ch.options and isinstance(ch.options[0], tuple):  # options are ops: look ahead
                emits = lambda: [_lookahead(o, self.slots) for o in ch.options]  # noqa: E731
        j = self._replay(lambda: [j for j in range(ch.n) if j not in exclude], emits)
        self.nats += ch.nats[j] + (_excluded_nats(ch, exclude) if exclude else 0.0)
        self.trace.append((ch.label, j, exclude, ch))
        return j

    def coin(self, p):
        yes = bool(self._replay([0, 1], None))
        self.nats -= math.log(p if yes else 1.0 - p)
        self.trace.append((f"coin {p}", int(yes), frozenset(), None))
        return yes


def _agrees(emit, target: list, at: int) -> bool:
    """Whether an option that writes `emit` next (a tuple: its exact words; a list: the sets of its
    possible next words; None: unknown) can agree with the target text at position `at`."""
    if emit is None:
        return True
    if isinstance(emit, tuple):
        return tuple(target[at:at + len(emit)]) == emit
    return len(target) - at >= len(emit) and all(w in ws for w, ws in zip(target[at:], emit))


class _Table:
    """A word table compiled for drawing: its weights (zipf=OFFSET: 1/(rank + OFFSET)) and, for
    every field of every row, its words as vocabulary ids."""

    def __init__(self, name: str, rows: Table, index: dict[str, int]):
        zipf = rows.attrs.get("zipf")
        rows = [r if isinstance(r, tuple) else (r,) for r in rows]
        if len({r[0] for r in rows}) < len(rows):
            raise ValueError(f"table {name!r} has repeated items: its draws could not be read back")
        if any("an" in f.split() for r in rows for f in r):
            raise ValueError(f"table {name!r}: write `a`, the article rule makes `an`")
        self.name = name
        fields = range(min(map(len, rows)))
        self.tokens = [[tuple(index[w] for w in r[f].split()) for r in rows] for f in fields]
        self.weights = [1.0 / (j + float(zipf))
                        for j in range(len(rows))] if zipf else [1.0] * len(rows)
        self.choice = _Choice(list(range(len(rows))), self.weights, f"table {name}", self.tokens[0])
        self.firsts = [frozenset(t[0] for t in field) for field in self.tokens]  # for parsing
        self.multiword = [any(len(t) > 1 for t in field) for field in self.tokens]
        # fewest and most words
        self.spans = [(min(map(len, f)), max(map(len, f))) for f in self.tokens]


class StoriesV2:
    """Corpus version 2: an open lexicon with Zipf-like frequencies, many free choices per sentence,
    stories of 150-600 tokens whose threads are set up early and paid off 80-300 tokens later, and
    the exact log-probability of every story."""
    version = 2
    MIN_LEN, MAX_LEN = 150, 600        # tokens of a story
    # below this many tokens another episode is certain (if one fits)
    MORE_BELOW = 170
    P_INTRO, P_MORE, P_SECOND_THREAD, P_PAYOFF = 0.7, 0.5, 0.5, 0.5  # another intro / episode, ...
    # tokens since a thread's setup before its payoff may / must come
    PAYOFF_AFTER, PAYOFF_BY = 80, 200
    ROLES = {"": "protagonist", "f_": "friend", "s_": "sibling", "x_": "neighbour", "a_": "pet"}
    _PRONOUN_KEYS = ("he", "him", "his", "himself")
    # _draw's words
    _CODE_WORDS = "an girl boy sister brother Miss Mister she her herself he him his himself"

    def __init__(self, path: str):
        self.path = path
        names = sorted(os.listdir(path))
        files = {
            kind: [
                os.path.join(path, f) for f in names if f.startswith(kind) and f.endswith(".txt")
            ]
            for kind in ("tables", "macros", "slots", "templates")
        }
        raw = _read_each(files["tables"], read_tables)
        # "an": from the article rule
        forbidden = frozenset(GENDERED["female"] | GENDERED["male"] | {"an"})
        macros = _read_each(files["macros"], lambda text: read_macros(text, raw))
        sections = _read_each(files["templates"],
                              lambda text: parse_templates(text, macros, forbidden))
        # The closed vocabulary, known before anything is written: a story is a list of its ids.
        words = _template_words(sections) | set(self._CODE_WORDS.split())
        words |= {w for rows in raw.values() for r in rows
                  for f in (r if isinstance(r, tuple) else (r,)) for w in f.split()}
        self.vocab = sorted(words)
        self.index = ix = {w: i for i, w in enumerate(self.vocab)}
        self._a, self._an = ix["a"], ix["an"]
        self._vowel = frozenset(i for w, i in ix.items() if w[0] in "aeiou")
        self._pron = {True: [(ix[w],) for w in ("she", "her", "her", "herself")],
                      False: [(ix[w],) for w in ("he", "him", "his", "himself")]}
        self._w = {
            w: (ix[w], )
            for w in ("girl", "boy", "sister", "brother", "Miss", "Mister", "she")
        }
        self.tables = {name: _Table(name, rows, ix) for name, rows in raw.items()}
        self._groups, self.tracked = self._read_slots(_read(files["slots"]))
        self._texts, self._inline = {}, {}  # compiled texts and inline choices, each made once
        # names: the entities whose mentions the statistics follow
        self.tracked |= {"N", "F", "S", "X", "A"}
        self.sections = {name: self._compile_section(sec) for name, sec in sections.items()}
        self.intros = sorted(k for k in self.sections if k.startswith("intro_"))
        self.threads = sorted(k[6:] for k in self.sections if k.startswith("setup_"))
        self.episodes = sorted(k for k in self.sections if k.startswith("ep_"))
        self.schemas = self.episodes
        for t in self.threads:
            if "payoff_" + t not in self.sections:
                raise ValueError(f"thread {t!r} has a setup but no payoff section")
        self._u = {n: _Choice(list(range(n)), [1.0] * n, f"uniform {n}") for n in range(1, 64)}
        self._check_keys()
        self.bounds = self._bounds()
        self._most = most = {name: hi for name, (_, hi) in self.bounds.items()}
        # room an introduction must leave: the longest thread, the shortest episode and the ending
        self._intro_reserve = (max(most["setup_" + t] + most["payoff_" + t] for t in self.threads)
                               + min(most[e] for e in self.episodes) + most["ending"])

    # --------------------------------------------------------------- loading
    def _read_slots(self, text: str):
        """slots.txt: `group = table : key0 key1 ...` binds key i to field i of one drawn row ("-"
        skips a field, "*key" marks an entity mention for the statistics); `! other ...` after
        the keys: a row that `other` has drawn is excluded. Groups named e_* are local to
        the section that draws them."""
        groups, tracked = {}, set()
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#")[0].strip()
            if not line:
                continue
            m = re.fullmatch(r"(\w+)\s*=\s*(\w+)\s*:\s*([^!]+?)\s*(?:!\s*(.*))?", line)
            if not m or m.group(2) not in self.tables:
                raise ValueError(
                    f"slots line {n}: expected `group = table : keys [! groups]`: {raw!r}"
                )
            group, table, keys, excl = m.group(1), m.group(2), m.group(3).split(), (m.group(4) or
                                                                                    "").split()
            if len(keys) > len(self.tables[table].tokens):
                raise ValueError(
                    f"slots line {n}: table {table!r} has fewer than {len(keys)} fields"
                )
            tracked.update(k[1:] for k in keys if k.startswith("*"))
            keys = [None if k == "-" else k.lstrip("*") for k in keys]
            groups[group] = (self.tables[table], keys, tuple(excl))
        return groups, tracked

    def _compile_ops(self, parts) -> tuple:
        ops = []
        for p in parts:
            if isinstance(p, str):
                ops += self._compile_text(p)
            elif p in self._inline:  # the same group (a macro) is compiled once
                ops.append(self._inline[p])
            else:
                # a repeated option is one outcome with its multiplicity
                counts = collections.Counter(p)
                options = [self._compile_text(o) for o in counts]
                ch = _Choice(options, list(counts.values()), "inline")
                # words only: one step
                if all(not o or (len(o) == 1 and o[0][0] == _LIT) for o in options):
                    op = (_WORDS, ch, [o[0][1] if o else () for o in options])
                else:
                    op = (_CHOICE, ch)
                ops.append(self._inline.setdefault(p, op))
        return tuple(ops)

    def _compile_text(self, text: str) -> tuple:
        """Words as ops: runs of literal words, {slots} and <@table.k> draws."""
        if text in self._texts:
            return self._texts[text]
        ops, words = [], []
        for w in text.split():
            slot, draw = PLACEHOLDER.fullmatch(w), _DRAW.fullmatch(w)
            if (slot or draw) and words:
                ops.append((_LIT, tuple(words)))
                words = []
            if slot:
                ops.append((_SLOT, slot.group(1)))
            elif draw:
                tab, field = self.tables.get(draw.group(1)), int(draw.group(2) or 0)
                if tab is None or field >= len(tab.tokens):
                    raise ValueError(f"no table or field for {w} in {text!r}")
                ops.append((_DRAWN, tab, field))
            elif any(c in w for c in "{}<>"):
                raise ValueError(f"a slot or draw must be a word of its own: {w!r} in {text!r}")
            else:
                words.append(self.index[w])
        if words:
            ops.append((_LIT, tuple(words)))
        return self._texts.setdefault(text, tuple(ops))

    def _compile_section(self, sec: Section) -> list:
        steps = []
        for j, (p, alts) in enumerate(sec.steps):
            keyed = {}
            for parts, keys in alts:  # identical lines are one outcome with their multiplicity
                keyed.setdefault(repr(parts), [parts, keys, 0])[2] += 1
            options = [self._compile_ops(parts) for parts, _, _ in keyed.values()]
            keys = [
                frozenset(k for k in ks if not k.startswith("e_")) for _, ks, _ in keyed.values()
            ]
            ch = _Choice(options, [c for _, _, c in keyed.values()], f"{sec.name}/{j}")
            steps.append((p, ch, keys if "bound" in sec.flags else None))
        return steps

    def _check_keys(self):
        drawable = set(
            self._code_keys()) | {k
                                  for _, keys, _ in self._groups.values()
                                  for k in keys if k}
        for name, steps in self.sections.items():
            for _, ch, _ in steps:
                for ops in ch.options:
                    for key in _slot_keys(ops):
                        if key not in drawable:
                            raise ValueError(
                                f"section {name!r} uses slot {{{key}}}, which nothing draws")
        self._key_group = {
            k: group
            for group, (_, keys, _) in self._groups.items()
            for k in keys if k
        }
        # group -> (table, {slot: its field}, the slot that holds the drawn row, the groups' rows
        # excluded)
        self._bindings = {
            g: (
                tab,
                {k: tab.tokens[f] for f, k in enumerate(keys) if k},
                "#" + g,
                tuple("#" + e for e in excl),
            )
            for g, (tab, keys, excl) in self._groups.items()
        }

    def _code_keys(self) -> list[str]:
        """Slots drawn by code rather than by slots.txt: characters, numbers and days."""
        keys = [p + w for p in self.ROLES for w in self._PRONOUN_KEYS]
        keys += ["kid", "f_kid", "sib", "N", "F", "S", "X", "A", "P"
                 ] + ["p_" + w for w in self._PRONOUN_KEYS]
        keys += [
            "e_n", "e_k", "e_sum", "e_left", "coins", "spent", "left", "age", "day", "next_day"
        ]
        return keys

    def _bounds(self) -> dict[str, tuple[int, int]]:
        """The fewest and most tokens each section can write (the most: every optional step, the
        longest option everywhere), so that the plan can keep every story within [MIN_LEN,
        MAX_LEN]."""
        longest = {k: tab.spans[f][1] for tab, keys, _ in self._groups.values()
                   for f, k in enumerate(keys) if k}
        longest.update({k: 1 for k in self._code_keys()})
        longest.update(X=2,
                       kid=self.tables["animals"].spans[0][1] if "animals" in self.tables else 1)

        def span(ops, pick):
            n = 0
            for op in ops:
                if op[0] == _LIT:
                    n += len(op[1])
                elif op[0] == _SLOT:
                    n += longest[op[1]] if pick is max else 1
                elif op[0] in (_CHOICE, _WORDS):
                    n += pick(span(o, pick) for o in op[1].options)
                else:
                    n += op[1].spans[op[2]][pick is max]
            return n
        return {name: (sum(min(span(o, min) for o in ch.options) for p, ch, _ in steps if p >= 1.0),
                       sum(max(span(o, max) for o in ch.options) for _, ch, _ in steps))
                for name, steps in self.sections.items()}

    # --------------------------------------------------------------- writing
    def _emit(self, ctx: _Story, ops: tuple):
        out, slots, pick = ctx.out, ctx.slots, ctx.pick
        for op in ops:
            kind = op[0]
            if kind == _LIT:
                out.extend(op[1])
            elif kind == _SLOT:
                v = slots.get(op[1])
                if v is None:
                    v = self._draw(ctx, op[1])
                if ctx.mentions is not None:
                    ctx.mentions.append((op[1], len(out), len(ctx.sections)))
                out.extend(v)
            elif kind == _WORDS:
                out.extend(op[2][pick(op[1])])
            elif kind == _CHOICE:
                self._emit(ctx, op[1].options[pick(op[1])])
            else:
                tok = op[1].tokens[op[2]]
                out.extend(tok[pick(op[1].choice, emits=tok)])

    def _section(self, ctx: _Story, name: str):
        for k in ctx.local:  # the slots of the previous section's local groups (e_*) are forgotten
            del ctx.slots[k]
        ctx.local = []
        ctx.sections.append(name)
        for p, ch, keys in self.sections[name]:
            # only the alternatives whose slots are all drawn already (maybe none)
            if keys is not None:
                ok = [j for j, ks in enumerate(keys) if ks <= ctx.slots.keys()]
                if not ok or (p < 1.0 and not ctx.coin(p)):
                    continue
                emits = (lambda: [_lookahead(ch.options[j], ctx.slots)
                                  for j in ok]) if ctx.parsing else None
                j = ok[ctx.pick(self._u[len(ok)], emits=emits)]
            elif p < 1.0 and not ctx.coin(p):
                continue
            else:
                j = ctx.pick(ch)
            self._emit(ctx, ch.options[j])

    def _starts(self, name: str, slots: dict) -> list:
        """The words that can start section `name`, given the slots drawn so far ([]: unknown)."""
        words = set()
        for p, ch, _ in self.sections[name]:
            firsts = [_lookahead(o, slots, 1) for o in ch.options]
            if not all(firsts):
                return []
            words.update(*(f[0] for f in firsts))
            if p >= 1.0:
                return [words]
        return []

    def _compose(self, ctx: _Story):
        """Opening, introductions, thread setups, episodes, payoffs, ending. Every optional section
        is chosen among those that leave room (by the static bounds) for what must still come, so a
        story never exceeds MAX_LEN; which ones fit depends only on the text so far."""
        out, u, most = ctx.out, self._u, self._most
        end = most["ending"]

        def room(name: str, reserve: int) -> bool:
            return len(out) + most[name] + reserve <= self.MAX_LEN

        def choose(names: list, reserve: int, p: float = 1.0):  # one of those that fit, or None
            free = self.MAX_LEN - reserve - len(out)
            fits = [x for x in names if most[x] <= free]
            if not fits or (p < 1.0 and not ctx.coin(p)):
                return None
            emits = (lambda: [self._starts(x, ctx.slots) for x in fits]) if ctx.parsing else None
            return fits[ctx.pick(u[len(fits)], emits=emits)]

        self._section(ctx, "opening")
        intros = list(self.intros)
        while (x := choose(intros, self._intro_reserve, self.P_INTRO)) is not None:
            intros.remove(x)
            self._section(ctx, x)
        threads = list(self.threads)
        first = threads.pop(ctx.pick(u[len(threads)]))
        self._section(ctx, "setup_" + first)
        # threads set up and not paid off, with where their setup ended
        pending = [(first, len(out))]
        episodes, done = list(self.episodes), 0
        while True:
            reserve = sum(most["payoff_" + t] for t, _ in pending) + end
            if not any(most[e] <= self.MAX_LEN - reserve - len(out) for e in episodes):
                break
            if done and len(out) >= self.MORE_BELOW and not ctx.coin(self.P_MORE):
                break
            # a payoff now, or after this episode (decided after "more")
            for thread, at in list(pending):
                d = len(out) - at
                if d >= self.PAYOFF_BY or (d >= self.PAYOFF_AFTER and ctx.coin(self.P_PAYOFF)):
                    self._section(ctx, "payoff_" + thread)
                    pending.remove((thread, at))
            reserve = sum(most["payoff_" + t] for t, _ in pending) + end
            # a payoff written leaves at least as much room as it took
            ep = choose(episodes, reserve)
            episodes.remove(ep)
            self._section(ctx, ep)
            done += 1
            if done == 1:  # a second thread, set up after the first episode
                reserve = sum(most["payoff_" + t] for t, _ in pending) + end
                setups = [
                    f"setup_{t}" for t in threads
                    if room(f"setup_{t}", most["payoff_" + t] + reserve)
                ]
                setup = choose(setups, reserve, self.P_SECOND_THREAD)
                if setup is not None:
                    threads.remove(setup[6:])
                    self._section(ctx, setup)
                    pending.append((setup[6:], len(out)))
        for thread, _ in pending:
            self._section(ctx, "payoff_" + thread)
        self._section(ctx, "ending")

    # --------------------------------------------------------------- slots
    def _bind(self, ctx: _Story, group: str, values: dict):
        ctx.slots.update(values)
        if group.startswith("e_"):
            ctx.local.extend(values)

    def _draw(self, ctx: _Story, key: str) -> tuple:
        if ctx.mentions is not None:  # statistics: what the draw cost, by slot group
            before = ctx.nats
            value = self._draw_slot(ctx, key)
            group = self._group_of(key, len(ctx.sections))
            ctx.draws[group] = ctx.draws.get(group, 0.0) + ctx.nats - before
            return value
        return self._draw_slot(ctx, key)

    def _group_of(self, key: str, section: int) -> str:
        """The slot group whose draw a slot shows (a slots.txt group, a name, a role's gender,
        a number), with the section for the local groups, drawn again in every section."""
        if key in self._key_group:
            group = self._key_group[key]
            return f"{group}@{section}" if group.startswith("e_") else group
        if key.startswith("e_"):
            return ("e_k" if key in ("e_sum", "e_left") else key) + f"@{section}"
        if key in ("N", "F", "S", "X", "A", "P", "kid", "f_kid") or key.startswith("p_"):
            return "P" if key.startswith("p_") else key
        return {"sib": "#gs_", "left": "spent", "next_day": "day"}.get(
            key, "#g" + key[:-len(next((w for w in self._PRONOUN_KEYS if key.endswith(w)), ""))]
            if any(key.endswith(w) for w in self._PRONOUN_KEYS) else key)

    def _draw_slot(self, ctx: _Story, key: str) -> tuple:
        group = self._key_group.get(key)
        s = ctx.slots
        if group is not None:
            tab, fields, mark, excl = self._bindings[group]
            exclude = frozenset(s[g] for g in excl if g in s) if excl else frozenset()
            j = ctx.pick(tab.choice, exclude, fields[key])
            s[mark] = j
            for k, field in fields.items():
                s[k] = field[j]
            if group.startswith("e_"):
                ctx.local.append(mark)
                ctx.local.extend(fields)
        elif key in ("N", "F", "S"):
            role = {"N": "", "F": "f_", "S": "s_"}[key]
            female = self._gender(ctx, role)
            tab = self.tables["girls" if female else "boys"]
            exclude = frozenset(s["#" + k][1] for k in ("N", "F", "S")
                                if s.get("#" + k, (None,))[0] == tab.name)  # names are different
            j = ctx.pick(tab.choice, exclude)
            s.update({key: tab.tokens[0][j], "#" + key: (tab.name, j)})
        elif key in ("kid", "f_kid"):
            role = key[:-3]
            animal = s.get("#animal")
            if animal is None:  # the protagonist's kind decides: children's or animals' story
                animal = s["#animal"] = ctx.coin(0.25)
            if animal:
                tab = self.tables["animals"]
                s[key] = tab.tokens[0][ctx.pick(tab.choice)]
            else:
                s[key] = self._w["girl" if self._gender(ctx, role) else "boy"]
        elif key == "sib":
            s[key] = self._w["sister" if self._gender(ctx, "s_") else "brother"]
        elif key == "X":
            title = self._w["Miss" if self._gender(ctx, "x_") else "Mister"]
            tab = self.tables["surnames"]
            s[key] = title + tab.tokens[0][ctx.pick(tab.choice,
                                                    emits=[title + t for t in tab.tokens[0]])]
        elif key == "A":
            tab = self.tables["pet_names"]
            s[key] = tab.tokens[0][ctx.pick(tab.choice)]
        elif key == "P" or key.startswith("p_"):
            tab = self.tables["grownups"]
            j = ctx.pick(tab.choice, emits=tab.tokens[0] if key == "P" else None)
            s["P"] = tab.tokens[0][j]
            female = tab.tokens[1][j] == self._w["she"]
            s.update(zip(("p_" + w for w in self._PRONOUN_KEYS), self._pron[female]))
        elif key in ("e_n", "coins", "age"):
            lo, hi = {"e_n": (2, 9), "coins": (5, 12), "age": (4, 9)}[key]
            self._bind(ctx, key, {key: self._num(lo + ctx.pick(self._u[hi - lo + 1]))})
        elif key in ("e_k", "e_sum", "e_left"):
            n = self._value(ctx, "e_n")
            k = 1 + ctx.pick(self._u[n - 1])
            self._bind(ctx, "e_k", {"e_k": self._num(k), "e_sum": self._num(n + k),
                                    "e_left": self._num(n - k)})
        elif key in ("spent", "left"):
            n = self._value(ctx, "coins")
            k = 1 + ctx.pick(self._u[n - 2])
            s.update(spent=self._num(k), left=self._num(n - k))
        elif key in ("day", "next_day"):
            days = self.tables["days"].tokens[0]
            j = ctx.pick(self._u[len(days)])
            s.update(day=days[j], next_day=days[(j + 1) % len(days)])
        else:  # a pronoun
            role = key[:-len(next(w for w in self._PRONOUN_KEYS if key.endswith(w)))]
            self._gender(ctx, role)
        return s[key]

    def _gender(self, ctx: _Story, role: str) -> bool:
        g = ctx.slots.get("#g" + role)
        if g is None:
            g = ctx.slots["#g" + role] = ctx.coin(0.5)
            ctx.slots.update(zip((role + w for w in self._PRONOUN_KEYS), self._pron[g]))
        return g

    def _num(self, n: int) -> tuple:
        return self.tables["numbers"].tokens[0][n - 1]

    def _value(self, ctx: _Story, key: str) -> int:
        words = ctx.slots.get(key) or self._draw(ctx, key)
        return self.tables["numbers"].tokens[0].index(words) + 1

    # --------------------------------------------------------------- stories
    def _write(self, seed: int, split: str, i: int, trace: bool = False,
               mentions: bool = False) -> _Story:
        ctx = (_Traced if trace else _Story)(_rng(seed, split, i), mentions)
        self._compose(ctx)
        out, j = ctx.out, -1
        while (j := _find(out, self._a, j + 1)) >= 0:  # the article rule: "a apple" -> "an apple"
            if out[j + 1] in self._vowel:
                out[j] = self._an
        if not self.MIN_LEN <= len(out) <= self.MAX_LEN:
            raise RuntimeError(
                f"story {split} {i} of seed {seed} has {len(out)} tokens, outside "
                f"[{self.MIN_LEN}, {self.MAX_LEN}]: the grammar's lengths need fixing"
            )
        return ctx

    def story(self, seed: int, split: str, i: int, trace: bool = False) -> tuple[list[str], dict]:
        """Story i of a split and its metadata: nats (-log of the probability of its choices),
        sections (opening, intros, thread setups, episodes, payoffs, ending), the positions of
        entity mentions (slot -> token positions) and draws (slot group -> (nats of its draw,
        positions of its slots)); with `trace`, also its choices as (label, option, excluded
        options, the choice: None for a coin)."""
        ctx = self._write(seed, split, i, trace, mentions=True)
        mentions, groups = {}, {}
        for key, pos, section in ctx.mentions:
            if key in self.tracked:
                mentions.setdefault(key, []).append(pos)
            groups.setdefault(self._group_of(key, section), []).append(pos)
        meta = {"nats": ctx.nats, "sections": ctx.sections, "schema": next(
            (s for s in ctx.sections if s.startswith("ep_")), ""), "mentions": mentions,
                "draws": {g: (n, groups.get(g, [])) for g, n in ctx.draws.items()}}
        if trace:
            meta["trace"] = ctx.trace
        return self.words(ctx.out), meta

    def words(self, ids) -> list[str]:
        return [self.vocab[i] for i in ids]

    def tokens(self, seed: int, split: str, i: int) -> list[str]:
        return self.words(self._write(seed, split, i).out)

    def tokens_and_nats(self, seed: int, split: str, i: int) -> tuple[list[str], float]:
        ctx = self._write(seed, split, i)
        return self.words(ctx.out), ctx.nats

    def ids_and_nats(self, seed: int, split: str, i: int) -> tuple[list[int], float]:
        """Story i as ids into `vocab` (the fast path of corpus generation) and its nats."""
        ctx = self._write(seed, split, i)
        return ctx.out, ctx.nats

    def parse(self, tokens: list[str], limit: int = 2) -> list[tuple[list[int], float]]:
        """Every choice sequence (option indices, in the order the generator makes them) that writes
        `tokens`, with its nats; stops after `limit` of them."""
        if not set(tokens) <= self.index.keys():
            return []
        # the article rule, undone
        target = [self._a if t == "an" else self.index[t] for t in tokens]
        found, stack = [], [[]]
        while stack and len(found) < limit:
            ctx = _Parse(stack.pop(), target)
            try:
                self._compose(ctx)
            except _Branch as b:
                stack.extend(ctx.prefix + [j] for j in reversed(b.options))
                continue
            except _Dead:
                continue
            if ctx.out == target:
                found.append((ctx.prefix, ctx.nats))
        return found


def _find(seq: list, x, start: int) -> int:
    """The first index >= start of x in seq (list.index, done in C), or -1."""
    try:
        return seq.index(x, start)
    except ValueError:
        return -1


def _lookahead(ops: tuple, slots: dict, depth: int = 8) -> list:
    """What `ops` can write next, word by word: a list of sets of possible words, as far as it is
    known (it stops at a slot not drawn yet, after an inline choice, or after `depth` words)."""
    sets = []
    for k, op in enumerate(ops):
        if op[0] == _LIT:
            sets.extend({w} for w in op[1])
        elif op[0] == _SLOT:
            v = slots.get(op[1])
            if v is None:
                break
            sets.extend({w} for w in v)
        elif op[0] == _DRAWN:
            sets.append(op[1].firsts[op[2]])
            if op[1].multiword[op[2]]:
                break
        # an inline choice: the first words of its options (or, after an empty one, of what follows)
        else:
            rest = ops[k + 1:]
            firsts = [
                _lookahead(o, slots, 1) if o else _lookahead(rest, slots, 1) for o in op[1].options
            ]
            if all(firsts):
                sets.append(set().union(*(f[0] for f in firsts)))
            break
        if len(sets) >= depth:
            break
    return sets[:depth]


def _slot_keys(ops: tuple):
    for op in ops:
        if op[0] == _SLOT:
            yield op[1]
        elif op[0] in (_CHOICE, _WORDS):
            for o in op[1].options:
                yield from _slot_keys(o)


def _lit_words(ops: tuple):
    for op in ops:
        if op[0] == _LIT:
            yield from op[1]
        elif op[0] in (_CHOICE, _WORDS):
            for o in op[1].options:
                yield from _lit_words(o)


# ----------------------------------------------------------------------------- text
PUNCT = frozenset(". , ! ? \" 's :".split())
_SPEECH = {
    "said", "asked", "shouted", "cried", "whispered", "called", "replied", "wondered", "yelled"
}


def detokenize(tokens: list[str]) -> str:
    """Readable text: punctuation attached, quotes paired, sentences and speech capitalized."""
    out, in_quote, cap, prev = [], False, True, ""
    for j, t in enumerate(tokens):
        if t == '"':
            if in_quote:
                out.append('"')
                cap = prev in ".!?"  # a new sentence may follow the quote ...
                nxt = tokens[j + 1: j + 3]
                # ... but not in '"Go!" she said'
                if nxt and (nxt[0] in _SPEECH or nxt[-1] in _SPEECH):
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
def _load(version: int, path: str, stamp: tuple):
    return {1: StoriesV1, 2: StoriesV2}[version](path)


def generator(version: int = LATEST):
    """The generator of a corpus version, reading its data files from data_dir(version) (again when
    one of them has changed)."""
    stamp = tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in data_files(version))
    return _load(version, data_dir(version), stamp)


def main():
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
        print(
            f"--- story {i} ({meta['schema']}, {len(tokens)} tokens{nats})\n{detokenize(tokens)}\n"
        )
    n_words = sum(1 for w in gen.vocab if w not in PUNCT)
    print(
        f"vocabulary: {len(gen.vocab)} tokens ({n_words} words + {len(gen.vocab) - n_words}"
        f" punctuation), {len(gen.schemas)} schemas"
    )
    if args.time:
        t0, c0 = time.perf_counter(), time.process_time()
        total = sum(len(gen.tokens(args.seed, args.split, i)) for i in range(args.time))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"{args.time / dt:,.0f} stories/s on one core ({args.time / dc:,.0f} per CPU-second), "
            f"{total / dt:,.0f} tokens/s, {total / args.time:.1f} tokens/story"
        )


if __name__ == "__main__":
    main()
