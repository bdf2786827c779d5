"""The story generator: determinism, closed vocabulary, lengths, splits, pronouns, recurrence."""
import json
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import storygen
from storygen import GENDERED, VOCAB, detokenize, story_tokens, story_with_meta

N = 2000
MALE, FEMALE = GENDERED["male"], GENDERED["female"]


@pytest.fixture(scope="module")
def train():
    return [story_with_meta(0, "train", i) for i in range(N)]


def test_deterministic_and_distinct():
    assert story_tokens(3, "train", 17) == story_tokens(3, "train", 17)
    assert story_tokens(3, "train", 17) != story_tokens(3, "train", 18)
    assert story_tokens(3, "train", 17) != story_tokens(4, "train", 17)
    assert list(storygen.stories(3, "val", 5, 8)) == [story_tokens(3, "val", i) for i in range(5, 8)]


def test_same_stories_in_another_process_with_another_hash_seed():
    code = "import json, storygen; print(json.dumps([storygen.story_tokens(7, 'val', i) for i in range(50)]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout
    assert json.loads(out) == [story_tokens(7, "val", i) for i in range(50)]


def test_bad_split_is_an_error():
    with pytest.raises(ValueError):
        story_tokens(0, "test", 0)


def test_vocabulary_is_closed_sorted_and_sized(train):
    assert VOCAB == sorted(set(VOCAB))
    words = [w for w in VOCAB if any(c.isalpha() for c in w)]
    assert 1500 <= len(words) <= 4000
    assert all(w and not any(c.isspace() for c in w) for w in VOCAB)
    vocab = set(VOCAB)
    for tokens, _ in train:
        assert set(tokens) <= vocab


def test_no_all_uppercase_tokens(train):
    assert not [w for w in VOCAB if w.isupper()]  # uppercase words are reserved for probe codewords
    assert not [w for tokens, _ in train for w in tokens if w.isupper()]


def test_lengths(train):
    lengths = [len(t) for t, _ in train]
    assert 100 <= min(lengths) and max(lengths) <= 400
    assert 150 <= sum(lengths) / len(lengths) <= 300


def test_train_and_val_differ(train):
    val = {tuple(story_tokens(0, "val", i)) for i in range(N)}
    assert not val & {tuple(t) for t, _ in train}


def test_many_schemas(train):
    assert len({m["schema"] for _, m in train}) >= 30
    assert len(storygen.SCHEMAS) >= 30


def test_forcing_the_protagonist_gender_flips_only_their_gendered_words():
    pairs = {("she", "he"), ("her", "him"), ("her", "his"), ("herself", "himself"), ("girl", "boy"),
             ("sister", "brother")}
    flipped_pronouns = 0
    for i in range(300):
        f, fm = story_with_meta(1, "train", i, gender="female")
        m, mm = story_with_meta(1, "train", i, gender="male")
        assert fm["characters"]["protagonist"]["gender"] == "female"
        assert mm["characters"]["protagonist"]["gender"] == "male"
        names = (fm["characters"]["protagonist"]["name"], mm["characters"]["protagonist"]["name"])
        assert len(f) == len(m) and fm["schema"] == mm["schema"]
        for a, b in zip(f, m):
            if a != b:
                assert (a, b) in pairs or (a, b) == names, (i, a, b)
                flipped_pronouns += a != names[0]
        assert names[0] in f and names[1] in m
    assert flipped_pronouns > 300 * 3  # several pronouns per story refer to the protagonist


def test_single_gender_stories_have_no_other_gender_words(train):
    checked = {"female": 0, "male": 0}
    for tokens, meta in train:
        genders = {c["gender"] for c in meta["characters"].values()}
        if len(genders) == 1:
            g = genders.pop()
            other = MALE if g == "female" else FEMALE
            assert not set(tokens) & other, (meta, set(tokens) & other)
            checked[g] += 1
    assert min(checked.values()) >= 20  # the check is not vacuous


def test_lost_object_comes_back_at_the_end(train):
    lost = [(t, m) for t, m in train if m["schema"] == "lost"]
    assert len(lost) >= 20
    for tokens, meta in lost:
        obj = meta["object"].split()[-1]
        where = [j for j, w in enumerate(tokens) if w == obj]
        assert len(where) >= 4 and where[0] < len(tokens) // 3 and where[-1] > len(tokens) // 2


def test_shell_arithmetic(train):
    num = {w: k for k, w in enumerate(storygen.NUM)}
    seen = 0
    for tokens, meta in train:
        if meta["schema"] != "seashells":
            continue
        text = " ".join(tokens)
        a, b = re.search(r"found (\w+) shells , and \w+ found (\w+) \.", text).groups()
        total = re.search(r"together they had (\w+) shells", text).group(1)
        assert num[a] + num[b] == num[total]
        seen += 1
    assert seen >= 20


def test_detokenize():
    toks = '" hello , " said Mia . " i am here ! " she said . the end .'.split()
    assert detokenize(toks) == '"Hello," said Mia. "I am here!" she said. The end.'
    assert detokenize("Tom 's dog ran . it was fast !".split()) == "Tom's dog ran. It was fast!"


def test_speed():
    t0 = time.process_time()  # CPU time: a busy machine does not make this flaky
    for i in range(2000):
        story_tokens(0, "train", i)
    assert 2000 / (time.process_time() - t0) > 2000
